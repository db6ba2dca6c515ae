"""Ray job: Nightly rescoring: score new or changed media into the results store.

    ray job submit --working-dir . -- python ray_jobs/rescore_nightly.py --help

Takes exactly the options of `deepgen rescore`; under `ray job submit` it joins the cluster through
RAY_ADDRESS, and run directly it starts an embedded Ray.
"""

import sys

from deepgen.cli import main

if __name__ == "__main__":
    main(["rescore", *sys.argv[1:]])
