"""Ray job: manifest to faces table (and per-media status table) on Ray Data.

    ray job submit --working-dir . -- python ray_jobs/extract_faces.py --help

Takes exactly the options of `deepgen extract`; under `ray job submit` it joins the cluster through
RAY_ADDRESS, and run directly it starts an embedded Ray.
"""

import sys

from deepgen.cli import main

if __name__ == "__main__":
    main(["extract", *sys.argv[1:]])
