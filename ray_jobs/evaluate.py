"""Ray job: evaluate checkpoints across faces tables (cross-dataset protocol) and write the HTML report.

    ray job submit --working-dir . -- python ray_jobs/evaluate.py --help

Takes exactly the options of `deepgen evaluate`; under `ray job submit` it joins the cluster through
RAY_ADDRESS, and run directly it starts an embedded Ray.
"""

import sys

from deepgen.cli import main

if __name__ == "__main__":
    main(["evaluate", *sys.argv[1:]])
