"""``deepgen benchmark generalization``: leave-dataset-out, as the public deepfake benchmarks do.

Train each recipe on the FF++-like preset (c23) and test, with no retraining, on the Celeb-DF-,
DFDC-, DeeperForensics- and WildDeepfake-like presets; add the equal-weight ensemble of all
recipes, robustness to JPEG quality 30 / blur / noise / 0.5x downscale, white-box PGD at 2/255 and
the worst skin-tone-group AUC. Prints and saves the table (``table.md``, ``results.json``) and plots.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from deepgen.augment.perturb import add_noise, downscale, gaussian_blur, jpeg_compress
from deepgen.errors import DeepgenError

TRAIN = "ffpp"
TESTS = ("celebdf", "dfdc", "deeperforensics", "wilddeepfake")
RECIPES = ("erm", "sbi", "dann", "supcon", "full")
STAMP = "deepgen_benchmark.json"  # the size and seed a preset's corpus was rendered with
PERTURBATIONS = {
    "jpeg30": lambda im, rng: jpeg_compress(im, 30),
    "blur": lambda im, rng: gaussian_blur(im, 1.5),
    "noise": lambda im, rng: add_noise(im, 8.0, rng),
    "down0.5": lambda im, rng: downscale(im, 0.5),
}


def prepare_data(out: str, videos: int, frames: int, seed: int, log: Callable[[str], None],
                 crop_size: int = 160) -> dict[str, str]:
    """Synth every preset, build its manifest and extract ``crop_size`` faces (reused when already there)."""
    from deepgen.datasets import write_manifest
    from deepgen.faces.extract import extract_faces
    from deepgen.storage import table_complete
    from deepgen.synth import render_preset

    faces = {}
    for i, preset in enumerate((TRAIN, *TESTS)):
        root, fdir = os.path.join(out, "data", preset), os.path.join(out, f"faces-{crop_size}", preset)
        if not table_complete(fdir):
            t = time.perf_counter()
            manifest = os.path.join(out, "manifests", f"{preset}.parquet")
            stamp = {"videos": videos, "frames": frames, "seed": seed + 101 * i}
            if not (os.path.exists(manifest) and _read_stamp(root) == stamp):  # else reuse the rendered corpus
                render_preset(preset, root, videos=videos, seed=stamp["seed"], frames=frames, overwrite=True)
                opts = {"ffpp_root": os.path.join(root, "ffpp_reals")} if preset == "deeperforensics" else {}
                write_manifest(preset, root, manifest, **opts)
                with open(os.path.join(root, STAMP), "w") as f:
                    json.dump(stamp, f)
            s = extract_faces(manifest, fdir, frames=frames, size=crop_size, overwrite=True)
            log(f"  {preset:16s} {s['media']} media, {s['faces_written']} faces, {s['by_status']} "
                f"({time.perf_counter() - t:.0f}s)")
        faces[preset] = fdir
    return faces


def _read_stamp(root: str) -> dict | None:
    try:
        with open(os.path.join(root, STAMP)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _load_eval_crops(faces: dict[str, str]) -> pd.DataFrame:
    """Decoded crops for evaluation: the training preset's test split, every row of the others."""
    from deepgen.faces.crop import decode_image
    from deepgen.faces.extract import read_faces

    frames = []
    for preset, uri in faces.items():
        t = read_faces(uri).to_pandas()
        if preset == TRAIN:
            t = t[t["split"] == "test"]
        t["crop"] = [decode_image(b) for b in t["image"]]
        frames.append(t.drop(columns=["image"]))
    return pd.concat(frames, ignore_index=True)


def _videos(bundle, crops: list[np.ndarray], df: pd.DataFrame) -> pd.DataFrame:
    """Per-video logit and calibrated score through the one inference path (indexed by media_id)."""
    from deepgen.inference import aggregate_media

    frames = df[[c for c in ("media_id", "track_id") if c in df.columns]].assign(
        logit=bundle.predict(crops, batch_size=256)["logit"])
    return aggregate_media(frames, bundle.temperature).set_index("media_id")


