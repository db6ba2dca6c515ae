"""``deepgen demo``: the whole flow from nothing, on an embedded Ray.

synth three presets -> manifests -> extract faces -> train the ``full`` recipe (2 workers) on the
FF++-like preset -> evaluate across all three (HTML report) -> batch-score the held-out preset's
media -> a summary table and the paths of everything written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from deepgen.errors import DeepgenError

TRAIN_PRESET = "ffpp"
TEST_PRESETS = ("celebdf", "dfdc")


def demo(out: str = "demo-out", quick: bool = False, workers: int = 2, seed: int = 0,
         overwrite: bool = False, recipe: str = "full", log: Callable[[str], None] = print) -> dict:
    """Run the demo into ``out`` and return its summary (per-dataset AUC/EER/ECE, status counts, paths)."""
    from deepgen.datasets import write_manifest
    from deepgen.evaluation.run import evaluate
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
    size = ({"videos": 24, "test_videos": 16, "frames": 4, "epochs": 2} if quick else
            {"videos": 600, "test_videos": 100, "frames": 6, "epochs": 5})
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
    run = os.path.join(out, "run")
    trained = step(f"train '{recipe}' recipe on {TRAIN_PRESET} ({workers} workers)", lambda: train(
        recipe, [os.path.join(out, "faces", TRAIN_PRESET, "faces")], run, workers=workers,
        overrides={"epochs": size["epochs"]}, overwrite=overwrite))
    bundle = trained["bundle"]
    report_dir = os.path.join(out, "report")
    metrics = step("evaluate across datasets", lambda: evaluate(
        [bundle], [os.path.join(out, "faces", p) for p in presets], report_dir, mc_passes=10, overwrite=overwrite))
    held_out = TEST_PRESETS[-1]
    scores = os.path.join(out, "scores", held_out)
    scored = step(f"batch-score {held_out} media", lambda: score(
        paths[f"manifest_{held_out}"], bundle, scores, ScoreConfig(frames=size["frames"]), overwrite=overwrite))
    rows = []
    for d, m in sorted(metrics["per_dataset"].items()):
        cal = next((r for r in metrics.get("calibration", []) if r.get("dataset") == d), {})
        rows.append({"dataset": d, "seen": bool(m.get("seen")), "videos": m.get("n"), "auc": m.get("auc"),
                     "eer": m.get("eer"), "ece": cal.get("ece_after")})
    paths.update({"checkpoint": bundle, "report": metrics["report"], "metrics": os.path.join(report_dir, "metrics.json"),
                  "scores": scores})
    summary = {
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

    lines = ["", f"{'dataset':<12}{'seen':>6}{'videos':>8}{'AUC':>8}{'EER':>8}{'ECE':>8}"]
    for r in summary["per_dataset"]:
        lines.append(f"{r['dataset']:<12}{'yes' if r['seen'] else 'no':>6}{r['videos'] or 0:>8}"
                     f"{f(r['auc']):>8}{f(r['eer']):>8}{f(r['ece']):>8}")
    lines.append("")
    for p, counts in summary["extract_status"].items():
        lines.append(f"extract {p:<10} " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    lines.append("score   held-out   " + ", ".join(f"{k}={v}" for k, v in summary["score_status"].items()))
    lines.append("")
    lines += [f"{k:<18} {v}" for k, v in summary["paths"].items()]
    lines.append(f"total {summary['seconds']}s")
    return "\n".join(lines)
