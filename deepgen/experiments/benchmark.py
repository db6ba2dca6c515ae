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
from deepgen.experiments.corpora import prepared_corpus, read_stamp, video_scores, write_stamp

TRAIN = "ffpp"
TESTS = ("celebdf", "dfdc", "deeperforensics", "wilddeepfake")
RECIPES = ("erm", "sbi", "dann", "supcon", "full")
PERTURBATIONS = {
    "jpeg30": lambda im, rng: jpeg_compress(im, 30),
    "blur": lambda im, rng: gaussian_blur(im, 1.5),
    "noise": lambda im, rng: add_noise(im, 8.0, rng),
    "down0.5": lambda im, rng: downscale(im, 0.5),
}


def prepare_data(out: str, videos: int, frames: int, seed: int, log: Callable[[str], None],
                 crop_size: int = 96, test_videos: int | None = None) -> dict[str, str]:
    """Synth every preset (``videos`` for the FF++-like one, ``test_videos`` for the others), build its
    manifest and extract ``crop_size`` faces; a corpus already rendered with the same stamp is reused."""
    from deepgen.datasets import write_manifest
    from deepgen.synth import render_preset

    faces = {}
    for i, preset in enumerate((TRAIN, *TESTS)):
        n = videos if preset == TRAIN else (test_videos or videos)
        stamp = {"videos": n, "frames": frames, "seed": seed + 101 * i}

        def render(root: str, manifest: str, preset: str = preset, n: int = n, stamp: dict = stamp) -> None:
            render_preset(preset, root, videos=n, seed=stamp["seed"], frames=frames, overwrite=True)
            opts = {"ffpp_root": os.path.join(root, "ffpp_reals")} if preset == "deeperforensics" else {}
            write_manifest(preset, root, manifest, **opts)

        faces[preset] = prepared_corpus(out, preset, stamp, render, frames, crop_size, log)[1]
    return faces


def _eval_crops(faces: dict[str, str], seen: tuple[str, ...] = (TRAIN,)) -> pd.DataFrame:
    """Decoded crops for evaluation (decoded once, cached): test split of ``seen`` presets, all rows of others."""
    key = (tuple(sorted(faces.items())), seen)
    if key not in _CROPS:
        _CROPS.clear()  # one evaluation set in memory at a time
        _CROPS[key] = _load_eval_crops(faces, seen)
    return _CROPS[key]


_CROPS: dict = {}


def _load_eval_crops(faces: dict[str, str], seen: tuple[str, ...] = (TRAIN,)) -> pd.DataFrame:
    """Decoded crops for evaluation: the test split of the ``seen`` presets, every row of the others."""
    from deepgen.faces.crop import decode_image
    from deepgen.faces.extract import read_faces

    frames = []
    for preset, uri in faces.items():
        t = read_faces(uri).to_pandas()
        if preset in seen:
            t = t[t["split"] == "test"]
        t["crop"] = [decode_image(b) for b in t["image"]]
        frames.append(t.drop(columns=["image"]))
    return pd.concat(frames, ignore_index=True)


def score_recipe(bundle, df: pd.DataFrame, seed: int = 0, robustness: bool = True) -> dict:
    """Per-dataset video AUC, mean/min over unseen, in-domain ECE, worst-group AUC and, with
    ``robustness``, AUC under the perturbations and white-box PGD."""
    from deepgen.evaluation.calibration import expected_calibration_error, sigmoid
    from deepgen.evaluation.metrics import compute_metrics
    from deepgen.evaluation.subgroups import subgroup_metrics

    crops = list(df["crop"])
    agg = {"label": ("label", "first"), "dataset": ("dataset", "first")}
    if "skin_tone_group" in df:
        agg["group"] = ("skin_tone_group", "first")
    videos = df.groupby("media_id").agg(**agg)
    scored = video_scores(bundle, crops, df).loc[videos.index]
    videos["logit"], videos["score"] = scored["logit"], scored["score"]
    row: dict = {}
    for d, g in videos.groupby("dataset"):
        row[d] = compute_metrics(g["label"], g["score"])["auc"]
    unseen = [row[d] for d in TESTS if d in row]
    row["mean_auc"], row["min_auc"] = float(np.mean(unseen)), float(np.min(unseen))
    ind = videos[videos["dataset"] == TRAIN]
    row["ece_in_domain"] = expected_calibration_error(ind["label"], ind["score"]) if len(ind) else float("nan")
    frame_t = bundle.metrics.get("frame_temperature")  # the temperature fitted on frames, for comparison
    row["ece_frame_t"] = (expected_calibration_error(ind["label"], sigmoid(ind["logit"].to_numpy() / frame_t))
                          if len(ind) and frame_t else float("nan"))
    pool = videos[videos["dataset"].isin(TESTS)]
    row["worst_group_auc"] = float("nan")  # skin-tone groups come from the synth sidecar
    if "group" in pool:
        sg = subgroup_metrics(pool, "group", min_count=5)["summary"]
        row["worst_group_auc"] = float(sg["worst_auc"].iloc[0]) if len(sg) else float("nan")
    if not robustness:
        return {"row": row, "logits": videos["logit"], "videos": videos}
    rng = np.random.default_rng(seed)
    unseen_rows = df["dataset"].isin(TESTS).to_numpy()
    for name, fn in PERTURBATIONS.items():
        pert = [fn(c, rng) if u else c for c, u in zip(crops, unseen_rows)]
        zp = video_scores(bundle, pert, df).loc[pool.index, "logit"]
        row[f"auc_{name}"] = compute_metrics(pool["label"], zp)["auc"]
    row["auc_pgd2"] = _pgd_auc(bundle, df[unseen_rows], seed)
    return {"row": row, "logits": videos["logit"], "videos": videos}


