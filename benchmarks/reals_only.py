"""Training from real footage only, measured on real-face forgeries of people the model never saw.

For each seed: ``deepgen synth --preset ffpp --photos DIR`` renders a corpus of real people (the
people split train/val/test by identity, from ``identities.csv``; forgeries only pair people of one
split), ``deepgen manifest`` + ``deepgen extract`` make its faces table, and the detector trains on
the REAL faces of the train and val people alone (every fake row dropped), so it validates, selects
and calibrates on pseudo-fakes of the val people's real faces. It is then scored, through the
evaluation path (Ray Data frame scoring, video aggregation, the bundle's temperature), on the test
people's real videos and their real forgeries (face swap, reenactment, autoencoder, neural texture).

Reported per seed and as mean +- std over seeds: video AUC on the unseen people; the share of their
real videos flagged fake (score >= 0.5) and of their forgeries caught; ECE of the test videos with
the shipped temperature (fitted on pseudo-fakes) and with a temperature fitted on the val people's
real forgeries (what a team with a few labelled forgeries could do); and with ``--reference erm``
the same detector recipe trained WITH the train people's real forgeries, for scale.

    python benchmarks/reals_only.py --photos ../shared/data/real_faces --work /tmp/reals_only \\
        --seeds 0 1 2 --videos 200 --frames 8 --size 192 --crop 96

``--synth-pythonpath`` points the synth step at a checkout that has ``synth --photos`` (it runs as
``python -m deepgen.cli synth`` with that PYTHONPATH); everything else runs this checkout's code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np


def render(photos: str, tree: str, seed: int, videos: int, frames: int, size: int, pythonpath: str | None) -> None:
    """The real-people corpus (FF++ layout) of one seed; kept when already rendered."""
    if os.path.exists(os.path.join(tree, "deepgen_groundtruth.json")):
        return
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, "-m", "deepgen.cli", "synth", "--preset", "ffpp", "--photos", photos, "--out", tree,
           "--videos", str(videos), "--frames", str(frames), "--size", str(size), "--seed", str(seed),
           "--landmarks", "yunet", "--overwrite", "--quiet"]
    # python -m puts the working directory first on sys.path: run from the synth checkout
    subprocess.run(cmd, check=True, env=env, cwd=pythonpath or None)


def faces_of(tree: str, work: str, frames: int, crop: int) -> str:
    """Manifest and faces table (extract output directory) of a rendered tree."""
    from deepgen.datasets import build_manifest
    from deepgen.faces.extract import extract_faces
    from deepgen.storage import write_table

    out = os.path.join(work, "faces")
    if not os.path.exists(os.path.join(out, "extract.json")):
        manifest = os.path.join(work, "manifest.parquet")
        write_table(build_manifest("ffpp", tree), manifest)
        extract_faces(manifest, out, frames=frames, size=crop, overwrite=True, quiet=True)
    return out


def subset(faces: str, out: str, keep) -> str:
    """Rows of an extract output chosen by ``keep(table) -> mask``, written as an extract output (settings kept)."""
    from deepgen.faces.extract import read_faces
    from deepgen.storage import write_table

    table = read_faces(faces)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, "faces"))
    write_table(table.filter(keep(table)), os.path.join(out, "faces", "part-0.parquet"))
    shutil.copy(os.path.join(faces, "extract.json"), os.path.join(out, "extract.json"))
    return out


def measure(bundle_uri: str, faces: str) -> dict:
    """Video predictions of the test and val people through the evaluation path, and the figures above."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from deepgen.evaluation.calibration import (
        apply_temperature,
        expected_calibration_error,
        fit_temperature,
        sigmoid,
    )
    from deepgen.evaluation.metrics import compute_metrics
    from deepgen.evaluation.run import score_frames, video_predictions
    from deepgen.faces.extract import read_faces
    from deepgen.models.bundle import load_bundle

    bundle = load_bundle(bundle_uri)
    table = read_faces(faces)
    table = table.filter(pc.is_in(table["split"], value_set=pa.array(["val", "test"])))
    frames = score_frames(table, bundle_uri, mc_passes=0, evidence=False, quiet=True)
    videos, _ = video_predictions(frames, bundle.temperature, ["split"])
    test, val = videos[videos["split"] == "test"], videos[videos["split"] == "val"]
    y, z = test["label"].to_numpy().astype(int), test["logit"].to_numpy()
    t_real = fit_temperature(val["logit"].to_numpy(), val["label"].to_numpy().astype(int))
    shipped = apply_temperature(z, bundle.temperature)  # P(fake) = sigmoid(z / T)
    p90 = float(np.quantile(val["logit"].to_numpy()[val["label"].to_numpy() == 0], 0.9))
    out = {
        "test_videos": int(len(test)), "test_real": int((y == 0).sum()), "test_fake": int((y == 1).sum()),
        "auc": compute_metrics(y, z)["auc"],
        "real_flagged": float(np.mean(shipped[y == 0] >= 0.5)),
        "fake_caught": float(np.mean(shipped[y == 1] >= 0.5)),
        "temperature": float(bundle.temperature), "temperature_real": float(t_real),
        "ece_shipped": expected_calibration_error(y, shipped, n_bins=10),
        "ece_real_t": expected_calibration_error(y, apply_temperature(z, t_real), n_bins=10),
        "ece_raw": expected_calibration_error(y, sigmoid(z), n_bins=10),
        # the same threshold on the val people's real videos (the reals the detector selected on) and
        # on single test frames: where real videos cross 0.5
        "val_real_flagged": float(np.mean(val["logit"].to_numpy()[val["label"].to_numpy() == 0] >= 0)),
        "real_flagged_frames": float(np.mean(frames.loc[(frames["split"] == "test") & (frames["label"] == 0),
                                                        "logit"].to_numpy() >= 0)),
        # a threshold a reals-only team can set: the 90th percentile of its held-out real videos (val people)
        "real_flagged_at_p90": float(np.mean(z[y == 0] >= p90)),
        "fake_caught_at_p90": float(np.mean(z[y == 1] >= p90)),
        "validation_fakes": bundle.metrics.get("validation_fakes"),
        "val_auc_selected": bundle.metrics.get("selected", {}).get("val_auc"),
    }
    for method, g in test[test["label"] == 1].groupby("method"):
        reals = test[test["label"] == 0]
        both = np.r_[reals["logit"].to_numpy(), g["logit"].to_numpy()]
        out[f"auc_{method}"] = compute_metrics(np.r_[np.zeros(len(reals)), np.ones(len(g))].astype(int), both)["auc"]
    return out


