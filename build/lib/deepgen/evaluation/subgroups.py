"""Subgroup (fairness) metrics: AUC / EER / ECE per value of a subgroup column and the worst-group gap."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from deepgen.errors import DeepgenError
from deepgen.evaluation.calibration import expected_calibration_error
from deepgen.evaluation.metrics import compute_metrics


def subgroup_metrics(
    df: pd.DataFrame,
    group_cols: str | Iterable[str],
    *,
    label_col: str = "label",
    score_col: str = "score",
    intersect: bool = False,
    threshold: float = 0.5,
    n_bins: int = 15,
    min_count: int = 1,
) -> dict:
    """Metrics per subgroup and the worst-group gap per attribute.

    Each column in ``group_cols`` is an attribute evaluated on its own; with ``intersect`` the
    columns are combined into one attribute (values joined by ``|``). Groups with fewer than
    ``min_count`` items are left out. Returns ``{"table": DataFrame, "summary": DataFrame}``:
    ``table`` has ``attribute``, ``group``, ``n``, ``n_pos``, ``accuracy``, ``auc``, ``ap``, ``eer``,
    ``ece``; ``summary`` per attribute has the worst (lowest-AUC) group, ``worst_auc``, ``best_auc``,
    ``auc_gap`` (best - worst), ``eer_gap`` and ``ece_gap`` (max - min), over groups whose metric is
    defined (one-class groups have NaN AUC/EER).
    """
    cols = [group_cols] if isinstance(group_cols, str) else list(group_cols)
    if not cols:
        raise DeepgenError("subgroup_metrics needs at least one subgroup column; name one.")
    missing = [c for c in [*cols, label_col, score_col] if c not in df.columns]
    if missing:
        raise DeepgenError(f"predictions table lacks column(s) {missing}; add them or name other columns.")
    if len(df) == 0:
        raise DeepgenError("predictions table is empty; score at least one labelled item first.")

    if intersect and len(cols) > 1:
        key = df[cols].astype(str).agg("|".join, axis=1)
        attributes = [("|".join(cols), key)]
    else:
        attributes = [(c, df[c]) for c in cols]

    rows = []
    for attr, values in attributes:
        for group, g in df.groupby(values.to_numpy(), sort=True, dropna=False):
            if len(g) < min_count:
                continue
            y, s = g[label_col].to_numpy(), g[score_col].to_numpy(dtype=float)
            m = compute_metrics(y, s, threshold)
            rows.append({"attribute": attr, "group": group, **m,
                         "ece": expected_calibration_error(y, s, n_bins)})
    table = pd.DataFrame(rows)

    summary = []
    for attr, t in table.groupby("attribute", sort=False):
        auc = t["auc"].to_numpy(dtype=float)
        defined = np.isfinite(auc)
        worst = t.iloc[int(np.nanargmin(auc))]["group"] if defined.any() else None

        def spread(col: str, tt=t) -> float:
            v = tt[col].to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            return float(v.max() - v.min()) if v.size else float("nan")

        summary.append({
            "attribute": attr, "n_groups": int(len(t)), "worst_group": worst,
            "worst_auc": float(np.nanmin(auc)) if defined.any() else float("nan"),
            "best_auc": float(np.nanmax(auc)) if defined.any() else float("nan"),
            "auc_gap": spread("auc"), "eer_gap": spread("eer"), "ece_gap": spread("ece"),
        })
    return {"table": table, "summary": pd.DataFrame(summary)}
