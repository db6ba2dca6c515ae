"""Predictive uncertainty from MC-dropout passes, and selective prediction (abstain when unsure).

Entropies are in nats. Mutual information (BALD) = entropy of the mean prediction minus the
mean entropy of the passes; it is zero exactly when all passes agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from deepgen.errors import DeepgenError
from deepgen.evaluation.metrics import check_binary


def binary_entropy(p) -> np.ndarray:
    """H(p) = -p log p - (1-p) log(1-p) in nats, with 0 log 0 = 0."""
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.where(p > 0, p * np.log(p), 0.0) + np.where(p < 1, (1 - p) * np.log1p(-p), 0.0))
    return h


def mc_uncertainty(samples) -> dict:
    """Uncertainty measures from a (T passes x N items) array of P(fake).

    Returns arrays of length N: ``mean`` (the MC prediction), ``predictive_entropy``,
    ``expected_entropy``, ``mutual_information`` (BALD, clipped at 0 against rounding) and
    ``variance`` (across passes).
    """
    s = np.asarray(samples, dtype=float)
    if s.ndim == 1:
        s = s[None, :]
    if s.ndim != 2 or s.size == 0:
        raise DeepgenError("MC samples must be a non-empty (passes x items) array of P(fake).")
    if not np.all(np.isfinite(s)) or np.any((s < 0) | (s > 1)):
        raise DeepgenError("MC samples must be probabilities in [0, 1]; apply a sigmoid to logits first.")
    agree = s.max(axis=0) == s.min(axis=0)  # exact zeros there, not float round-off
    mean = np.where(agree, s[0], s.mean(axis=0))
    pred_h = binary_entropy(mean)
    exp_h = np.where(agree, pred_h, binary_entropy(s).mean(axis=0))
    return {
        "mean": mean,
        "predictive_entropy": pred_h,
        "expected_entropy": exp_h,
        "mutual_information": np.where(agree, 0.0, np.maximum(pred_h - exp_h, 0.0)),
        "variance": np.where(agree, 0.0, s.var(axis=0)),
    }


def _check_uncertainty(labels, probs, uncertainty) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, p = check_binary(labels, probs, name="selective prediction probabilities")
    u = np.asarray(uncertainty, dtype=float).reshape(-1)
    if u.shape != y.shape:
        raise DeepgenError(f"{u.size} uncertainties for {y.size} items; pass one per item.")
    if not np.all(np.isfinite(u)):
        raise DeepgenError("uncertainty contains NaN or infinity; compute it for every item.")
    return y, p, u


def _auc_or_nan(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if y.size and y.min() != y.max() else float("nan")


def selective_prediction(
    labels,
    probs,
    uncertainty,
    coverages: Sequence[float] | None = None,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """Accuracy and AUC on the items kept when abstaining on the most uncertain ones.

    For each target coverage c, keep every item whose uncertainty is <= the uncertainty of the
    ceil(c N)-th most certain item (ties are kept together, so the achieved ``coverage`` can exceed
    the target). Columns: ``target_coverage``, ``coverage``, ``n_kept``, ``uncertainty_threshold``,
    ``accuracy``, ``auc`` (NaN when the kept set holds one class).
    """
    y, p, u = _check_uncertainty(labels, probs, uncertainty)
    grid = np.linspace(0.05, 1.0, 20) if coverages is None else np.asarray(coverages, dtype=float)
    if np.any((grid <= 0) | (grid > 1)):
        raise DeepgenError("coverages must lie in (0, 1]; pass fractions of items to keep.")
    correct = (p >= threshold).astype(int) == y
    sorted_u = np.sort(u)
    rows = []
    for c in grid:
        cut = sorted_u[max(int(np.ceil(c * u.size)) - 1, 0)]
        keep = u <= cut
        rows.append({
            "target_coverage": float(c),
            "coverage": float(keep.mean()),
            "n_kept": int(keep.sum()),
            "uncertainty_threshold": float(cut),
            "accuracy": float(correct[keep].mean()),
            "auc": _auc_or_nan(y[keep], p[keep]),
        })
    return pd.DataFrame(rows)


def abstain_threshold(
    labels, probs, uncertainty, target_accuracy: float, threshold: float = 0.5, min_kept: int = 1
) -> dict:
    """The largest uncertainty cutoff whose kept items (uncertainty <= cutoff) reach ``target_accuracy``.

    Abstain on items above ``uncertainty_threshold``. Returns the cutoff, the ``coverage`` and
    ``accuracy`` it gives, and ``achievable``; when no kept set of at least ``min_kept`` items
    reaches the target, the cutoff is NaN and coverage 0.
    """
    if not 0 < target_accuracy <= 1:
        raise DeepgenError(f"target_accuracy={target_accuracy} is invalid; pass a value in (0, 1].")
    y, p, u = _check_uncertainty(labels, probs, uncertainty)
    order = np.argsort(u, kind="stable")
    us = u[order]
    correct = ((p >= threshold).astype(int) == y)[order].astype(float)
    cum_acc = np.cumsum(correct) / np.arange(1, u.size + 1)
    # only cut after the last item of a run of equal uncertainties (ties stay together)
    last_of_run = np.r_[us[1:] != us[:-1], True]
    n_kept = np.arange(1, u.size + 1)
    ok = last_of_run & (cum_acc >= target_accuracy) & (n_kept >= min_kept)
    if not ok.any():
        return {"uncertainty_threshold": float("nan"), "coverage": 0.0, "accuracy": float("nan"),
                "n_kept": 0, "achievable": False, "target_accuracy": float(target_accuracy)}
    i = int(np.flatnonzero(ok)[-1])
    return {"uncertainty_threshold": float(us[i]), "coverage": float((i + 1) / u.size),
            "accuracy": float(cum_acc[i]), "n_kept": i + 1, "achievable": True,
            "target_accuracy": float(target_accuracy)}


def mc_dropout_predict(model, x, passes: int = 20, seed: int | None = None, return_logits: bool = False
                       ) -> np.ndarray:
    """P(fake) (or, with ``return_logits``, the logits) from ``passes`` stochastic forward passes with
    only the Dropout modules in train mode.

    ``model(x)`` returns a logits tensor of shape (N,) or (N, 1), or a dict with key ``"logit"``.
    Other layers (BatchNorm, ...) stay in eval mode; every module's mode is restored afterwards.
    Returns a (passes x N) numpy array.
    """
    import torch
    from torch.nn.modules.dropout import _DropoutNd

    if passes < 1:
        raise DeepgenError(f"passes={passes} is invalid; MC dropout needs at least one pass.")
    dropouts = [m for m in model.modules() if isinstance(m, _DropoutNd)]
    if not dropouts:
        raise DeepgenError("the model has no Dropout module; MC dropout needs a head with dropout.")
    modes = {m: m.training for m in model.modules()}
    gen_state = torch.random.get_rng_state() if seed is not None else None
    try:
        if seed is not None:
            torch.manual_seed(seed)
        model.eval()
        for m in dropouts:
            m.train()
        out = []
        with torch.no_grad():
            for _ in range(passes):
                y = model(x)
                if isinstance(y, dict):
                    if "logit" not in y:
                        raise DeepgenError("the model returned a dict without a 'logit' key; return logits.")
                    y = y["logit"]
                if y.ndim == 2 and y.shape[1] == 1:
                    y = y[:, 0]
                if y.ndim != 1:
                    raise DeepgenError(
                        f"the model returned logits of shape {tuple(y.shape)}; expected (N,) or (N, 1)."
                    )
                y = y.float()
                out.append((y if return_logits else torch.sigmoid(y)).cpu().numpy())
    finally:
        for m, mode in modes.items():
            m.train(mode)
        if gen_state is not None:
            torch.random.set_rng_state(gen_state)
    return np.stack(out)