def _pgd_auc(bundle, df: pd.DataFrame, seed: int, per_class: int = 48) -> float:
    """Frame-level AUC on unseen crops under white-box PGD (L_inf 2/255, 5 steps)."""
    from deepgen.evaluation.robustness import detector_robustness

    table = detector_robustness(bundle.model, list(df["crop"]), df["label"].to_numpy(), budgets=(2 / 255,),
                                per_class=per_class, seed=seed)
    return float(table["auc"].iloc[0])


# ablations of `full`: one component switched at a time (same data, budget and seeds); "-" takes a
# component of `full` out, "+" adds one that `full` does not have, "@" changes a budget (README, "Ablation")
ABLATIONS: dict[str, dict] = {
    "full": {},
    "+self_blends": {"blend_other_prob": 0.7},  # 30% of pseudo-fakes self-blended (SBI), as `full` had
    "-xray_blends": {"sbi_prob": 0.0},  # no pseudo-fakes at all
    "+supcon": {"lambda_supcon": 0.1},
    "+method_adv": {"lambda_method": 0.1},
    "+supcon+method_adv": {"lambda_supcon": 0.1, "lambda_method": 0.1},  # as `full` had
    "-dann": {"lambda_domain": 0.0},  # a no-op with one training dataset: skipped in protocol a and real's folds
    "-ema": {"ema_decay": 0.0},
    "@input64": {"model.image_size": 64},  # input size: the crops resized to 64 px instead of the crop size
    "@frames4": {"frames_per_video": 4},  # frames per video: 4 evenly spaced training frames of each video
    "-perturb": {f"perturb.{k}": 0.0 for k in ("jpeg_p", "blur_p", "noise_p", "color_p", "downscale_p")},
    "+strong_perturb": {  # perturbation ranges that span the benchmark's corruptions, twice as often
        "perturb.jpeg_quality": [25, 95], "perturb.blur_p": 0.3, "perturb.blur_sigma": [0.3, 2.0],
        "perturb.noise_p": 0.3, "perturb.noise_std": [2.0, 12.0], "perturb.downscale_p": 0.3,
        "perturb.downscale_factor": [0.4, 0.9]},
    "+heavy_compression": {  # user footage: H.264 at CRF 30-40 and downscaled (FF++ c40); JPEG stands in per crop
        "perturb.jpeg_p": 0.8, "perturb.jpeg_quality": [10, 60], "perturb.downscale_p": 0.5,
        "perturb.downscale_factor": [0.3, 0.8], "perturb.blur_p": 0.3},
}
PROTOCOLS = ("a", "b", "real", "realdf")


def _runs(recipes: tuple[str, ...], ablate: bool | tuple[str, ...], protocol: str = "a"
          ) -> list[tuple[str, str, dict]]:
    """(row name, recipe, overrides) of every model the benchmark trains per seed.

    ``ablate``: True for every ablation, or the names of those to run (``full`` always runs with them).
    """
    if ablate:
        chosen = set(ABLATIONS) if ablate is True else {"full", *ablate}
        return [(name if name == "full" else f"full{name}", "full", o) for name, o in ABLATIONS.items()
                if name in chosen and not (protocol == "a" and name == "-dann")]
    return [(r, r, {}) for r in recipes]


