"""Operating point on your own real footage: does a point fitted on some real videos hold on others?

``deepgen adapt threshold`` moves the decision point so that at most ``--false-alarm`` of the given
real videos score P(fake) >= 0.5 (the shift is folded into the weights exactly, so here it is applied
to the video logits directly). This benchmark fits it on the real videos made from the shared photos
plus part of the real items of ``../shared/data/real_deepfakes`` and measures, on the real-deepfake
items it did not see (k folds over those items, each held out once):

- the share of held-out real items flagged (the false alarms a team would see),
- the share of real-deepfake fakes still caught,

before and after the fit, with the bundle's own point for comparison.

    .venv/bin/python benchmarks/operating_point.py --bundle demo-out/run/bundle --photo-faces demo-out/faces/photos \\
        --real-deepfake-faces demo-out/faces/real_deepfakes [--false-alarm 0.05 --folds 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def read_crops(faces: str, media: set[str] | None = None):
    """The faces table's rows (only ``media`` when given) as a DataFrame, each crop decoded in ``crop``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from deepgen.faces.crop import decode_image
    from deepgen.faces.extract import read_faces

    t = read_faces(faces)
    if media is not None:
        t = t.filter(pc.is_in(t["media_id"], pa.array(sorted(media), pa.string())))
    df = t.drop_columns(["image"]).to_pandas()
    df["crop"] = [decode_image(b) for b in t["image"].to_pylist()]
    return df


def video_logits(bundle, faces: str, source: str | None = None, media: set[str] | None = None):
    """Per item of the faces table (only ``media`` when given): its video logit, label and source (through the
    one inference path)."""
    from deepgen.experiments.realdf import real_deepfake_manifest, score_items

    df = read_crops(faces, media)
    if source:
        df["source"] = source
    else:
        from deepgen.experiments.realdf import default_real_deepfakes

        m = real_deepfake_manifest(default_real_deepfakes())
        df["source"] = df["media_id"].map(dict(zip(m["media_id"].to_pylist(), m["source"].to_pylist())))
    return score_items(bundle, df)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--photo-faces", required=True, help="Faces of the photo corpus (its real videos are used).")
    ap.add_argument("--real-deepfake-faces", required=True)
    ap.add_argument("--false-alarm", type=float, default=0.05)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from deepgen.adapt.threshold import fit_false_alarm_shift, flagged_share
    from deepgen.models.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    photos = video_logits(bundle, args.photo_faces, "photos")
    rdf = video_logits(bundle, args.real_deepfake_faces)
    photo_real = photos.loc[photos["label"] == 0, "logit"].to_numpy()
    real, fake = rdf[rdf["label"] == 0], rdf[rdf["label"] == 1]
    fold = np.random.default_rng(args.seed).permutation(len(real)) % args.folds
    rows = []
    for k in range(args.folds):
        fit = np.r_[photo_real, real["logit"].to_numpy()[fold != k]]
        held = real["logit"].to_numpy()[fold == k]
        s = fit_false_alarm_shift(fit, args.false_alarm)
        rows.append({"fit": len(fit), "held": len(held), "before": flagged_share(held), "after": flagged_share(held, s),
                     "caught_before": flagged_share(fake["logit"]), "caught_after": flagged_share(fake["logit"], s),
                     "shift": s})
    print(f"bundle {bundle.model_id}: fitted on {len(photo_real)} photo-made real videos + "
          f"{len(real) - rows[0]['held']}-{len(real) - rows[-1]['held']} real-deepfake reals per fold; "
          f"{len(real)} real-deepfake reals held out over {args.folds} folds; {len(fake)} fakes")
    print("| false-alarm asked | held-out real flagged: bundle's point | after adapt threshold | fakes caught: "
          "bundle's point | after | video-logit shift |")
    print("|---|---|---|---|---|---|")

    def ms(key):
        v = np.array([r[key] for r in rows])
        return f"{v.mean():.2f} ± {v.std():.2f}"

    print(f"| {args.false_alarm:g} | {ms('before')} | {ms('after')} | {ms('caught_before')} | {ms('caught_after')} "
          f"| {ms('shift')} |")


if __name__ == "__main__":
    main()
