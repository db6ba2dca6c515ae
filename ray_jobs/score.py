"""Ray job: score a manifest with a checkpoint bundle into a scores table.

    ray job submit --working-dir . -- python ray_jobs/score.py --help

Takes exactly the options of `deepgen score`; under `ray job submit` it joins the cluster through
RAY_ADDRESS, and run directly it starts an embedded Ray.
"""

import sys

from deepgen.cli import main

if __name__ == "__main__":
    main(["score", *sys.argv[1:]])