def generalization(out: str = "bench-out", recipes: tuple[str, ...] = RECIPES, videos: int = 720,
                   frames: int = 4, epochs: int | None = None, workers: int = 2, seed: int = 0,
                   backbone: str | None = None, crop_size: int = 96, image_size: int | None = None,
                   test_videos: int = 200, seeds: int = 1, protocol: str = "a", ablate: bool | tuple[str, ...] = False,
                   photos: str | list[str] | None = None, folds: int = 3, real_parts: tuple[str, ...] | None = None,
                   real_deepfakes: str | None = None, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run the generalization benchmark; returns the table (also written under ``out``).

    Protocol ``a``: train on the FF++-like preset, test on the four others. Protocol ``b``: leave one
    dataset out over the five presets (train on four, test on the fifth), so the domain adversary
    has real domains to separate. Every model trains ``seeds`` times (seeds ``seed``..``seed+K-1``)
    on the same data with the same budget; the table gives mean ± std over them. ``ablate`` trains
    ``full`` and ``full`` with each generalization component switched instead of ``recipes`` (True:
    every row of ``ABLATIONS``; a tuple: those rows). Protocol ``real``: real people from ``photos``,
    ``folds`` folds over people, leave-one-family-out and procedural → real
    (:mod:`deepgen.experiments.real`); ``videos`` sizes both the photo and the procedural corpus. Protocol
    ``realdf``: the same training, scored on ``real_deepfakes`` (default ``../shared/data/real_deepfakes``).
    """
    from deepgen.runtime import init_ray
    from deepgen.train.config import load_config, packaged_recipes

    unknown = [r for r in recipes if r not in packaged_recipes()]
    if unknown:
        raise DeepgenError(f"recipe(s) {', '.join(unknown)} have no configs/<name>.yaml; choose from "
                           f"{', '.join(packaged_recipes())}.")
    if protocol not in PROTOCOLS:
        raise DeepgenError(f"protocol {protocol!r} is unknown; use a (train FF++-like, test the rest), b "
                           "(leave one dataset out), real (people never seen, from --photos) or realdf (real "
                           "deepfakes of ../shared/data/real_deepfakes).")
    if crop_size < 16:
        raise DeepgenError(f"crop size {crop_size} is too small for a face; use --crop-size 16 or more (96 by default).")
    bad = [] if isinstance(ablate, bool) else [a for a in ablate if a not in ABLATIONS]
    if bad:
        raise DeepgenError(f"ablation(s) {', '.join(bad)} are unknown; choose from {', '.join(ABLATIONS)}.")
    if seeds < 1:
        raise DeepgenError(f"seeds is {seeds}; train every recipe at least once (--seeds 1 or more).")
    from deepgen.storage import protected_reason

    reason = protected_reason(out)  # the benchmark replaces its own caches under out, never out itself
    if reason:
        raise DeepgenError(f"{out} cannot be the benchmark's --out because {reason}; choose a new folder.")
    base = {**({"epochs": epochs} if epochs else {}), **({"model.backbone": backbone} if backbone else {}),
            **({"model.image_size": image_size} if image_size else {})}
    runs = _runs(recipes, ablate, protocol)  # real: -dann runs in the mixed part only (two corpora)
    inputs = set()
    for _, recipe, o in runs:  # a bad override fails now, not after the corpus is rendered and extracted
        inputs.add(int(load_config(recipe, {**base, **o}).model.image_size))
    if not image_size and inputs != {crop_size}:  # a larger crop alone is no larger input: say so before training
        log(f"note: the recipes' models take {'/'.join(map(str, sorted(inputs)))}-px input, so the {crop_size}-px "
            f"crops are resized to it; pass --image-size {crop_size} to train at the crop size.")
    if protocol == "realdf":  # found before Ray starts and anything is rendered
        from deepgen.experiments.realdf import require_real_deepfakes

        real_deepfakes = require_real_deepfakes(real_deepfakes, "the realdf protocol")
    t0 = time.perf_counter()
    init_ray(None)
    if protocol == "realdf":
        return _protocol_realdf(out, runs, base, photos, videos, frames, seed, seeds, crop_size, workers, t0, log,
                                real_deepfakes)
    if protocol == "real":
        parts = real_parts or (("folds",) if ablate else None)
        return _protocol_real(out, runs, base, photos, videos, frames, seed, seeds, crop_size, workers, folds,
                              parts, bool(ablate), t0, log)
    log(f"data: {videos} FF++-like videos, {test_videos} per other preset, {frames} frames each, "
        f"{crop_size}-pixel face crops; protocol {protocol}, {seeds} seed(s)")
    faces = prepare_data(out, videos, frames, seed, log, crop_size, test_videos)
    per_seed = []
    for k in range(seeds):
        for name, recipe, o in runs:
            overrides = {**base, **o, "seed": seed + k}
            if protocol == "a":
                row = _protocol_a(out, name, recipe, overrides, faces, workers, seed + k, log)
            else:
                row = _protocol_b(out, name, recipe, overrides, faces, workers, seed + k, log)
            per_seed.append({"recipe": name, "seed": seed + k, **row})
    raw = pd.DataFrame(per_seed)
    table = summarize_seeds(raw)
    tag = f"{protocol}{'-ablation' if ablate else ''}"
    os.makedirs(out, exist_ok=True)
    _plot(raw, os.path.join(out, f"auc_by_dataset-{tag}.png"))
    publish_table(out, tag, raw, table, {"videos": videos, "test_videos": test_videos, "frames": frames,
                                    "seeds": list(range(seed, seed + seeds)), "epochs": epochs, "backbone": backbone,
                                    "crop_size": crop_size, "image_size": image_size, "protocol": protocol},
             t0, log, also=(f"auc_by_dataset-{tag}.png",))
    return table


def publish_table(out: str, tag: str, raw: pd.DataFrame, table: pd.DataFrame, meta: dict, t0: float,
             log: Callable[[str], None], also: tuple[str, ...] = ()) -> None:
    """Write ``table-<tag>.md`` and ``results-<tag>.json`` (every run, the table and ``meta``) under ``out``
    and print the table with where it went (``also``: further files written beside them)."""
    md = markdown_table(table)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"table-{tag}.md"), "w") as f:
        f.write(md + "\n")
    with open(os.path.join(out, f"results-{tag}.json"), "w") as f:
        json.dump({"runs": raw.to_dict("records"), "table": table.to_dict("records"), **meta,
                   "seconds": round(time.perf_counter() - t0)}, f, indent=2, default=float)
    files = ", ".join([f"{out}/table-{tag}.md", f"results-{tag}.json", *also])
    log("\n" + md + f"\n\ntotal {time.perf_counter() - t0:.0f}s; written to {files}")


def _protocol_real(out: str, runs: list, base: dict, photos: str | None, videos: int, frames: int, seed: int,
                   seeds: int, crop_size: int, workers: int, folds: int, parts: tuple[str, ...] | None,
                   ablate: bool, t0: float, log: Callable[[str], None]) -> pd.DataFrame:
    """Protocol ``real``: the rows of :func:`deepgen.experiments.real.run_real`, summarized and written under ``out``."""
    from deepgen.experiments.real import PARTS, run_real, summarize_real

    raw = run_real(out, runs, base, photos, videos, frames, seed, seeds, crop_size, workers, folds, log,
                   parts or PARTS)
    table = summarize_real(raw)
    publish_table(out, f"real{'-ablation' if ablate else ''}", raw, table,
             {"videos": videos, "frames": frames, "folds": folds, "seeds": list(range(seed, seed + seeds)),
              "crop_size": crop_size, "protocol": "real"}, t0, log)
    return table


def _protocol_realdf(out: str, runs: list, base: dict, photos, videos: int, frames: int, seed: int, seeds: int,
                     crop_size: int, workers: int, t0: float, log: Callable[[str], None],
                     real_deepfakes: str | None = None) -> pd.DataFrame:
    """Protocol ``realdf``: :func:`deepgen.experiments.real.run_realdf`, summarized and written under ``out``."""
    from deepgen.experiments.real import run_realdf, summarize_realdf

    raw = run_realdf(out, runs, base, photos, videos, frames, seed, seeds, crop_size, workers, log, real_deepfakes)
    table = summarize_realdf(raw)
    publish_table(out, "realdf", raw, table, {"videos": videos, "frames": frames, "seeds": list(range(seed, seed + seeds)),
                                         "crop_size": crop_size, "protocol": "realdf"}, t0, log)
    return table


def _protocol_a(out: str, name: str, recipe: str, overrides: dict, faces: dict[str, str], workers: int,
                seed: int, log: Callable[[str], None], robust: bool = True) -> dict:
    """Train on the FF++-like preset; score its test split and all of the four others."""
    from deepgen.models.bundle import load_bundle
    from deepgen.train import train
    from deepgen.train.config import load_config

    t, run = time.perf_counter(), os.path.join(out, "runs", f"{name}-s{seed}")
    # the resolved recipe, so a changed recipe file retrains instead of reusing an older model's row
    key = {"recipe": recipe, "config": load_config(recipe, overrides).to_dict(), "faces": faces[TRAIN]}
    key = json.loads(json.dumps(key, default=float))  # as stored (tuples become lists)
    found = _trained_before(os.path.dirname(run), run, key, robust)
    if found:  # the same seeded model, trained and scored before under this or another row name
        log(f"  {name:18s} seed {seed}: reused from {found[0]}")
        return found[1]
    res = train(recipe, [faces[TRAIN]], run, workers=workers, overrides=overrides, overwrite=True, quiet=True)
    scored = score_recipe(load_bundle(res["bundle"]), _eval_crops(faces), seed, robustness=robust)["row"]
    log(f"  {name:18s} seed {seed}: mean AUC {scored['mean_auc']:.3f}  min AUC {scored['min_auc']:.3f}  "
        f"({time.perf_counter() - t:.0f}s)")
    row = {**scored, "train_s": round(time.perf_counter() - t)}
    write_stamp(run, {"key": key, "robust": robust, "row": row})
    return row


def _trained_before(runs: str, run: str, key: dict, robust: bool) -> tuple[str, dict] | None:
    """(run directory, row) of a stored run with this key (``run`` itself first), else None."""
    others = sorted(os.listdir(runs)) if os.path.isdir(runs) else []
    for path in [run, *(os.path.join(runs, d) for d in others if os.path.join(runs, d) != run)]:
        stamp = read_stamp(path)
        if stamp and stamp.get("key") == key and (stamp.get("robust") or not robust):
            return path, stamp["row"]
    return None


def _protocol_b(out: str, name: str, recipe: str, overrides: dict, faces: dict[str, str], workers: int,
                seed: int, log: Callable[[str], None]) -> dict:
    """Leave one dataset out: for each preset, train on the other four and score it."""
    from deepgen.evaluation.metrics import compute_metrics
    from deepgen.models.bundle import load_bundle
    from deepgen.train import train

    t, row = time.perf_counter(), {}
    for held in faces:
        res = train(recipe, [f for p, f in faces.items() if p != held],
                    os.path.join(out, "runs-b", f"{name}-{held}-s{seed}"), workers=workers, overrides=overrides,
                    overwrite=True, quiet=True)
        df = _eval_crops({held: faces[held]}, seen=())
        bundle = load_bundle(res["bundle"])
        videos = video_scores(bundle, list(df["crop"]), df)
        labels = df.groupby("media_id")["label"].first().loc[videos.index]
        row[held] = compute_metrics(labels, videos["score"])["auc"]
    row["mean_auc"], row["min_auc"] = float(np.mean(list(row.values()))), float(np.min(list(row.values())))
    log(f"  {name:18s} seed {seed}: mean AUC {row['mean_auc']:.3f}  min AUC {row['min_auc']:.3f}  "
        f"({time.perf_counter() - t:.0f}s)")
    return {**row, "train_s": round(time.perf_counter() - t)}


def summarize_seeds(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per recipe: ``mean ± std`` over its seeds for every numeric column (std 0 with one seed)."""
    cols = [c for c in raw.columns if c not in ("recipe", "seed")]
    rows = []
    for name, g in raw.groupby("recipe", sort=False):
        row = {"recipe": name, "seeds": len(g)}
        for c in cols:
            v = g[c].to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            row[c] = f"{v.mean():.3f} ± {v.std():.3f}" if len(v) and c != "train_s" else (
                f"{v.mean():.0f}" if len(v) else "")
        rows.append(row)
    order = ["recipe", "seeds", TRAIN, *TESTS, "mean_auc", "min_auc", "ece_in_domain", "ece_frame_t", "worst_group_auc",
             *[f"auc_{p}" for p in PERTURBATIONS], "auc_pgd2", "train_s"]
    table = pd.DataFrame(rows)
    return table[[c for c in order if c in table.columns]]


def markdown_table(table: pd.DataFrame) -> str:
    """The table as GitHub markdown, numbers to 3 decimals."""
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) and np.isfinite(v) else ("" if isinstance(v, float) else str(v))

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in table.itertuples(index=False)]
    return "\n".join(lines)


def _plot(raw: pd.DataFrame, path: str) -> None:
    """Bars of video AUC per dataset and recipe: mean over seeds, the seeds' std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [c for c in (TRAIN, *TESTS) if c in raw.columns]
    groups = list(raw.groupby("recipe", sort=False))
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / max(1, len(groups))
    for i, (name, g) in enumerate(groups):
        ax.bar(np.arange(len(sets)) + i * width, [g[s].mean() for s in sets], width,
               yerr=[g[s].std(ddof=0) for s in sets], capsize=2, label=name)
    ax.set_xticks(np.arange(len(sets)) + 0.4 - width / 2)
    ax.set_xticklabels(sets)
    ax.set_ylim(0.4, 1.0)
    ax.set_ylabel("video AUC")
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
