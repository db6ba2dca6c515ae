"""Ray job: manifest -> faces table. ``ray job submit --working-dir . -- python ray_jobs/extract_faces.py …``"""

from __future__ import annotations

import argparse
import json
import sys

from deepgen.errors import DeepgenError
from deepgen.extract import extract_faces


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--margin", type=float, default=0.3)
    p.add_argument("--detector", default="haar", choices=["haar", "dlib"])
    p.add_argument("--all-faces", action="store_true")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--address", default=None, help="default: RAY_ADDRESS under `ray job submit`, else embedded")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    try:
        summary = extract_faces(a.manifest, a.out, frames=a.frames, size=a.size, margin=a.margin,
                                detector=a.detector, all_faces=a.all_faces, address=a.address,
                                overwrite=a.overwrite, num_workers=a.workers)
    except DeepgenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