def run_seed(args, seed: int, recipe: str, reference: bool) -> dict:
    """One seed: corpus, faces, training (reals alone, or with the train people's forgeries), measurement."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from deepgen.train import train

    work = os.path.join(args.work, f"seed{seed}")
    render(os.path.abspath(args.photos), os.path.join(os.path.abspath(work), "tree"), seed, args.videos, args.frames, args.size, args.synth_pythonpath)
    faces = faces_of(os.path.join(work, "tree"), work, args.frames, args.crop)
    name = f"{recipe}-with-fakes" if reference else recipe
    if reference:  # the train people's real forgeries train; the val people's select
        def keep(t):
            return pc.is_in(t["split"], value_set=pa.array(["train", "val"]))
    else:  # real faces of the train and val people, not one fake
        def keep(t):
            return pc.and_(pc.equal(t["label"], 0), pc.is_in(t["split"], value_set=pa.array(["train", "val"])))
    data = subset(faces, os.path.join(work, f"train-{name}"), keep)
    run = os.path.join(work, f"run-{name}")
    overrides = {"seed": seed, **({"epochs": args.epochs} if args.epochs else {})}
    t0 = time.perf_counter()
    bundle = os.path.join(run, "bundle")
    if not (args.reuse and os.path.exists(os.path.join(bundle, "metrics.json"))):
        train(recipe, [data], run, workers=1, overrides=overrides, overwrite=True, quiet=True)
    row = {"recipe": name, "seed": seed, "train_s": round(time.perf_counter() - t0, 1), **measure(bundle, faces)}
    print(json.dumps(row), flush=True)
    return row


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and std over seeds of every numeric figure, per recipe."""
    out = []
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        mine = [r for r in rows if r["recipe"] == recipe]
        keys = [k for k, v in mine[0].items() if isinstance(v, int | float) and k != "seed"]
        s = {"recipe": recipe, "seeds": len(mine)}
        for k in keys:
            vals = np.array([r.get(k, np.nan) for r in mine], float)
            s[k] = f"{np.nanmean(vals):.3f} +- {np.nanstd(vals):.3f}"
        out.append(s)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", required=True, help="Folder of real face photos with identities.csv.")
    p.add_argument("--work", required=True, help="Scratch folder (corpora, faces, runs).")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--videos", type=int, default=200, help="Media items per corpus (half real).")
    p.add_argument("--frames", type=int, default=8, help="Frames per video (rendered and extracted).")
    p.add_argument("--size", type=int, default=192, help="Shorter frame side of the rendered videos.")
    p.add_argument("--crop", type=int, default=96, help="Face crop side (extract --size).")
    p.add_argument("--recipe", default="sbi", help="Recipe trained on real faces alone.")
    p.add_argument("--reference", default=None, help="Also train this recipe WITH the train people's forgeries.")
    p.add_argument("--epochs", type=int, default=None, help="Override the recipes' epochs.")
    p.add_argument("--reuse", action="store_true", help="Measure runs already trained under --work again.")
    p.add_argument("--synth-pythonpath", default=None, help="PYTHONPATH of a checkout with `synth --photos`.")
    args = p.parse_args()

    from deepgen.runtime import init_ray

    for attempt in range(5):  # a loaded machine can miss Ray's 30 s node start-up window: try again
        try:
            init_ray(None)
            break
        except Exception as e:
            import ray

            ray.shutdown()
            print(f"ray start attempt {attempt + 1} failed ({e}); retrying", file=sys.stderr, flush=True)
            time.sleep(10)
    rows = []
    runs = [(seed, args.recipe, False) for seed in args.seeds]  # every seed of reals-only training first
    runs += [(seed, args.reference, True) for seed in args.seeds] if args.reference else []
    for seed, recipe, reference in runs:
        rows.append(run_seed(args, seed, recipe, reference))
        with open(os.path.join(args.work, "results.json"), "w") as f:  # after every run: partial results survive
            json.dump({"args": vars(args), "rows": rows, "summary": summarize(rows)}, f, indent=2)
    for s in summarize(rows):
        print(json.dumps(s))


if __name__ == "__main__":
    main()