def score_recipe(bundle, df: pd.DataFrame, seed: int = 0) -> dict:
    """Per-dataset video AUC, mean/min over unseen, in-domain ECE, perturbation, PGD, worst-group AUC."""
    from deepgen.evaluation.calibration import expected_calibration_error
    from deepgen.evaluation.metrics import compute_metrics
    from deepgen.evaluation.subgroups import subgroup_metrics

    crops = list(df["crop"])
    agg = {"label": ("label", "first"), "dataset": ("dataset", "first")}
    if "skin_tone_group" in df:
        agg["group"] = ("skin_tone_group", "first")
    videos = df.groupby("media_id").agg(**agg)
    scored = _videos(bundle, crops, df).loc[videos.index]
    videos["logit"], videos["score"] = scored["logit"], scored["score"]
    row: dict = {}
    for d, g in videos.groupby("dataset"):
        row[d] = compute_metrics(g["label"], g["score"])["auc"]
    unseen = [row[d] for d in TESTS if d in row]
    row["mean_auc"], row["min_auc"] = float(np.mean(unseen)), float(np.min(unseen))
    ind = videos[videos["dataset"] == TRAIN]
    row["ece_in_domain"] = expected_calibration_error(ind["label"], ind["score"]) if len(ind) else float("nan")
    pool = videos[videos["dataset"].isin(TESTS)]
    row["worst_group_auc"] = float("nan")  # skin-tone groups come from the synth sidecar
    if "group" in pool:
        sg = subgroup_metrics(pool, "group", min_count=5)["summary"]
        row["worst_group_auc"] = float(sg["worst_auc"].iloc[0]) if len(sg) else float("nan")
    rng = np.random.default_rng(seed)
    unseen_rows = df["dataset"].isin(TESTS).to_numpy()
    for name, fn in PERTURBATIONS.items():
        pert = [fn(c, rng) if u else c for c, u in zip(crops, unseen_rows)]
        zp = _videos(bundle, pert, df).loc[pool.index, "logit"]
        row[f"auc_{name}"] = compute_metrics(pool["label"], zp)["auc"]
    row["auc_pgd2"] = _pgd_auc(bundle, df[unseen_rows], seed)
    return {"row": row, "logits": videos["logit"], "videos": videos}


def _pgd_auc(bundle, df: pd.DataFrame, seed: int, per_class: int = 48) -> float:
    """Frame-level AUC on unseen crops under white-box PGD (L_inf 2/255, 5 steps)."""
    from deepgen.evaluation.robustness import detector_robustness

    table = detector_robustness(bundle.model, list(df["crop"]), df["label"].to_numpy(), budgets=(2 / 255,),
                                per_class=per_class, seed=seed)
    return float(table["auc"].iloc[0])


