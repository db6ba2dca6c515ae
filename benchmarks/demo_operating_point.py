"""The demo's shipped operating point against the point balanced on all validation videos, per demo run.

``deepgen demo`` (with photos) trains a bundle (``run/bundle``, its decision point balanced on every
validation video) and ships ``run/operating-point``: the same weights with the point moved so that at
most ``--false-alarm`` of the photo corpus's *validation* people's real videos score >= 0.5. This
reads both on media neither point was fitted on: the photos' test people (never trained on) and every
item of ``../shared/data/real_deepfakes``. One row per set, mean ± std over the demo runs given
(one run per seed):

    .venv/bin/python benchmarks/demo_operating_point.py --demo demo-out --demo demo-s1 --demo demo-s2
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def demo_rows(demo: str) -> list[dict]:
    """Per set: AUC, and the share of real items flagged and of fakes caught at both points."""
    from operating_point import video_logits

    from deepgen.evaluation.metrics import compute_metrics
    from deepgen.models.bundle import load_bundle

    photos_split = pd.read_parquet(os.path.join(demo, "manifests", "photos.parquet"), columns=["media_id", "split"])
    test_people = set(photos_split.loc[photos_split["split"] == "test", "media_id"])
    scored = {}
    for point, sub in (("balanced", "bundle"), ("shipped", "operating-point")):
        bundle = load_bundle(os.path.join(demo, "run", sub))
        scored[point] = {"photos: test people": video_logits(bundle, os.path.join(demo, "faces", "photos"), "photos",
                                                             media=test_people),
                         "real deepfakes": video_logits(bundle, os.path.join(demo, "faces", "real_deepfakes"))}
    rows = []
    for name, v in scored["balanced"].items():  # the shift moves every logit alike: counts and AUC are the same
        row = {"set": name, "real": int((v["label"] == 0).sum()), "fake": int((v["label"] == 1).sum()),
               "auc": compute_metrics(v["label"], v["score"])["auc"]}
        for point in ("balanced", "shipped"):
            v = scored[point][name]
            row[f"real_flagged_{point}"] = float((v.loc[v["label"] == 0, "score"] >= 0.5).mean())
            row[f"fakes_caught_{point}"] = float((v.loc[v["label"] == 1, "score"] >= 0.5).mean())
        rows.append(row)
    return rows


def parse_demos(description: str, needs: str, fix: str) -> list[str]:
    """The ``--demo`` folders of the command line (one per demo run), each holding ``needs``, else ``fix``."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--demo", action="append", required=True, help="A demo --out folder, repeatable (one per seed).")
    demos = ap.parse_args().demo
    for d in demos:
        if not os.path.exists(os.path.join(d, needs)):
            raise SystemExit(f"{d} has no {needs}; {fix}")
    return demos


def main() -> None:
    demos = parse_demos(__doc__.splitlines()[0], os.path.join("run", "operating-point"),
                        "run `deepgen demo` with photos (and --false-alarm > 0).")
    df = pd.DataFrame([{**r, "demo": d} for d in demos for r in demo_rows(d)])

    def ms(g: pd.DataFrame, key: str) -> str:
        v = g[key].to_numpy(np.float64)
        return f"{v.mean():.3f} ± {v.std():.3f}"

    print(f"{len(demos)} demo run(s): {', '.join(demos)}")
    print("| set | items | runs | auc | real flagged: balanced point | shipped point | fakes caught: balanced | shipped |")
    print("|---|---|---|---|---|---|---|---|")
    for name, g in df.groupby("set", sort=False):
        print(f"| {name} | {g['real'].iloc[0]} real / {g['fake'].iloc[0]} fake | {len(g)} | {ms(g, 'auc')} "
              f"| {ms(g, 'real_flagged_balanced')} | **{ms(g, 'real_flagged_shipped')}** | {ms(g, 'fakes_caught_balanced')} "
              f"| {ms(g, 'fakes_caught_shipped')} |")


if __name__ == "__main__":
    main()
