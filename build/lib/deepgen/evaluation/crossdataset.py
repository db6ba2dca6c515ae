"""Cross-dataset protocol: one checkpoint, N test sets, no retraining.

Per-dataset metrics, the generalization gap to the training dataset(s), and summary statistics
of AUC over the datasets the model never saw.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from deepgen.errors import DeepgenError
from deepgen.evaluation.metrics import compute_metrics

PREDICTION_COLUMNS = ("media_id", "dataset", "label", "score")


def check_predictions(predictions: pd.DataFrame, required: Sequence[str] = PREDICTION_COLUMNS) -> None:
    """Raise a clear error when a predictions table lacks a required column or is empty."""
    missing = [c for c in required if c not in predictions.columns]
    if missing:
        raise DeepgenError(
            f"predictions table lacks column(s) {missing}; it needs {', '.join(required)}."
        )
    if len(predictions) == 0:
        raise DeepgenError("predictions table is empty; score at least one labelled item first.")


def _as_list(names: str | Iterable[str] | None) -> list[str]:
    if names is None:
        return []
    if isinstance(names, str):
        return [names]
    return list(names)


def cross_dataset_metrics(
    predictions: pd.DataFrame,
    train_datasets: str | Iterable[str] | None,
    threshold: float = 0.5,
) -> dict:
    """Per-dataset metrics plus generalization summary for one checkpoint.

    Returns ``{"per_dataset": DataFrame, "summary": dict}``. ``per_dataset`` has one row per
    dataset with ``seen`` (a training dataset) and ``gap`` = train AUC minus that dataset's AUC.
    ``train_auc`` is the mean AUC over the training datasets present in ``predictions`` (NaN when
    none is). ``summary`` holds ``mean_auc``, ``std_auc`` (population std), ``min_auc``,
    ``max_auc`` and ``gap_max_min`` over unseen datasets with a defined AUC (one-class datasets
    have NaN AUC and are left out of the summary, counted in ``n_unseen_undefined``).
    """
    check_predictions(predictions)
    train = set(_as_list(train_datasets))
    rows = []
    for name, g in predictions.groupby("dataset", sort=True):
        m = compute_metrics(g["label"].to_numpy(), g["score"].to_numpy(), threshold)
        rows.append({"dataset": name, "seen": name in train, **m})
    per = pd.DataFrame(rows)
    seen_auc = per.loc[per["seen"], "auc"].to_numpy(dtype=float)
    train_auc = float(np.nanmean(seen_auc)) if np.isfinite(seen_auc).any() else float("nan")
    per["gap"] = train_auc - per["auc"]
    per.loc[per["seen"], "gap"] = np.nan

    unseen = per.loc[~per["seen"], "auc"].to_numpy(dtype=float)
    defined = unseen[np.isfinite(unseen)]
    nan = float("nan")
    summary = {
        "train_datasets": sorted(train),
        "train_auc": train_auc,
        "n_unseen": int(unseen.size),
        "n_unseen_undefined": int(unseen.size - defined.size),
        "mean_auc": float(defined.mean()) if defined.size else nan,
        "std_auc": float(defined.std()) if defined.size else nan,
        "min_auc": float(defined.min()) if defined.size else nan,
        "max_auc": float(defined.max()) if defined.size else nan,
        "gap_max_min": float(defined.max() - defined.min()) if defined.size else nan,
        "mean_gap": float(train_auc - defined.mean()) if defined.size else nan,
    }
    return {"per_dataset": per, "summary": summary}


def auc_matrix(rows: pd.DataFrame | Iterable[Mapping]) -> pd.DataFrame:
    """Train-set x test-set AUC matrix for a heatmap from records with ``train``, ``test``, ``auc``.

    Each (train, test) pair may appear once; missing pairs stay NaN.
    """
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    missing = {"train", "test", "auc"} - set(df.columns)
    if missing:
        raise DeepgenError(f"auc_matrix rows lack key(s) {sorted(missing)}; give train, test and auc.")
    if df.duplicated(["train", "test"]).any():
        dup = df.loc[df.duplicated(["train", "test"]), ["train", "test"]].iloc[0].tolist()
        raise DeepgenError(f"auc_matrix got (train, test) = {dup} twice; give each pair once.")
    return df.pivot(index="train", columns="test", values="auc").astype(float)


def auc_matrix_from_predictions(
    predictions_by_train: Mapping[str, pd.DataFrame], threshold: float = 0.5
) -> pd.DataFrame:
    """AUC matrix from one predictions table per checkpoint, keyed by its training-set name."""
    rows = []
    for train_name, preds in predictions_by_train.items():
        per = cross_dataset_metrics(preds, None, threshold)["per_dataset"]
        rows += [{"train": train_name, "test": r.dataset, "auc": r.auc} for r in per.itertuples()]
    return auc_matrix(rows)
