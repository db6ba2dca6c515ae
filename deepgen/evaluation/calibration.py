"""Calibration: temperature scaling (global and per domain) and calibration error measures.

ECE here is top-label: confidence = max(p, 1 - p), correct = (p >= 0.5) == label, binned on
``n_bins`` equal-width bins over [0, 1] (as Guo et al. 2017), so for a binary detector only the
bins above 0.5 fill. Equal-mass ECE uses bins holding equal numbers of samples.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.optimize import minimize, minimize_scalar

from deepgen.errors import DeepgenError
from deepgen.evaluation.metrics import check_binary

PROB_EPS = 1e-12  # clip for log(0) in NLL and for logits recovered from probabilities


def sigmoid(z) -> np.ndarray:
    """Numerically stable logistic function."""
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def logit_from_prob(probs) -> np.ndarray:
    """Inverse sigmoid, clipping probabilities to [eps, 1 - eps] so 0 and 1 stay finite."""
    p = np.clip(np.asarray(probs, dtype=float), PROB_EPS, 1.0 - PROB_EPS)
    return np.log(p) - np.log1p(-p)


def apply_temperature(logits, temperature) -> np.ndarray:
    """Calibrated P(fake) = sigmoid(logit / T); T is one float or one per sample."""
    t = np.asarray(temperature, dtype=float)
    if np.any(~np.isfinite(t) | (t <= 0)):
        raise DeepgenError(f"temperature {temperature} is invalid; it must be a positive number.")
    return sigmoid(np.asarray(logits, dtype=float) / t)


def _nll_logits(z: np.ndarray, y: np.ndarray) -> float:
    # mean of -[y log s(z) + (1-y) log(1 - s(z))] = mean(softplus(z) - y z)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(logits, labels, bounds: tuple[float, float] = (0.01, 100.0)) -> float:
    """Temperature T minimizing the binary NLL of sigmoid(logit / T), searched on log T in ``bounds``.

    The NLL is unimodal in log T, so a bounded scalar search finds the optimum; on separable data
    the optimum is at the lower bound and that bound is returned. Needs both classes.
    """
    y, z = check_binary(labels, logits, name="fit_temperature logits")
    if y.min() == y.max():
        raise DeepgenError(
            "fit_temperature needs both real and fake samples; fit on a validation set with both classes."
        )
    lo, hi = bounds
    if not 0 < lo < hi:
        raise DeepgenError(f"temperature bounds {bounds} are invalid; pass 0 < low < high.")
    if np.all(z == 0):
        return 1.0  # every temperature gives the same NLL; leave the logits unchanged
    res = minimize_scalar(
        lambda u: _nll_logits(z / np.exp(u), y),
        bounds=(np.log(lo), np.log(hi)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    u = float(res.x)
    # the bounded search stops just inside an edge; snap to the edge when that is no worse
    for edge in (np.log(lo), np.log(hi)):
        if _nll_logits(z / np.exp(edge), y) <= _nll_logits(z / np.exp(u), y):
            u = float(edge)
    return float(np.exp(u))


def fit_offset(logits, labels) -> float:
    """The logit where a class-balanced Platt fit puts P(fake) = 0.5: the decision point that treats
    reals and fakes as equally likely, whatever share of fakes the validation set holds.

    Fits ``sigmoid(a z + b)`` by NLL with each class weighted by half over its count and returns
    ``-b / a`` (a tiny ridge on ``a`` keeps it finite, inside the gap, on separable data); 0 when the
    fit does not rank fakes above reals (``a <= 0``). Needs both classes.
    """
    y, z = check_binary(labels, logits, name="fit_offset logits")
    if y.min() == y.max():
        raise DeepgenError("fit_offset needs both real and fake samples; fit on a validation set with both classes.")
    w = np.where(y == 1, 0.5 / y.sum(), 0.5 / (len(y) - y.sum()))
    scale = float(np.std(z)) or 1.0

    def nll(p: np.ndarray) -> float:
        u = p[0] * z / scale + p[1]
        return float(np.sum(w * (np.logaddexp(0.0, u) - y * u)) + 1e-4 * p[0] ** 2)  # finite on separable data

    a, b = minimize(nll, np.array([1.0, 0.0]), method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-12}).x
    return float(-b * scale / a) if a > 1e-6 else 0.0


def fit_temperatures_by_domain(
    logits, labels, domains, fallback: str = "global", bounds: tuple[float, float] = (0.01, 100.0)
) -> dict:
    """One temperature per domain; ``fallback`` says what a one-class domain gets.

    ``fallback``: ``"global"`` (the temperature fit on all domains together), ``"nan"``, or
    ``"error"`` (raise). The global temperature is also returned under the key ``"__global__"``.
    """
    if fallback not in ("global", "nan", "error"):
        raise DeepgenError(f"fallback {fallback!r} is unknown; use global, nan or error.")
    y, z = check_binary(labels, logits, name="fit_temperatures_by_domain logits")
    d = np.asarray(domains).reshape(-1)
    if d.shape != y.shape:
        raise DeepgenError(f"{d.size} domains for {y.size} logits; pass one domain per sample.")
    global_t = fit_temperature(z, y, bounds)
    out: dict = {"__global__": global_t}
    for name in pd.unique(d):
        m = d == name
        if y[m].min() != y[m].max():
            out[name] = fit_temperature(z[m], y[m], bounds)
        elif fallback == "error":
            raise DeepgenError(
                f"domain {name!r} has only one class; add both classes or use fallback='global'."
            )
        else:
            out[name] = global_t if fallback == "global" else float("nan")
    return out


def _top_label(labels, probs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, p = check_binary(labels, probs, name="probabilities")
    if np.any((p < 0) | (p > 1)):
        raise DeepgenError("probabilities must lie in [0, 1]; pass P(fake), not logits.")
    conf = np.maximum(p, 1.0 - p)
    correct = ((p >= 0.5).astype(int) == y).astype(float)
    return conf, correct, p


def _bin_index(conf: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
    if n_bins < 1:
        raise DeepgenError(f"n_bins={n_bins} is invalid; pass at least 1.")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        # bins are (lo, hi]; confidence exactly 0 falls in the first bin
        return np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    if strategy == "quantile":
        order = np.argsort(conf, kind="stable")
        idx = np.empty(conf.size, dtype=int)
        for b, chunk in enumerate(np.array_split(order, n_bins)):
            idx[chunk] = b
        return idx
    raise DeepgenError(f"binning strategy {strategy!r} is unknown; use uniform or quantile.")


def reliability_curve(labels, probs, n_bins: int = 15, strategy: str = "uniform") -> pd.DataFrame:
    """Per-bin top-label confidence and accuracy (non-empty bins only), the data of a reliability diagram.

    Columns: ``bin``, ``bin_lower``, ``bin_upper`` (edges; for ``quantile`` the min/max confidence in
    the bin), ``count``, ``confidence``, ``accuracy``, ``gap`` (accuracy - confidence).
    """
    conf, correct, _ = _top_label(labels, probs)
    idx = _bin_index(conf, n_bins, strategy)
    rows = []
    for b in np.unique(idx):
        m = idx == b
        if strategy == "uniform":
            lo, hi = b / n_bins, (b + 1) / n_bins
        else:
            lo, hi = float(conf[m].min()), float(conf[m].max())
        c, a = float(conf[m].mean()), float(correct[m].mean())
        rows.append(
            {"bin": int(b), "bin_lower": lo, "bin_upper": hi, "count": int(m.sum()),
             "confidence": c, "accuracy": a, "gap": a - c}
        )
    return pd.DataFrame(rows)


def expected_calibration_error(labels, probs, n_bins: int = 15, strategy: str = "uniform") -> float:
    """Top-label ECE: sum over bins of (bin share) x |accuracy - mean confidence|."""
    curve = reliability_curve(labels, probs, n_bins, strategy)
    w = curve["count"].to_numpy() / curve["count"].sum()
    return float(np.sum(w * np.abs(curve["gap"].to_numpy())))


def maximum_calibration_error(labels, probs, n_bins: int = 15, strategy: str = "uniform") -> float:
    """Top-label MCE: the largest |accuracy - confidence| over non-empty bins."""
    curve = reliability_curve(labels, probs, n_bins, strategy)
    return float(np.abs(curve["gap"]).max())


def brier_score(labels, probs) -> float:
    """Mean squared error between P(fake) and the label."""
    _, _, p = _top_label(labels, probs)
    y = np.asarray(labels, dtype=float).reshape(-1)
    return float(np.mean((p - y) ** 2))


def negative_log_likelihood(labels, probs) -> float:
    """Mean binary NLL of P(fake), probabilities clipped to [1e-12, 1 - 1e-12]."""
    _, _, p = _top_label(labels, probs)
    y = np.asarray(labels, dtype=float).reshape(-1)
    p = np.clip(p, PROB_EPS, 1.0 - PROB_EPS)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def calibration_metrics(labels, probs, n_bins: int = 15) -> dict:
    """ECE (equal-width), ECE (equal-mass), MCE, Brier and NLL in one dict."""
    return {
        "ece": expected_calibration_error(labels, probs, n_bins),
        "ece_equal_mass": expected_calibration_error(labels, probs, n_bins, "quantile"),
        "mce": maximum_calibration_error(labels, probs, n_bins),
        "brier": brier_score(labels, probs),
        "nll": negative_log_likelihood(labels, probs),
    }


def logits_of(df: pd.DataFrame, logit_col: str = "logit", score_col: str = "score") -> np.ndarray:
    """The logit column when present and finite, else logits recovered from the score column."""
    if logit_col in df.columns and np.all(np.isfinite(df[logit_col].to_numpy(dtype=float))):
        return df[logit_col].to_numpy(dtype=float)
    if score_col in df.columns:
        return logit_from_prob(df[score_col].to_numpy(dtype=float))
    raise DeepgenError(f"predictions need a {logit_col!r} or {score_col!r} column for calibration.")


def cross_domain_calibration(
    df: pd.DataFrame,
    domain_col: str = "dataset",
    label_col: str = "label",
    logit_col: str = "logit",
    n_bins: int = 15,
    bounds: tuple[float, float] = (0.01, 100.0),
) -> pd.DataFrame:
    """Fit T on each domain A and measure calibration on every domain B (all pairs, A == B included).

    Rows: ``fit_domain``, ``eval_domain``, ``temperature``, ``ece_before`` (T = 1), ``ece_after``,
    ``nll_before``, ``nll_after``. A fit domain with one class gets no rows.
    """
    for c in (domain_col, label_col):
        if c not in df.columns:
            raise DeepgenError(f"predictions table lacks column {c!r}; cross-domain calibration needs it.")
    z = logits_of(df, logit_col)
    y = df[label_col].to_numpy()
    d = df[domain_col].to_numpy()
    domains = sorted(pd.unique(d))
    temps = {}
    for a in domains:
        m = d == a
        if np.unique(y[m]).size == 2:
            temps[a] = fit_temperature(z[m], y[m], bounds)
    rows = []
    for a, t in temps.items():
        for b in domains:
            m = d == b
            before, after = sigmoid(z[m]), apply_temperature(z[m], t)
            rows.append({
                "fit_domain": a, "eval_domain": b, "temperature": t,
                "ece_before": expected_calibration_error(y[m], before, n_bins),
                "ece_after": expected_calibration_error(y[m], after, n_bins),
                "nll_before": negative_log_likelihood(y[m], before),
                "nll_after": negative_log_likelihood(y[m], after),
            })
    return pd.DataFrame(rows)


def temperature_for(domains, temperature: float | Mapping) -> np.ndarray:
    """Per-sample temperatures from one float or a domain -> T mapping (``"__global__"`` as default)."""
    d = np.asarray(domains).reshape(-1)
    if not isinstance(temperature, Mapping):
        return np.full(d.size, float(temperature))
    default = temperature.get("__global__")
    out = np.empty(d.size, dtype=float)
    for i, name in enumerate(d):
        t = temperature.get(name, default)
        if t is None:
            raise DeepgenError(f"no temperature for domain {name!r}; add it or a '__global__' entry.")
        out[i] = float(t)
    return out
