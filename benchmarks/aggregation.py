"""Video-level aggregation: how a video's frame logits become its one score, measured on the demo's bundles.

Scoring ships one rule (:func:`deepgen.inference.aggregate_media`): the mean logit of each face track, and
the video takes its most suspicious track. This compares it, on the same frame logits, with the rules of
:func:`deepgen.evaluation.metrics.aggregate_video_scores` a reader would try first: the mean or median
over all frames, the mean probability, the mean of the four most suspicious frames, the most suspicious
five-frame stretch, and the single most suspicious frame. Each ``--demo`` folder is one demo run (one
seed); its bundle scores sets it never trained on: the Celeb-DF- and DFDC-like corpora, the photos' test
people, and ``../shared/data/real_deepfakes`` (its videos alone, and all items with the DFDC crops,
which are single images that every rule scores alike). AUC, mean ± std over the runs, and the paired
difference to the shipped rule (within the spread: no measurable difference):

    .venv/bin/python benchmarks/aggregation.py --demo demo-s0 --demo demo-s1 --demo demo-s2
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SHIPPED = "track mean, max over tracks (shipped)"
# the alternatives, all through deepgen.evaluation.metrics.aggregate_video_scores: (name, on, how, k, window)
RULES = [
    ("mean logit", "logit", "mean", 1, 1),
    ("median logit", "logit", "median", 1, 1),
    ("mean probability", "probability", "mean", 1, 1),
    ("top-4 mean logit", "logit", "topk", 4, 1),
    ("max of 5-frame moving mean", "logit", "max_smoothed", 1, 5),
    ("max frame logit", "logit", "topk", 1, 1),
]


def frame_logits(bundle, faces: str, media: set[str] | None = None) -> pd.DataFrame:
    """Faces rows of one table (only ``media`` when given) with each crop's frame ``logit`` from the one
    inference path, calibrated by the bundle's temperature as scoring calibrates the video logit."""
    from operating_point import read_crops

    from deepgen.inference import Scorer

    df = read_crops(faces, media)
    scorer = Scorer([bundle], "cpu")
    out = scorer.frame_outputs(list(df["crop"]))
    return df[["media_id", "frame_index", "track_id", "label"]].assign(logit=out["logit"] / scorer.temperature)


def rule_aucs(frames: pd.DataFrame) -> dict[str, float]:
    """AUC of every rule over the items of ``frames``: the shipped one through
    :func:`deepgen.inference.aggregate_media`, the others through :func:`aggregate_video_scores`."""
    from deepgen.evaluation.metrics import aggregate_video_scores, compute_metrics
    from deepgen.inference import aggregate_media

    items = aggregate_media(frames[["media_id", "track_id", "logit"]], 1.0)
    labels = frames.groupby("media_id", sort=True)["label"].first()
    out = {SHIPPED: compute_metrics(labels.loc[items["media_id"]].to_numpy(), items["score"].to_numpy())["auc"]}
    z = frames["logit"].to_numpy(np.float64)
    for name, on, how, k, window in RULES:
        f = frames[["media_id", "frame_index", "label"]].assign(score=z if on == "logit" else 1 / (1 + np.exp(-z)))
        v = aggregate_video_scores(f, how=how, k=k, window=window)
        out[name] = compute_metrics(v["label"].to_numpy(), v["score"].to_numpy())["auc"]
    return out


def demo_sets(demo: str) -> dict[str, pd.DataFrame]:
    """The demo bundle's frame logits on every set it never trained on."""
    from deepgen.models.bundle import load_bundle

    bundle = load_bundle(os.path.join(demo, "run", "bundle"))
    sets = {}
    for name in ("celebdf", "dfdc"):
        sets[f"{name} (procedural)"] = frame_logits(bundle, os.path.join(demo, "faces", name))
    photos = os.path.join(demo, "faces", "photos")
    if os.path.exists(photos):
        m = pd.read_parquet(os.path.join(demo, "manifests", "photos.parquet"), columns=["media_id", "split"])
        sets["photos: test people"] = frame_logits(bundle, photos, set(m.loc[m["split"] == "test", "media_id"]))
    real = os.path.join(demo, "faces", "real_deepfakes")
    if os.path.exists(real):
        f = frame_logits(bundle, real)
        m = pd.read_parquet(os.path.join(demo, "manifests", "real_deepfakes.parquet"),
                            columns=["media_id", "media_type"])
        videos = set(m.loc[m["media_type"] == "video", "media_id"])
        sets["real deepfakes: videos"] = f[f["media_id"].isin(videos)]
        sets["real deepfakes: all items"] = f
    return sets


def main() -> None:
    from demo_operating_point import parse_demos

    demos = parse_demos(__doc__.splitlines()[0], os.path.join("run", "bundle", "model.safetensors"),
                        "pass the --out folder of a finished `deepgen demo`.")
    rows = []
    for d in demos:
        for name, frames in demo_sets(d).items():
            n = frames.groupby("media_id")["label"].first()
            for rule, auc in rule_aucs(frames).items():
                rows.append({"demo": d, "set": name, "rule": rule, "auc": auc, "real": int((n == 0).sum()),
                             "fake": int((n == 1).sum()), "frames": len(frames) / max(len(n), 1)})
    df = pd.DataFrame(rows)
    base = df[df["rule"] == SHIPPED].set_index(["demo", "set"])["auc"]
    df["diff"] = df["auc"].to_numpy() - base.loc[list(zip(df["demo"], df["set"]))].to_numpy()

    def ms(v) -> str:
        v = np.asarray(v, np.float64)
        return f"{v.mean():.3f} ± {v.std():.3f}"

    print(f"{len(demos)} demo run(s): {', '.join(demos)}")
    print("| set | items | faces/item | rule | auc | − shipped | within spread |")
    print("|---|---|---|---|---|---|---|")
    for (name, rule), g in df.groupby(["set", "rule"], sort=False):
        shipped = base.xs(name, level="set")
        diff = g["diff"].to_numpy()
        spread = max(g["auc"].std(ddof=0), shipped.loc[g["demo"]].std(ddof=0))  # as the sampling benchmark decides
        within = "" if rule == SHIPPED else ("yes" if abs(diff.mean()) <= spread else "no")
        print(f"| {name} | {g['real'].iloc[0]} real / {g['fake'].iloc[0]} fake | {g['frames'].mean():.1f} | {rule} "
              f"| {ms(g['auc'])} | {'' if rule == SHIPPED else ms(diff)} | {within} |")


if __name__ == "__main__":
    main()
