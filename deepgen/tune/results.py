"""A finished sweep's outputs: the per-trial table, the mean-vs-min AUC Pareto plot, best recipe and bundle."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import numpy as np
import yaml

from deepgen import storage
from deepgen.errors import DeepgenError
from deepgen.models.bundle import is_bundle
from deepgen.tune.settings import TuneSettings

RESULTS = "results.csv"
PARETO = "pareto.png"
BEST_CONFIG = "best_config.yaml"
BEST_BUNDLE = "best_bundle"


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _trial_number(trial) -> int:
    """The trial's 1-based creation number (Tune's experiment tag starts with it; restores reorder trials)."""
    head = str(getattr(trial, "experiment_tag", "")).split("_", 1)[0]
    return int(head) if head.isdigit() else 0


def trial_rows(trials: list, settings: TuneSettings, trials_dir: str) -> list[dict[str, Any]]:
    """One row per Tune trial: its sampled values, last reported AUCs and objective, epochs and status.

    ``status`` is ``completed`` (ran every epoch and wrote its bundle), ``stopped`` (ASHA stopped it
    early), ``error``, or Tune's own status for a trial that never finished.
    """
    rows = []
    for trial in sorted(trials, key=_trial_number):
        last = trial.last_result or {}
        epochs = int(last.get("training_iteration", 0) or 0)
        bundle = storage.join(trials_dir, trial.trial_id, "bundle")
        has_bundle = is_bundle(bundle)
        if trial.status == "ERROR":
            status = "error"
        elif trial.status == "TERMINATED":
            status = "completed" if epochs >= settings.epochs and has_bundle else "stopped"
        else:
            status = trial.status.lower()
        row: dict[str, Any] = {"trial": _trial_number(trial), "trial_id": trial.trial_id, "status": status,
                               "epochs": epochs}
        row.update({name: trial.config.get(name) for name in settings.space})
        row.update({k: _num(v) for k, v in sorted(last.items()) if k.startswith("val_auc_")})
        row.update({k: _num(last.get(k)) for k in ("mean_auc", "min_auc", "objective")})
        row["bundle"] = bundle if status == "completed" else ""
        rows.append(row)
    return rows


def pareto_front(mean: np.ndarray, worst: np.ndarray) -> np.ndarray:
    """Mask of the points no other point beats on both mean and min AUC (at least as good on both, better on one)."""
    ok = np.isfinite(mean) & np.isfinite(worst)
    front = np.zeros(len(mean), bool)
    for i in np.flatnonzero(ok):
        better = ok & (mean >= mean[i]) & (worst >= worst[i]) & ((mean > mean[i]) | (worst > worst[i]))
        front[i] = not better.any()
    return front


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The completed trial with the highest objective (ties: higher mean AUC, then the earlier trial)."""
    done = [r for r in rows if r["status"] == "completed" and np.isfinite(r["objective"])]
    if not done:
        return None
    return max(done, key=lambda r: (r["objective"], np.nan_to_num(r["mean_auc"], nan=-1.0), -rows.index(r)))


def results_csv(rows: list[dict[str, Any]]) -> bytes:
    """The trial table as CSV (columns: the union of every row's keys, in first-seen order)."""
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    columns = [c for c in columns if c != "bundle"] + ["bundle"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k, "") for k in columns})
    return buf.getvalue().encode()