def generalization(out: str = "bench-out", recipes: tuple[str, ...] = RECIPES, videos: int = 100, frames: int = 8,
                   epochs: int | None = 60, workers: int = 2, seed: int = 0, backbone: str | None = None,
                   crop_size: int = 160, image_size: int | None = 128,
                   log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run the leave-dataset-out benchmark; returns the table (also written under ``out``).

    Faces are extracted at ``crop_size`` and every recipe trains at ``image_size`` (None: the
    recipe's own) for ``epochs`` (None: the recipe's own): at ~70 training videos the blending and
    resampling traces live in the top octave, which the recipes' 64-pixel default throws away.
    """
    from deepgen.evaluation.metrics import compute_metrics
    from deepgen.models.bundle import load_bundle
    from deepgen.runtime import init_ray
    from deepgen.train import train
    from deepgen.train.config import load_config, packaged_recipes

    unknown = [r for r in recipes if r not in packaged_recipes()]
    if unknown:
        raise DeepgenError(f"recipe(s) {', '.join(unknown)} have no configs/<name>.yaml; choose from "
                           f"{', '.join(packaged_recipes())}.")
    if crop_size < 16:
        raise DeepgenError(f"crop size {crop_size} is too small for a face; use --crop-size 16 or more (160 by default).")
    overrides = {"seed": seed, **({"epochs": epochs} if epochs else {}),
                 **({"model.backbone": backbone} if backbone else {}),
                 **({"model.image_size": image_size} if image_size else {})}
    for recipe in recipes:  # a bad override fails now, not after the corpus is rendered and extracted
        load_config(recipe, overrides)
    t0 = time.perf_counter()
    init_ray(None)
    log(f"data: {videos} videos per preset, {frames} frames each, {crop_size}-pixel face crops")
    faces = prepare_data(out, videos, frames, seed, log, crop_size)
    df = _load_eval_crops(faces)
    rows, logits, bundles = [], {}, []
    for recipe in recipes:
        t = time.perf_counter()
        res = train(recipe, [faces[TRAIN]], os.path.join(out, "runs", recipe),
                    workers=workers, overrides=overrides, overwrite=True)
        bundle = load_bundle(res["bundle"])
        bundles.append(bundle)
        scored = score_recipe(bundle, df, seed)
        logits[recipe] = scored["logits"]
        rows.append({"recipe": recipe, **scored["row"], "train_s": round(time.perf_counter() - t)})
        log(f"  {recipe:8s} mean AUC {scored['row']['mean_auc']:.3f}  min AUC {scored['row']['min_auc']:.3f}  "
            f"({time.perf_counter() - t:.0f}s)")
    if len(bundles) > 1:
        from deepgen.evaluation.ensemble import combine_logits

        vids = scored["videos"]
        z = pd.Series(combine_logits([logits[r].loc[vids.index] for r in recipes],
                                     temperatures=[b.temperature for b in bundles]), index=vids.index)
        ens = {d: compute_metrics(g["label"], z.loc[g.index])["auc"] for d, g in vids.groupby("dataset")}
        unseen = [ens[d] for d in TESTS if d in ens]
        rows.append({"recipe": "ensemble(" + "+".join(recipes) + ")", **ens, "mean_auc": float(np.mean(unseen)),
                     "min_auc": float(np.min(unseen))})
    table = pd.DataFrame(rows)
    cols = ["recipe", TRAIN, *TESTS, "mean_auc", "min_auc", "ece_in_domain", "worst_group_auc",
            *[f"auc_{p}" for p in PERTURBATIONS], "auc_pgd2", "train_s"]
    table = table[[c for c in cols if c in table.columns]]
    os.makedirs(out, exist_ok=True)
    md = markdown_table(table)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(md + "\n")
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"table": table.to_dict("records"), "videos": videos, "frames": frames, "seed": seed,
                   "epochs": epochs, "backbone": backbone,
                   "crop_size": crop_size, "image_size": image_size, "seconds": round(time.perf_counter() - t0)}, f, indent=2, default=float)
    _plot(table, os.path.join(out, "auc_by_dataset.png"))
    log("\n" + md + f"\n\ntotal {time.perf_counter() - t0:.0f}s; written to {out}/table.md, results.json, "
        "auc_by_dataset.png")
    return table


def markdown_table(table: pd.DataFrame) -> str:
    """The table as GitHub markdown, numbers to 3 decimals."""
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) and np.isfinite(v) else ("" if isinstance(v, float) else str(v))

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in table.itertuples(index=False)]
    return "\n".join(lines)


def _plot(table: pd.DataFrame, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [c for c in (TRAIN, *TESTS) if c in table.columns]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(table)
    for i, r in enumerate(table.to_dict("records")):
        ax.bar(np.arange(len(sets)) + i * width, [r.get(s, np.nan) for s in sets], width, label=r["recipe"])
    ax.set_xticks(np.arange(len(sets)) + 0.4 - width / 2)
    ax.set_xticklabels([f"{s}\n(train)" if s == TRAIN else s for s in sets])
    ax.set_ylim(0.4, 1.0)
    ax.set_ylabel("video AUC")
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
