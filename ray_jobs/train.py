"""Ray job: train a detector recipe on faces tables with Ray Train.

    ray job submit --working-dir . -- python ray_jobs/train.py --help

Takes exactly the options of `deepgen train`; under `ray job submit` it joins the cluster through
RAY_ADDRESS, and run directly it starts an embedded Ray.
"""

import sys

from deepgen.cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])
