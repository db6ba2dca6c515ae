"""Out-of-domain check: how well each distance separates a bundle's own domain from media it never saw.

In-domain: unseen procedural videos of the bundle's preset (a new seed: new identities). Out of
domain: short videos made from the real photos (a still photo with a slow zoom). Faces are found
and cropped exactly as scoring does; each item's distance is the mean over its crops. Prints, per
distance, the AUC of telling the two apart and the share of each group beyond the threshold fitted on
the bundle's validation crops (``ood.json``).

    .venv/bin/python benchmarks/ood.py --bundle RUN/bundle [--photos ../shared/data/real_faces] [--videos 40]
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepgen.evaluation.ood import (  # noqa: E402
    knn_distance,
    mahalanobis_distance,
    mahalanobis_model,
    separation_auc,
)


def item_features(scorer, rows: list[dict], ecfg) -> list[np.ndarray]:
    """Frame features of each item's face crops (items with no face are left out)."""
    from deepgen.faces import extract_media, get_detector
    from deepgen.faces.crop import decode_image

    det = get_detector(ecfg.detector)
    out = []
    for r in rows:
        faces, _ = extract_media(r, ecfg, det)
        if faces:
            out.append(scorer.frame_outputs([decode_image(f["image"]) for f in faces])["features"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--preset", default="ffpp")
    ap.add_argument("--photos", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "real_faces"))
    ap.add_argument("--videos", type=int, default=40)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    from deepgen.datasets import build_manifest
    from deepgen.inference import Scorer
    from deepgen.scoring.pipeline import ScoreConfig, extract_config
    from deepgen.synth import render_preset
    from deepgen.testing.faces import load_rgb, write_video, zoom_frames

    scorer = Scorer.load(args.bundle, "cpu")
    bundle = scorer.bundles[0]
    record, ref = bundle.extras["ood"], bundle.reference["ood_sample"]
    ecfg = extract_config(args.bundle, ScoreConfig(frames=args.frames))
    with tempfile.TemporaryDirectory() as tmp:
        root = render_preset(args.preset, os.path.join(tmp, "unseen"), videos=args.videos, seed=args.seed,
                             frames=args.frames, size=128)
        inside = [{"media_id": r["media_id"], "uri": r["uri"], "media_type": r["media_type"]}
                  for r in build_manifest(args.preset, root).to_pylist()]
        outside = []
        for i, p in enumerate(sorted(glob.glob(os.path.join(args.photos, "*.jpg")))):
            uri = write_video(os.path.join(tmp, f"photo{i}.mp4"), zoom_frames(load_rgb(p), max(args.frames, 6)))
            outside.append({"media_id": f"photo/{i}", "uri": uri, "media_type": "video"})
        fin, fout = item_features(scorer, inside, ecfg), item_features(scorer, outside, ecfg)
    print(f"bundle {bundle.model_id}: {len(ref)} training faces as reference, threshold from "
          f"{record.get('n_validation_crops', '?')} validation crops of {record['n_validation_items']} videos "
          f"(q={record['quantile']}); "
          f"{len(fin)} unseen {args.preset} items, {len(fout)} photo items with a face")
    maha = mahalanobis_model(ref)
    dist = {f"knn k={k}": (lambda f, k=k: knn_distance(ref, f, k)) for k in (1, 5, 10)}
    dist["mahalanobis (Ledoit-Wolf)"] = lambda f: mahalanobis_distance(maha, f)
    print("| distance | AUC in vs out | in domain flagged | photos flagged |")
    print("|---|---|---|---|")
    for name, fn in dist.items():
        d_in = np.array([fn(f).mean() for f in fin])
        d_out = np.array([fn(f).mean() for f in fout])
        method = "mahalanobis" if name.startswith("mahalanobis") else "knn"
        t = record["thresholds"][method] if (method == "mahalanobis" or f"k={record['k']}" in name) else None
        flagged = [f"{(d > t).mean():.2f}" if t is not None else "" for d in (d_in, d_out)]
        print(f"| {name} | {separation_auc(d_in, d_out):.3f} | {flagged[0]} | {flagged[1]} |")



if __name__ == "__main__":
    main()
