"""Out-of-domain check: does a bundle know when media are unlike anything it was trained on?

For each bundle, every item of each set below is decoded, its faces found and cropped exactly as
scoring does, and its crops scored by the domain check's two views: the fine-tuned detector's
features and the frozen ImageNet backbone's (``deepgen.evaluation.frozen``). An item's distance is
the mean over its crops, in units of the bundle's thresholds; ``ood_score`` (what scoring ships) is
the larger of the two. Sets:

- unseen procedural: FF++-like procedural videos of a new seed (identities the bundle never saw);
- photo videos: each real photo in ``--photos`` as a short video with a slow zoom;
- real deepfakes: every video of ``../shared/data/real_deepfakes`` (FF++ c23, DFDC, Celeb-DF clips),
  and its DFDC face crops (images);
- ``… CRF 38, 0.5x``: the videos above re-encoded at half size with H.264 CRF 38 (heavy compression).

Prints, per bundle and set, the share marked out of domain by each view and by ``ood_score``, and the
AUC of telling the set from the unseen procedural videos by ``ood_score``.

    .venv/bin/python benchmarks/ood.py --bundle NAME=RUN/bundle [--bundle NAME2=RUN2/bundle] [--videos 24]
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

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def recompress(src: str, dst: str, crf: int = 38, scale: float = 0.5, max_frames: int = 150) -> str:
    """``src`` re-encoded at ``scale`` of its size with H.264 at ``crf`` (what heavy re-uploads look like)."""
    import av
    import cv2

    from deepgen.testing.faces import write_video

    frames = []
    with av.open(src) as c:
        for f in c.decode(video=0):
            img = f.to_ndarray(format="rgb24")
            h, w = img.shape[:2]
            frames.append(cv2.resize(img, (max(2, int(w * scale)) // 2 * 2, max(2, int(h * scale)) // 2 * 2),
                                     interpolation=cv2.INTER_AREA))
            if len(frames) >= max_frames:
                break
    return write_video(dst, frames, crf=crf)


def item_views(scorer, rows: list[dict], ecfg) -> np.ndarray:
    """(items, 3): each item's mean fine-tuned, frozen and combined distance over its crops (items with no
    face are left out), in threshold units."""
    from deepgen.evaluation.frozen import frozen_features
    from deepgen.faces import extract_media, get_detector
    from deepgen.faces.crop import decode_image

    det = get_detector(ecfg.detector)
    fine, frozen = scorer.ood[0], scorer.frozen_ood[0]
    out = []
    for r in rows:
        faces, _ = extract_media(r, ecfg, det)
        if not faces:
            continue
        images = [decode_image(f["image"]) for f in faces]
        a = fine.frame_scores(scorer.frame_outputs(images)["features"])
        b = frozen.frame_scores(frozen_features(images, frozen.size)) if frozen is not None else np.full(len(a), np.nan)
        out.append([a.mean(), b.mean(), np.fmax(a, b).mean()])
    return np.array(out).reshape(-1, 3)


def build_sets(tmp: str, args) -> dict[str, list[dict]]:
    """The sets of media items (manifest-like rows) the bundles are checked on."""
    from deepgen.datasets import build_manifest
    from deepgen.experiments.realdf import real_deepfake_manifest
    from deepgen.synth import render_preset
    from deepgen.testing.faces import load_rgb, write_video, zoom_frames

    def row(mid, uri, kind="video"):
        return {"media_id": mid, "uri": uri, "media_type": kind}

    root = render_preset("ffpp", os.path.join(tmp, "unseen"), videos=args.videos, seed=args.seed,
                         frames=args.frames)  # rendered like the training corpus (the demo's), a new seed
    sets = {"unseen procedural": [row(r["media_id"], r["uri"], r["media_type"])
                                  for r in build_manifest("ffpp", root).to_pylist()]}
    photos = sorted(p for d in args.photos for p in glob.glob(os.path.join(d, "*.jpg")))
    photos = [photos[i] for i in np.random.default_rng(args.seed).permutation(len(photos))[:args.photo_videos]]
    sets["photo videos"] = [row(f"photo/{i}", write_video(os.path.join(tmp, f"photo{i}.mp4"),
                                                          zoom_frames(load_rgb(p), max(args.frames, 6))))
                            for i, p in enumerate(photos)]
    if os.path.isdir(args.real_deepfakes):
        rdf = real_deepfake_manifest(args.real_deepfakes).to_pylist()
        sets["real deepfakes: videos"] = [row(r["media_id"], r["uri"]) for r in rdf if r["media_type"] == "video"]
        sets["real deepfakes: DFDC crops"] = [row(r["media_id"], r["uri"], "image") for r in rdf
                                              if r["media_type"] == "image"]
    for name in ("photo videos", "real deepfakes: videos"):
        if sets.get(name):
            sets[f"{name}, CRF 38 0.5x"] = [
                row(r["media_id"] + "#crf38", recompress(r["uri"], os.path.join(tmp, f"re{len(name)}_{i}.mp4")))
                for i, r in enumerate(sets[name])]
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", action="append", required=True, help="NAME=PATH of a bundle (repeat).")
    ap.add_argument("--photos", action="append", default=None)
    ap.add_argument("--real-deepfakes", default=str(SHARED / "real_deepfakes"))
    ap.add_argument("--videos", type=int, default=24, help="Unseen procedural videos.")
    ap.add_argument("--photo-videos", type=int, default=40, help="Photos made into videos.")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    args.photos = args.photos or [str(SHARED / d) for d in ("real_faces", "real_faces_more") if (SHARED / d).is_dir()]

    from deepgen.evaluation.ood import separation_auc
    from deepgen.inference import Scorer
    from deepgen.scoring.pipeline import ScoreConfig, extract_config

    with tempfile.TemporaryDirectory() as tmp:
        sets = build_sets(tmp, args)
        print("| bundle | set | items with a face | out of domain: fine-tuned | frozen | ood_score | AUC vs unseen procedural |")
        print("|---|---|---|---|---|---|---|")
        for spec in args.bundle:
            name, _, path = spec.rpartition("=")
            scorer = Scorer.load(path, "cpu")
            if scorer.ood is None:
                sys.exit(f"{path} records no domain check; retrain it.")
            ecfg = extract_config(path, ScoreConfig(frames=args.frames))
            views = {k: item_views(scorer, rows, ecfg) for k, rows in sets.items()}
            base = views["unseen procedural"][:, 2]
            for k, v in views.items():
                auc = "" if k == "unseen procedural" or not len(v) else f"{separation_auc(base, v[:, 2]):.3f}"
                print(f"| {name or path} | {k} | {len(v)} | {np.mean(v[:, 0] > 1):.2f} | {np.mean(v[:, 1] > 1):.2f} "
                      f"| {np.mean(v[:, 2] > 1):.2f} | {auc} |", flush=True)


if __name__ == "__main__":
    main()
