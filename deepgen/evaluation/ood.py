"""Out-of-domain check: how far an item's face features lie from the features a bundle was trained on.

Two plain distances of feature rows to a reference sample (the training faces' features):

- :func:`knn_distance`: Euclidean distance of the L2-normalised row to its k-th nearest reference row
  (deep k-NN, Sun et al. 2022);
- :func:`mahalanobis_distance`: Mahalanobis distance to the reference mean under a Ledoit-Wolf
  shrunk covariance (plain sample covariance is singular when features outnumber the sample).

An item's raw distance is the mean over its face crops. :func:`fit_ood` fixes the threshold at
training time: a high quantile of the validation crops' distances (faces of videos the model never
trained on, from its own domain). Crops rather than videos: many more samples for the tail (a few
dozen validation videos put a 99th percentile at their maximum), and an item's mean over its crops
exceeds the crops' 99th percentile less often than a single crop does. ``ood_score`` is the item's distance in units of that threshold, so
``in_domain`` is ``ood_score <= 1`` for any bundle and an ensemble can compare its members.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from deepgen.errors import DeepgenError

METHODS = ("knn", "mahalanobis")
DEFAULT_METHOD = "mahalanobis"  # separates better on the measured bundles (README, "Trust at the point of use")
DEFAULT_K = 5
DEFAULT_QUANTILE = 0.99
WARN_SHARE = 0.2  # score/rescore warn when more than this share of a run's scored items is out of domain


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_distance(reference: np.ndarray, x: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    """Distance of each row of ``x`` (N, d) to its k-th nearest row of ``reference`` (n, d), both L2-normalised."""
    ref, q = _normalise(reference), _normalise(x)
    if len(q) == 0:
        return np.zeros(0)
    k = max(1, min(int(k), len(ref)))
    d2 = np.maximum(2.0 - 2.0 * q @ ref.T, 0.0)  # unit vectors: |a - b|^2 = 2 - 2 a.b
    return np.sqrt(np.partition(d2, k - 1, axis=1)[:, k - 1])


def mahalanobis_model(reference: np.ndarray) -> dict[str, np.ndarray]:
    """Mean and Ledoit-Wolf shrunk precision matrix of ``reference`` (n, d).

    The shrunk covariance is inverted by Cholesky (every scoring actor builds two of these at start: 0.1 s
    against 1 s for the eigendecomposition scikit-learn's ``precision_`` uses, d = 1280); a covariance that
    is not positive definite (no shrinkage and a constant feature) falls back to that pseudo-inverse."""
    from scipy import linalg
    from sklearn.covariance import ledoit_wolf

    x = np.asarray(reference, dtype=np.float64)
    cov, _ = ledoit_wolf(x)
    try:
        precision = linalg.cho_solve(linalg.cho_factor(cov), np.eye(len(cov)))
    except linalg.LinAlgError:
        precision = linalg.pinvh(cov)
    return {"mean": x.mean(axis=0), "precision": precision}


def mahalanobis_distance(model: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Mahalanobis distance of each row of ``x`` to ``model`` (:func:`mahalanobis_model`)."""
    c = np.asarray(x, dtype=np.float64) - model["mean"]
    # (c P) . c row by row: one BLAS product (a three-operand einsum loops in C: 20-35x slower at d = 1280)
    return np.sqrt(np.maximum(((c @ model["precision"]) * c).sum(axis=1), 0.0))


def check_ood_record(record: Any, where: str = "ood.json") -> tuple[str, int, float]:
    """The (method, k, threshold) of a domain-check record (:func:`fit_ood`'s, a bundle's ``ood.json`` at
    ``where``), or one sentence naming the field that is missing or invalid."""
    fix = "restore the bundle or retrain it"
    if not isinstance(record, dict):
        raise DeepgenError(f"{where} holds a {type(record).__name__}, not the domain-check record (a mapping with "
                           f"method, k and thresholds); {fix}.")
    missing = [k for k in ("method", "k", "thresholds") if k not in record]
    if missing:
        raise DeepgenError(f"{where} has no {missing[0]!r} field (a domain-check record needs method, k and "
                           f"thresholds); {fix}.")
    method, k, thresholds = record["method"], record["k"], record["thresholds"]
    if method not in METHODS:
        raise DeepgenError(f"method in {where} is {method!r}, not one of {', '.join(METHODS)}; {fix}.")
    if not (isinstance(k, int) and not isinstance(k, bool) and k >= 1):
        raise DeepgenError(f"k in {where} is {k!r}, but it must be a whole number >= 1; {fix}.")
    if not isinstance(thresholds, dict) or method not in thresholds:
        raise DeepgenError(f"thresholds in {where} records no {method!r} threshold; {fix}.")
    if "frozen" in record:
        check_frozen_record(record["frozen"], where)
    return method, k, _threshold(thresholds[method], f"thresholds.{method}", where)


def _threshold(value: Any, field: str, where: str) -> float:
    if not (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise DeepgenError(f"{field} in {where} is {value!r}, but a threshold must be a finite number > 0 (else every "
                           "item reads as in domain or the scores explode); restore the bundle or retrain it.")
    return float(value)


def check_frozen_record(record: Any, where: str = "ood.json") -> tuple[str, float, int]:
    """The (method, threshold, input size) of the domain check's frozen-backbone view (``frozen`` in
    ``ood.json``, :func:`~deepgen.evaluation.frozen.fit_frozen_check`'s), or one sentence naming the field."""
    fix = "restore the bundle or retrain it"
    if not isinstance(record, dict):
        raise DeepgenError(f"frozen in {where} holds a {type(record).__name__}, not a mapping with method, threshold "
                           f"and size; {fix}.")
    missing = [k for k in ("method", "threshold", "size") if k not in record]
    if missing:
        raise DeepgenError(f"frozen in {where} has no {missing[0]!r} field (it needs method, threshold and size); "
                           f"{fix}.")
    method, size = record["method"], record["size"]
    if method not in METHODS:
        raise DeepgenError(f"frozen.method in {where} is {method!r}, not one of {', '.join(METHODS)}; {fix}.")
    if not (isinstance(size, int) and not isinstance(size, bool) and size >= 1):
        raise DeepgenError(f"frozen.size in {where} is {size!r}, but it must be a whole number of pixels >= 1; {fix}.")
    return method, _threshold(record["threshold"], "frozen.threshold", where), size


class OodModel:
    """One bundle's domain check, ready to score frame features: the reference sample, method and threshold."""

    def __init__(self, record: dict, reference: np.ndarray, where: str = "ood.json", sample: str = "ood_sample",
                 size: int | None = None):
        self.method, self.k, self.threshold = check_ood_record(record, where)
        self.size = size  # the frozen view's input size (:meth:`frozen`); None for the fine-tuned view
        self.reference = np.asarray(reference, dtype=np.float32)
        if self.reference.ndim != 2 or len(self.reference) < 2 or not np.isfinite(self.reference).all():
            raise DeepgenError(f"the domain check of {where} needs at least 2 finite reference feature rows "
                               f"({sample}), got shape {self.reference.shape}; restore the bundle or retrain it.")
        self._maha = mahalanobis_model(self.reference) if self.method == "mahalanobis" else None

    @classmethod
    def frozen(cls, record: dict, reference: np.ndarray, where: str = "ood.json") -> OodModel:
        """The frozen-backbone view (``frozen`` in ``ood.json``, validated) over ``ood_frozen_sample``; its
        ``size`` is the input size its frozen features are taken at."""
        method, threshold, size = check_frozen_record(record, where)
        return cls({"method": method, "k": DEFAULT_K, "thresholds": {method: threshold}}, reference, where,
                   sample="ood_frozen_sample", size=size)

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Raw distance of each feature row to the training features (the recorded method)."""
        if self._maha is not None:
            return mahalanobis_distance(self._maha, features)
        return knn_distance(self.reference, features, self.k)

    def frame_scores(self, features: np.ndarray) -> np.ndarray:
        """Each row's distance in units of the threshold (an item's mean > 1: out of domain)."""
        return self.distance(features) / self.threshold


def item_means(values: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Mean of ``values`` per distinct item id (ids sorted)."""
    _, inv = np.unique(np.asarray(items), return_inverse=True)
    return np.bincount(inv, weights=np.asarray(values, np.float64)) / np.bincount(inv)


def fit_ood(reference: np.ndarray, val_features: np.ndarray, val_items: np.ndarray,
            quantile: float = DEFAULT_QUANTILE, k: int = DEFAULT_K, method: str = DEFAULT_METHOD) -> dict:
    """The bundle's ``ood`` record: per method, the ``quantile`` of the validation crops' distances to
    ``reference`` (training features); ``method`` is the one scoring uses. ``val_items`` (each crop's
    video) count the validation videos and give their mean distance's quantile for comparison."""
    if method not in METHODS:
        raise DeepgenError(f"ood method {method!r} is unknown; use one of {', '.join(METHODS)}.")
    if len(reference) < 2 or len(val_features) < 1:
        raise DeepgenError("the domain check needs at least 2 training and 1 validation face; add faces.")
    dists = {"knn": knn_distance(reference, val_features, k),
             "mahalanobis": mahalanobis_distance(mahalanobis_model(reference), val_features)}
    thresholds = {m: float(np.quantile(d, quantile, method="higher")) for m, d in dists.items()}
    per_item = {m: float(np.quantile(item_means(d, val_items), quantile, method="higher")) for m, d in dists.items()}
    return {"method": method, "k": int(k), "quantile": float(quantile), "thresholds": thresholds,
            "video_quantiles": per_item, "n_validation_crops": int(len(val_features)),
            "n_reference": int(len(reference)), "n_validation_items": int(len(np.unique(val_items))),
            "warn_share": WARN_SHARE}


def separation_auc(in_domain: np.ndarray, out_of_domain: np.ndarray) -> float:
    """AUC of telling out-of-domain items (positives) from in-domain ones by a distance (0.5 = chance)."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(in_domain)), np.ones(len(out_of_domain))]
    return float(roc_auc_score(y, np.r_[in_domain, out_of_domain]))
