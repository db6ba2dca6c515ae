"""Ray job: a Ray Tune sweep of the loss weights, each trial a Ray Train run scored on held-out faces.

    ray job submit --working-dir . -- python ray_jobs/tune.py --help

Takes exactly the options of `deepgen tune`; under `ray job submit` it joins the cluster through
RAY_ADDRESS, and run directly it starts an embedded Ray.
"""

import sys

from deepgen.cli import main

if __name__ == "__main__":
    main(["tune", *sys.argv[1:]])
