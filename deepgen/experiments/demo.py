"""``deepgen demo``: the whole flow from nothing, on an embedded Ray.

synth three presets -> manifests -> extract faces -> train the ``full`` recipe (2 workers) on the
FF++-like preset -> evaluate across all three (HTML report) -> batch-score the held-out preset's
media -> a summary table and the paths of everything written.

With real face photos (``--photos DIR``, or ``../shared/data/real_faces`` beside the checkout when it
exists) the demo also renders a photo corpus (:func:`deepgen.synth.photos.render_photos`, split by
identity), trains on it together with the FF++-like preset, and reports its test people (never seen
in training) as the ``photos`` row, and ships the bundle with its decision point fitted on the photo
corpus's validation people's real videos (at most ``false_alarm`` of them flagged; README, "The demo").
Either way it says plainly what its detector has seen and which decision point is in force.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from deepgen.errors import DeepgenError

TRAIN_PRESET = "ffpp"
TEST_PRESETS = ("celebdf", "dfdc")
FALSE_ALARM = 0.1  # the demo's shipped point: at most 10% of unseen real people's videos flagged (README)


def demo(out: str = "demo-out", quick: bool = False, workers: int = 2, seed: int = 0,
         overwrite: bool = False, recipe: str = "full", photos: str | list[str] | None = None, use_photos: bool = True,
         false_alarm: float | None = FALSE_ALARM, log: Callable[[str], None] = print) -> dict:
    """Run the demo into ``out`` and return its summary (per-dataset AUC/EER/ECE, status counts, paths).

    ``photos``: a folder of real face photos (default ``../shared/data/real_faces`` when present);
    ``use_photos=False`` keeps the demo procedural only. ``false_alarm``: with photos, the shipped
    bundle's operating point flags at most this share of the validation people's real videos
    (``adapt threshold``; None keeps the point balanced on all validation videos).
    """
    from deepgen.datasets import write_manifest
    from deepgen.evaluation.run import evaluate
    from deepgen.experiments.real import default_photos, photo_folders, same_person
    from deepgen.experiments.realdf import default_real_deepfakes
    from deepgen.faces.extract import extract_faces
    from deepgen.runtime import init_ray
    from deepgen.scoring import ScoreConfig, score
    from deepgen.storage import protected_reason
    from deepgen.synth import render_preset
    from deepgen.train import train

    reason = protected_reason(out)
    if reason:
        raise DeepgenError(f"{out} cannot be the demo's --out because {reason}; choose a new folder.")
    if os.path.exists(out) and os.listdir(out) and not overwrite:
        raise DeepgenError(f"{out} is not empty; pass --overwrite or choose another --out.")
    # the FF++-like preset trains (half its videos are real sources); the two others are never seen
    size = ({"videos": 24, "test_videos": 16, "photo_videos": 20, "frames": 4, "epochs": 2} if quick else
            {"videos": 600, "test_videos": 100, "photo_videos": 160, "frames": 6, "epochs": 5})
    photos = (photo_folders(photos) or default_photos()) if use_photos else None
    t_all = time.perf_counter()
    paths: dict[str, str] = {}

    def step(name: str, fn: Callable[[], object]):
        log(f"[{time.perf_counter() - t_all:6.1f}s] {name} ...")
        t = time.perf_counter()
        result = fn()
        log(f"[{time.perf_counter() - t_all:6.1f}s] {name}: done in {time.perf_counter() - t:.1f}s")
        return result

    init_ray(None)
    presets = (TRAIN_PRESET, *TEST_PRESETS)
    extracted = {}
    for i, p in enumerate(presets):
        root = os.path.join(out, "data", p)
        n = size["videos"] if p == TRAIN_PRESET else size["test_videos"]
        step(f"synth {p} ({n} videos)",
             lambda p=p, root=root, i=i, n=n: render_preset(p, root, videos=n, seed=seed + i,
                                                            frames=size["frames"], overwrite=overwrite))
        manifest = os.path.join(out, "manifests", f"{p}.parquet")
        step(f"manifest {p}", lambda p=p, root=root, manifest=manifest: write_manifest(p, root, manifest))
        faces = os.path.join(out, "faces", p)
        extracted[p] = step(f"extract faces {p}", lambda manifest=manifest, faces=faces: extract_faces(
            manifest, faces, frames=size["frames"], size=96, overwrite=overwrite))
        paths[f"manifest_{p}"], paths[f"faces_{p}"] = manifest, faces
    trained_on = [os.path.join(out, "faces", TRAIN_PRESET, "faces")]
    evaluated = [os.path.join(out, "faces", p) for p in presets]
    if photos:
        from deepgen.synth.photos import render_photos

        root, n = os.path.join(out, "data", PHOTOS), size["photo_videos"]
        step(f"synth {PHOTOS} ({n} videos of real people from {', '.join(photos)})", lambda: render_photos(
            photos, "ffpp", root, videos=n, seed=seed, frames=size["frames"], overwrite=overwrite,
            same_person=same_person(photos)))
        manifest = os.path.join(out, "manifests", f"{PHOTOS}.parquet")
        step(f"manifest {PHOTOS}", lambda: photo_manifest(root, manifest))
        faces = os.path.join(out, "faces", PHOTOS)
        extracted[PHOTOS] = step(f"extract faces {PHOTOS}", lambda: extract_faces(
            manifest, faces, frames=size["frames"], size=96, overwrite=overwrite))
        paths[f"manifest_{PHOTOS}"], paths[f"faces_{PHOTOS}"] = manifest, faces
        trained_on.append(os.path.join(faces, "faces"))
        evaluated.append(faces)
    real_deepfakes = default_real_deepfakes()
    if real_deepfakes:  # real forgeries of FF++, DFDC and Celeb-DF: never trained on, always reported
        from deepgen.experiments.realdf import DATASET, real_deepfake_manifest
        from deepgen.storage import write_table

        manifest = os.path.join(out, "manifests", f"{DATASET}.parquet")
        step(f"manifest {DATASET} ({real_deepfakes})", lambda: write_table(real_deepfake_manifest(real_deepfakes),
                                                                           manifest))
        faces = os.path.join(out, "faces", DATASET)
        quick_frames = {"frames": 8, "sampling": "uniform"} if quick else {}  # --quick: a smoke test
        extracted[DATASET] = step(f"extract faces {DATASET}", lambda: extract_faces(  # as a user scores them
            manifest, faces, size=96, overwrite=overwrite, **quick_frames))
        paths[f"faces_{DATASET}"] = faces
        evaluated.append(faces)
    seen = seen_statement(out, photos, real_deepfakes)
    log(seen)
    run = os.path.join(out, "run")
    names = TRAIN_PRESET + (f" + {PHOTOS}" if photos else "")
    trained = step(f"train '{recipe}' recipe on {names} ({workers} workers)", lambda: train(
        recipe, trained_on, run, workers=workers, overrides={"epochs": size["epochs"]}, overwrite=overwrite))
    bundle = trained["bundle"]
    operating = None
    if photos and false_alarm:
        operating = step(f"operating point: at most {false_alarm:g} of the photos' validation people's real videos "
                         "flagged", lambda: fit_operating_point(bundle, paths[f"faces_{PHOTOS}"], out, false_alarm,
                                                                overwrite))
        if operating:
            bundle = operating["out"]
    operating_line = operating_statement(operating, false_alarm, people=bool(photos))
    log(operating_line)
    report_dir = os.path.join(out, "report")
    metrics = step("evaluate across datasets", lambda: evaluate(
        [bundle], evaluated, report_dir, mc_passes=10, overwrite=overwrite))
    flagged = real_flagged(os.path.join(report_dir, "predictions.parquet"))
    held_out = TEST_PRESETS[-1]
    scores = os.path.join(out, "scores", held_out)
    scored = step(f"batch-score {held_out} media", lambda: score(
        paths[f"manifest_{held_out}"], bundle, scores, ScoreConfig(frames=size["frames"]), overwrite=overwrite))
    rows = []
    for d, m in sorted(metrics["per_dataset"].items()):
        cal = next((r for r in metrics.get("calibration", []) if r.get("dataset") == d), {})
        rows.append({"dataset": d, "seen": bool(m.get("seen")), "videos": m.get("n"), "auc": m.get("auc"),
                     "eer": m.get("eer"), "ece": cal.get("ece_after"), "real_flagged": flagged.get(d)})
    paths.update({"checkpoint": bundle, "report": metrics["report"], "metrics": os.path.join(report_dir, "metrics.json"),
                  "scores": scores})
    summary = {
        "seen": seen,
        "operating_point": operating_line,
        "per_dataset": rows,
        "extract_status": {p: e["by_status"] for p, e in extracted.items()},
        "score_status": scored["by_status"],
        "paths": paths,
        "seconds": round(time.perf_counter() - t_all, 1),
    }
    log(format_summary(summary))
    return summary


def format_summary(summary: dict) -> str:
    """The demo's closing table as text."""
    def f(v):
        return "  n/a" if v is None else f"{v:.3f}"

    lines = ["", summary.get("seen", ""), "",
             f"{'dataset':<16}{'seen':>6}{'videos':>8}{'AUC':>8}{'EER':>8}{'ECE':>8}{'real flagged':>14}"]
    for r in summary["per_dataset"]:
        lines.append(f"{r['dataset']:<16}{'yes' if r['seen'] else 'no':>6}{r['videos'] or 0:>8}"
                     f"{f(r['auc']):>8}{f(r['eer']):>8}{f(r['ece']):>8}{f(r.get('real_flagged')):>14}")
    lines.append("(seen: trained on its train split, scored on its test split; photos' test people are never "
                 "seen; real flagged: share of real videos scoring >= 0.5)")
    if summary.get("operating_point"):
        lines.append(summary["operating_point"])
    lines.append("")
    for p, counts in summary["extract_status"].items():
        lines.append(f"extract {p:<10} " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    lines.append("score   held-out   " + ", ".join(f"{k}={v}" for k, v in summary["score_status"].items()))
    lines.append("")
    lines += [f"{k:<18} {v}" for k, v in summary["paths"].items()]
    lines.append(f"total {summary['seconds']}s")
    return "\n".join(lines)


PHOTOS = "photos"  # the dataset name of the demo's photo corpus (its media_ids start with it too)


def photo_manifest(root: str, out: str) -> None:
    """The photo corpus's FF++-layout manifest, renamed ``photos`` so it never merges with the procedural ffpp."""
    import pyarrow as pa

    from deepgen.datasets import build_manifest
    from deepgen.storage import write_table

    t = build_manifest("ffpp", root)
    ids = [PHOTOS + m[len("ffpp"):] for m in t.column("media_id").to_pylist()]
    t = t.set_column(t.column_names.index("media_id"), "media_id", pa.array(ids, pa.string()))
    t = t.set_column(t.column_names.index("dataset"), "dataset", pa.array([PHOTOS] * t.num_rows, pa.string()))
    write_table(t, out)


def seen_statement(out: str, photos: list[str] | None, real_deepfakes: str | None = None) -> str:
    """One plain paragraph: which faces the demo's detector learns from and which it never sees."""
    from deepgen.storage import read_table

    def count(name: str, label: int | None = None) -> int:
        t = read_table(os.path.join(out, "manifests", f"{name}.parquet")).to_pandas()
        t = t[t["split"].isin(["train", "val"])]
        return int(len(t) if label is None else (t["label"] == label).sum())

    text = (f"What the detector has seen: {count(TRAIN_PRESET)} procedural FF++-like videos (drawn faces, "
            f"{count(TRAIN_PRESET, 0)} real, the rest forged)")
    never = f" The real deepfakes in {real_deepfakes} it never saw either." if real_deepfakes else ""
    if not photos:
        return (text + ", and no real face at all: on real people it is unreliable and flags most of them as "
                "fake (README, 'Real faces'). Give it real faces with --photos DIR." + never)
    from deepgen.synth import load_groundtruth

    splits = load_groundtruth(os.path.join(out, "data", PHOTOS))["splits"]
    train_people = sum(s in ("train", "val") for s in splits.values())
    return (text + f", and {count(PHOTOS)} videos made from photos of {train_people} real people in "
                   f"{' and '.join(photos)} "
            f"(swaps, reenactment, autoencoder and neural-texture fakes); the {len(splits) - train_people} "
            f"people of the photos' test split, and every Celeb-DF- and DFDC-like video, it never saw." + never)


def fit_operating_point(bundle: str, photo_faces: str, out: str, false_alarm: float, overwrite: bool = False
                        ) -> dict | None:
    """``adapt threshold`` on the real videos of the photo corpus's validation people (never trained on), written
    to ``out/run/operating-point``; None when they are too few to resolve ``false_alarm``."""
    import pyarrow.compute as pc

    from deepgen.adapt.threshold import min_real_videos, threshold_bundle
    from deepgen.faces.extract import read_faces
    from deepgen.storage import write_table

    t = read_faces(photo_faces)
    reals = t.filter(pc.and_(pc.equal(t.column("split"), "val"), pc.equal(t.column("label"), 0)))
    if len(pc.unique(reals.column("media_id"))) < min_real_videos(false_alarm):
        return None
    table = os.path.join(out, "faces", f"{PHOTOS}-validation-reals.parquet")
    write_table(reals, table)
    return threshold_bundle([bundle], [table], os.path.join(out, "run", "operating-point"), false_alarm,
                            overwrite=overwrite, quiet=True)


def operating_statement(operating: dict | None, false_alarm: float | None, people: bool = True) -> str:
    """One line: which decision point the shipped bundle uses and what it was fitted on (``people``: the demo
    had real people's videos to fit it on)."""
    if operating:
        return (f"Operating point: fitted so that {operating['flagged_after']:.0%} of {operating['n_videos']} real "
                f"videos of the photos' validation people (never trained on) score >= 0.5 (asked: at most "
                f"{operating['false_alarm']:g}; {operating['flagged_before']:.0%} did at the point balanced on all "
                f"validation videos); video-logit shift {operating['shift']:+.2f}.")
    if people and false_alarm:
        return ("Operating point: balanced on the validation videos (too few real videos of validation people to "
                f"fit a {false_alarm:g} false-alarm point; run `deepgen adapt threshold` on your own real footage).")
    if people:
        return ("Operating point: balanced on the validation videos, as asked (--false-alarm 0); run `deepgen adapt "
                "threshold` on your own real footage to bound its false alarms.")
    return ("Operating point: balanced on the validation videos (no real people to fit it on; run `deepgen adapt "
            "threshold` on your own real footage).")


def real_flagged(predictions: str) -> dict[str, float]:
    """Per dataset: the share of real videos whose calibrated score is at least 0.5 (the shipped threshold)."""
    from deepgen.storage import read_table

    v = read_table(predictions).to_pandas()
    real = v[v["label"] == 0]
    return {d: float((g["score"] >= 0.5).mean()) for d, g in real.groupby("dataset")}