def pareto_png(rows: list[dict[str, Any]], best: dict[str, Any] | None, objective: str) -> bytes:
    """Scatter of held-out mean vs min AUC per trial with the Pareto front drawn and the best trial marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean = np.array([r["mean_auc"] for r in rows], float)
    worst = np.array([r["min_auc"] for r in rows], float)
    done = np.array([r["status"] == "completed" for r in rows])
    front = np.zeros(len(rows), bool)  # over the trials that ran every epoch (the ones best is chosen from)
    front[done] = pareto_front(mean[done], worst[done])
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=100)
    for status, marker in (("completed", "o"), ("stopped", "x")):
        idx = [i for i, r in enumerate(rows) if r["status"] == status and not front[i]]
        ax.scatter(mean[idx], worst[idx], c="0.55", marker=marker, label=f"{status} trial")
    order = np.flatnonzero(front)[np.argsort(mean[front])]
    ax.plot(mean[order], worst[order], "-o", c="tab:red", label="Pareto front")
    if best is not None:
        ax.scatter([best["mean_auc"]], [best["min_auc"]], s=180, facecolors="none", edgecolors="k",
                   linewidths=1.5, label=f"best ({objective})")
    for i, r in enumerate(rows):
        if np.isfinite(mean[i]) and np.isfinite(worst[i]):
            ax.annotate(str(r["trial"]), (mean[i], worst[i]), fontsize=8, xytext=(4, 3), textcoords="offset points")
    values = np.concatenate([mean, worst])
    values = values[np.isfinite(values)]
    if values.size:
        lo, hi = max(0.0, values.min() - 0.03), min(1.0, values.max() + 0.03)
        ax.plot([lo, hi], [lo, hi], ":", c="0.8", lw=1, label="min = mean")  # min AUC never exceeds the mean
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    ax.set_xlabel("held-out mean AUC")
    ax.set_ylabel("held-out min AUC")
    ax.set_title(f"sweep: {len(rows)} trials")
    ax.legend(fontsize=8, loc="upper left")  # above the diagonal: always empty
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def best_config_yaml(settings: TuneSettings, best: dict[str, Any]) -> bytes:
    """The best trial's full training recipe, loadable by ``deepgen train --config``."""
    cfg = settings.recipe_with({name: best[name] for name in settings.space})
    header = (f"# Best trial {best['trial_id']} of the sweep from {settings.source}: {settings.objective} "
              f"{best['objective']:.4f} (held-out mean AUC {best['mean_auc']:.4f}, min AUC {best['min_auc']:.4f}).\n"
              "# A full training recipe: deepgen train --config best_config.yaml --faces ... --out RUN\n")
    return (header + yaml.safe_dump(_plain(cfg.to_dict()), sort_keys=False)).encode()


def copy_dir(src: str, dst: str) -> None:
    """Replace ``dst`` with a copy of the directory ``src`` (local paths or s3:// URIs)."""
    fs, src_path = storage.get_fs(src)
    from deepgen.models.bundle import OWNER_MARKERS

    storage.remove_owned(dst, inputs=[src], markers=OWNER_MARKERS)  # only a bundle deepgen wrote there before
    for path in fs.find(src_path):
        rel = path[len(src_path.rstrip("/")) + 1:]
        storage.write_bytes(storage.join(dst, *rel.split("/")), storage.read_bytes(storage.to_uri(fs, path)))


def write_outputs(rows: list[dict[str, Any]], settings: TuneSettings, out: str) -> dict[str, Any]:
    """Write results.csv, pareto.png, best_config.yaml and best_bundle under ``out``; return the summary."""
    best = best_row(rows)
    results, pareto = storage.join(out, RESULTS), storage.join(out, PARETO)
    storage.write_bytes(results, results_csv(rows))
    storage.write_bytes(pareto, pareto_png(rows, best, settings.objective))
    counts = {s: sum(r["status"] == s for r in rows) for s in sorted({r["status"] for r in rows})}
    if best is None:
        raise DeepgenError(f"no trial of the sweep completed every epoch (statuses {counts}); see {results} and "
                           "the trial errors above, then rerun with --resume.")
    config_uri, bundle_uri = storage.join(out, BEST_CONFIG), storage.join(out, BEST_BUNDLE)
    storage.write_bytes(config_uri, best_config_yaml(settings, best))
    copy_dir(best["bundle"], bundle_uri)
    return {
        "objective": settings.objective,
        "best": {k: v for k, v in best.items()},
        "trials": len(rows),
        "counts": counts,
        "rows": rows,
        "results": results,
        "pareto": pareto,
        "best_config": config_uri,
        "best_bundle": bundle_uri,
    }
