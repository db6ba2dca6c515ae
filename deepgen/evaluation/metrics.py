"""Detection metrics (accuracy, AUC, AP, interpolated EER) at frame and video level.

Conventions: ``label`` 1 = fake, 0 = real; ``score`` is P(fake); a score ``>= threshold`` is
predicted fake. With only one class present AUC, AP and EER are undefined and returned as NaN
(accuracy is still computed), never a substitute number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from deepgen.errors import DeepgenError

AGGREGATIONS = ("mean", "median", "topk", "max_smoothed")


def check_binary(labels, scores, name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """Validate and return (labels as int 0/1, scores as float) 1-D arrays of equal, non-zero length."""
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=float).reshape(-1)
    if y.size == 0:
        raise DeepgenError(f"{name}: got no samples; evaluate at least one labelled item.")
    if y.shape != s.shape:
        raise DeepgenError(
            f"{name}: {y.size} labels but {s.size} scores; pass one score per labelled item."
        )
    try:
        yf = y.astype(float)
    except (TypeError, ValueError) as e:
        raise DeepgenError(f"{name}: labels must be 0 (real) or 1 (fake); fix the label column.") from e
    if not np.all((yf == 0) | (yf == 1)):
        raise DeepgenError(f"{name}: labels must be 0 (real) or 1 (fake); fix the label column.")
    if not np.all(np.isfinite(s)):
        raise DeepgenError(f"{name}: scores contain NaN or infinity; drop failed items before evaluating.")
    return yf.astype(int), s


def eer_from_roc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Equal error rate: FPR where FPR == FNR on the piecewise-linear ROC, linearly interpolated.

    Along the ROC, ``d = FPR - FNR`` is non-decreasing from -1 to 1; the EER lies on the first
    segment where ``d`` changes sign, at the point where the linear interpolation of both rates meets.
    """
    fpr = np.asarray(fpr, dtype=float)
    fnr = 1.0 - np.asarray(tpr, dtype=float)
    d = fpr - fnr
    i = int(np.argmax(d >= 0))  # d[-1] == 1 so a crossing always exists
    if d[i] == 0 or i == 0:
        return float(fpr[i])
    t = -d[i - 1] / (d[i] - d[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def equal_error_rate(labels, scores) -> float:
    """Interpolated EER (see :func:`eer_from_roc`); NaN when only one class is present."""
    y, s = check_binary(labels, scores)
    if y.min() == y.max():
        return float("nan")
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return eer_from_roc(fpr, tpr)


def compute_metrics(labels, scores, threshold: float = 0.5) -> dict:
    """Accuracy at ``threshold``, ROC AUC and AP (as scikit-learn), and interpolated EER.

    Returns ``n``, ``n_pos`` (fakes), ``accuracy``, ``auc``, ``ap``, ``eer``; the last three are
    NaN when only one class is present. Empty input raises :class:`DeepgenError`.
    """
    y, s = check_binary(labels, scores)
    out = {
        "n": int(y.size),
        "n_pos": int(y.sum()),
        "accuracy": float(np.mean((s >= threshold).astype(int) == y)),
        "auc": float("nan"),
        "ap": float("nan"),
        "eer": float("nan"),
    }
    if y.min() != y.max():
        out["auc"] = float(roc_auc_score(y, s))
        out["ap"] = float(average_precision_score(y, s))
        fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
        out["eer"] = eer_from_roc(fpr, tpr)
    return out


def _aggregate_one(scores: np.ndarray, how: str, k: int, window: int) -> float:
    if how == "mean":
        return float(scores.mean())
    if how == "median":
        return float(np.median(scores))
    if how == "topk":
        kk = min(k, scores.size)
        return float(np.sort(scores)[-kk:].mean())
    # max_smoothed: moving average over `window` consecutive frames, then the max
    w = min(window, scores.size)
    smoothed = np.convolve(scores, np.ones(w) / w, mode="valid")
    return float(smoothed.max())


def aggregate_video_scores(
    frames: pd.DataFrame | Sequence,
    scores: Sequence[float] | np.ndarray | None = None,
    *,
    how: str = "mean",
    k: int = 5,
    window: int = 5,
    order_col: str = "frame_index",
) -> pd.DataFrame:
    """Aggregate frame scores to one score per media item.

    ``frames`` is a table with ``media_id`` and ``score`` (frames ordered by ``order_col`` when
    present, which matters for ``max_smoothed``), or a sequence of media ids with ``scores`` beside it.
    ``how``: ``mean``, ``median``, ``topk`` (mean of the ``k`` highest) or ``max_smoothed`` (max of
    the ``window``-frame moving average). Returns ``media_id``, ``score``, ``n_frames`` and, when the
    table has them, ``label``/``dataset`` (which must be constant within a media item).
    """
    if how not in AGGREGATIONS:
        raise DeepgenError(f"aggregation {how!r} is unknown; use one of {', '.join(AGGREGATIONS)}.")
    if k < 1 or window < 1:
        raise DeepgenError("aggregation k and window must be at least 1; pass positive integers.")
    if isinstance(frames, pd.DataFrame):
        missing = {"media_id", "score"} - set(frames.columns)
        if missing:
            raise DeepgenError(
                f"frame table lacks column(s) {sorted(missing)}; it needs media_id and score."
            )
        df = frames
    else:
        if scores is None:
            raise DeepgenError("aggregate_video_scores needs scores beside the media ids; pass scores=.")
        ids = np.asarray(frames).reshape(-1)
        sc = np.asarray(scores, dtype=float).reshape(-1)
        if ids.shape != sc.shape:
            raise DeepgenError(f"{ids.size} media ids but {sc.size} scores; pass one score per frame.")
        df = pd.DataFrame({"media_id": ids, "score": sc})
    if len(df) == 0:
        raise DeepgenError("frame table is empty; there are no frame scores to aggregate.")
    if not np.all(np.isfinite(df["score"].to_numpy(dtype=float))):
        raise DeepgenError("frame scores contain NaN or infinity; drop failed frames before aggregating.")
    if order_col in df.columns:
        df = df.sort_values(["media_id", order_col], kind="stable")

    carry = [c for c in ("label", "dataset") if c in df.columns]
    rows = []
    for media_id, g in df.groupby("media_id", sort=True):
        row = {
            "media_id": media_id,
            "score": _aggregate_one(g["score"].to_numpy(dtype=float), how, k, window),
            "n_frames": int(len(g)),
        }
        for c in carry:
            values = g[c].unique()
            if len(values) != 1:
                raise DeepgenError(
                    f"media item {media_id!r} has several {c} values {list(values)}; fix its frame rows."
                )
            row[c] = values[0]
        rows.append(row)
    return pd.DataFrame(rows)


def frame_and_video_metrics(
    frames: pd.DataFrame,
    *,
    how: str = "mean",
    k: int = 5,
    window: int = 5,
    threshold: float = 0.5,
) -> dict:
    """Metrics on every frame and on video scores aggregated with ``how``: ``{"frame": ..., "video": ...}``."""
    if "label" not in frames.columns:
        raise DeepgenError("frame table lacks a label column; evaluation needs ground-truth labels.")
    videos = aggregate_video_scores(frames, how=how, k=k, window=window)
    return {
        "frame": compute_metrics(frames["label"].to_numpy(), frames["score"].to_numpy(), threshold),
        "video": compute_metrics(videos["label"].to_numpy(), videos["score"].to_numpy(), threshold),
        "aggregation": how,
    }


def bootstrap_auc_interval(labels, scores, n_boot: int = 2000, level: float = 0.95, seed: int = 0
                           ) -> tuple[float, float]:
    """Percentile bootstrap interval of the ROC AUC (items resampled with replacement, each resample
    keeping both classes): what a small test set's AUC is worth. (nan, nan) with a single class."""
    y, s = np.asarray(labels, int), np.asarray(scores, np.float64)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if not len(pos) or not len(neg):
        return float("nan"), float("nan")
    # the AUC of a resample is the mean of its (fake, real) pairs' wins (ties half): ROC AUC, without
    # sklearn's per-call checks (thousands of resamples)
    wins = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
    rng = np.random.default_rng(seed)
    aucs = np.empty(n_boot)
    for b in range(n_boot):  # resample within each class, so every resample has both
        p, n = rng.choice(len(pos), len(pos)), rng.choice(len(neg), len(neg))
        aucs[b] = wins[np.ix_(p, n)].mean()
    lo, hi = np.quantile(aucs, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
