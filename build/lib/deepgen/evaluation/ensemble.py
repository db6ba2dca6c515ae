"""Ensembles of detectors: weights for the models' calibrated logits, fit on validation by
non-negative logistic-regression stacking (or equal), and the weighted combination itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize

from deepgen.errors import DeepgenError


def _stack(logits_list: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Logits as a finite (M, N) float64 array, one row per model."""
    try:
        z = np.asarray([np.asarray(x, dtype=np.float64).ravel() for x in logits_list])
    except ValueError as e:
        raise DeepgenError(
            "the models' logits have different lengths; score every model on the same items."
        ) from e
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] == 0:
        raise DeepgenError(
            f"logits_list has shape {z.shape}; pass one non-empty logit array per model (M x N)."
        )
    if not np.all(np.isfinite(z)):
        raise DeepgenError("logits_list contains NaN or infinite values; drop or fix those items.")
    return z


def _calibrate(z: np.ndarray, temperatures: Sequence[float] | None) -> np.ndarray:
    if temperatures is None:
        return z
    t = np.asarray(temperatures, dtype=np.float64).ravel()
    if t.shape != (z.shape[0],) or np.any(t <= 0):
        raise DeepgenError(
            f"got temperatures {t.tolist()} for {z.shape[0]} models; pass one positive "
            "temperature per model (the checkpoint's calibration temperature)."
        )
    return z / t[:, None]


def combine_logits(
    logits_list: Sequence[Sequence[float]] | np.ndarray,
    weights: Sequence[float] | None = None,
    temperatures: Sequence[float] | None = None,
) -> np.ndarray:
    """Ensemble logit ``sum_m w_m * z_m / T_m``, shape (N,); equal weights when ``weights`` is None.

    With weights summing to 1 this is a weighted mean of calibrated logits, so an ensemble of a
    model with itself returns that model's calibrated logit.
    """
    z = _calibrate(_stack(logits_list), temperatures)
    m = z.shape[0]
    w = np.full(m, 1.0 / m) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != (m,) or not np.all(np.isfinite(w)):
        raise DeepgenError(
            f"got {w.size} ensemble weights for {m} models; pass one weight per model."
        )
    return w @ z


def fit_ensemble_weights(
    logits_list: Sequence[Sequence[float]] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    method: str = "stack",
    temperatures: Sequence[float] | None = None,
    l2: float = 1e-4,
) -> np.ndarray:
    """Non-negative ensemble weights summing to 1, fit on validation logits and labels (1 = fake).

    ``method="stack"``: logistic regression of the labels on the models' calibrated logits with
    non-negative coefficients (L-BFGS-B, small L2), then normalized; if every coefficient is 0
    (no model helps) the weights fall back to equal. ``method="equal"``: 1/M each.
    """
    z = _calibrate(_stack(logits_list), temperatures)
    m, n = z.shape
    if method == "equal":
        return np.full(m, 1.0 / m)
    if method != "stack":
        raise DeepgenError(f"unknown ensemble method {method!r}; use 'stack' or 'equal'.")
    y = np.asarray(labels, dtype=np.float64).ravel()
    if y.shape != (n,):
        raise DeepgenError(f"got {y.size} labels for {n} scored items; pass one label per item.")
    if not np.all((y == 0) | (y == 1)) or y.min() == y.max():
        raise DeepgenError(
            "ensemble stacking needs validation labels with both classes (0 real, 1 fake); "
            "use method='equal' otherwise."
        )

    def nll(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:m], params[m]
        s = w @ z + b
        # mean of log(1 + e^s) - y*s, computed stably
        loss = np.mean(np.logaddexp(0.0, s) - y * s) + l2 * w @ w
        r = (1.0 / (1.0 + np.exp(-s)) - y) / n
        grad = np.concatenate([z @ r + 2 * l2 * w, [r.sum()]])
        return float(loss), grad

    x0 = np.concatenate([np.full(m, 1.0 / m), [0.0]])
    bounds = [(0.0, None)] * m + [(None, None)]
    res = minimize(nll, x0, jac=True, method="L-BFGS-B", bounds=bounds)
    w = np.clip(res.x[:m], 0.0, None)
    if w.sum() <= 1e-12:
        return np.full(m, 1.0 / m)
    return w / w.sum()
