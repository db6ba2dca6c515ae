"""Unsupervised feature alignment to a target domain: moment matching and CORAL.

Both fit an affine map ``y = x @ weight.T + bias`` that moves target-domain features onto the
source (training) feature statistics, so a classifier head trained on source features can be
reused unchanged; the map is stored as plain JSON in a checkpoint bundle and inserted before the
head as an ``nn.Linear``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from deepgen.errors import DeepgenError

METHODS = ("moment", "coral")


def _as_2d(feats: Any, name: str) -> np.ndarray:
    """Return features as a float64 (N, d) array, or raise a one-sentence error."""
    if isinstance(feats, torch.Tensor):
        feats = feats.detach().cpu().numpy()
    arr = np.asarray(feats, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise DeepgenError(
            f"{name} must be a 2-D (N, d) feature array with N >= 2, got shape {arr.shape}; "
            "pass at least two feature vectors."
        )
    if not np.all(np.isfinite(arr)):
        raise DeepgenError(f"{name} contains NaN or infinite values; drop those rows first.")
    return arr


def feature_stats(feats: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and covariance (d, d) of features: the reference stats a bundle stores."""
    arr = _as_2d(feats, "features")
    return arr.mean(axis=0), np.cov(arr, rowvar=False).reshape(arr.shape[1], arr.shape[1])


def _sym_power(mat: np.ndarray, power: float) -> np.ndarray:
    """Power of a symmetric positive definite matrix via eigh (eigenvalues clipped at 0)."""
    vals, vecs = np.linalg.eigh((mat + mat.T) / 2.0)
    vals = np.clip(vals, 1e-300, None)
    return (vecs * vals**power) @ vecs.T


@dataclass
class FeatureAlignment:
    """An affine feature map ``y = x @ weight.T + bias`` fitted by one alignment method."""

    weight: np.ndarray
    bias: np.ndarray
    method: str

    def __post_init__(self) -> None:
        self.weight = np.asarray(self.weight, dtype=np.float64)
        self.bias = np.asarray(self.bias, dtype=np.float64)
        d = self.bias.shape[0] if self.bias.ndim == 1 else -1
        if self.weight.shape != (d, d):
            raise DeepgenError(
                f"alignment weight {self.weight.shape} and bias {self.bias.shape} do not form a "
                "(d, d) / (d,) affine map; refit the alignment."
            )

    @property
    def dim(self) -> int:
        return int(self.bias.shape[0])

    def apply(self, feats: Any) -> np.ndarray | torch.Tensor:
        """Map features (numpy or torch, (N, d)) into the source domain; returns the same kind."""
        if isinstance(feats, torch.Tensor):
            w = torch.as_tensor(self.weight, dtype=feats.dtype, device=feats.device)
            b = torch.as_tensor(self.bias, dtype=feats.dtype, device=feats.device)
            return feats @ w.T + b
        arr = np.asarray(feats, dtype=np.float64)
        if arr.shape[-1] != self.dim:
            raise DeepgenError(
                f"features have dimension {arr.shape[-1]} but the alignment expects {self.dim}; "
                "use the alignment fitted for this model."
            )
        return arr @ self.weight.T + self.bias

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form for the checkpoint bundle."""
        return {
            "method": self.method,
            "dim": self.dim,
            "weight": self.weight.tolist(),
            "bias": self.bias.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureAlignment:
        """Inverse of :meth:`to_dict`."""
        missing = {"method", "weight", "bias"} - set(data)
        if missing:
            raise DeepgenError(
                f"alignment record lacks {sorted(missing)}; rewrite it with FeatureAlignment.to_dict."
            )
        return cls(
            weight=np.asarray(data["weight"]),
            bias=np.asarray(data["bias"]),
            method=str(data["method"]),
        )

    def as_torch_module(self, dtype: torch.dtype = torch.float32) -> nn.Linear:
        """An ``nn.Linear(d, d)`` computing this map, to put in front of the classifier head."""
        layer = nn.Linear(self.dim, self.dim, dtype=dtype)
        with torch.no_grad():
            layer.weight.copy_(torch.as_tensor(self.weight, dtype=dtype))
            layer.bias.copy_(torch.as_tensor(self.bias, dtype=dtype))
        layer.requires_grad_(False)
        return layer


def fit_alignment_from_stats(
    source_mean: Any,
    source_cov: Any,
    target_feats: Any,
    method: str = "coral",
    eps: float = 1e-1,
) -> FeatureAlignment:
    """Fit the alignment of target features onto stored source stats (mean (d,), cov (d, d)).

    ``moment``: per-feature standardize with target mean/std, re-colour with source mean/std.
    ``coral``: whiten with ``(C_t + r I)^-1/2``, re-colour with ``(C_s + r I)^1/2`` (Sun et al. 2016,
    plus re-centering), where ``r = eps * mean feature variance`` keeps the map scale-free.
    """
    if method not in METHODS:
        raise DeepgenError(f"unknown alignment method {method!r}; use one of {', '.join(METHODS)}.")
    target = _as_2d(target_feats, "target features")
    d = target.shape[1]
    mu_s = np.asarray(source_mean, dtype=np.float64).reshape(-1)
    cov_s = np.asarray(source_cov, dtype=np.float64)
    if mu_s.shape != (d,) or cov_s.shape != (d, d):
        raise DeepgenError(
            f"source stats have shapes {mu_s.shape} and {cov_s.shape} but target features have "
            f"dimension {d}; use reference stats from the same model."
        )
    mu_t = target.mean(axis=0)
    cov_t = np.cov(target, rowvar=False).reshape(d, d)
    if method == "moment":
        tiny = np.finfo(np.float64).tiny
        scale = np.sqrt(np.clip(np.diag(cov_s), 0, None)) / np.sqrt(
            np.clip(np.diag(cov_t), tiny, None)
        )
        weight = np.diag(scale)
        bias = mu_s - scale * mu_t
    else:
        if eps < 0:
            raise DeepgenError(f"CORAL eps must be >= 0, got {eps}; pass a small positive value.")
        eye = np.eye(d)
        reg_s = eps * max(np.trace(cov_s) / d, 1e-12)
        reg_t = eps * max(np.trace(cov_t) / d, 1e-12)
        weight = _sym_power(cov_s + reg_s * eye, 0.5) @ _sym_power(cov_t + reg_t * eye, -0.5)
        bias = mu_s - weight @ mu_t
    return FeatureAlignment(weight=weight, bias=bias, method=method)


def fit_moment_matching(source_feats: Any, target_feats: Any) -> FeatureAlignment:
    """Per-feature mean/std matching of target features onto source features."""
    mean, cov = feature_stats(_as_2d(source_feats, "source features"))
    return fit_alignment_from_stats(mean, cov, target_feats, method="moment")


def fit_coral(source_feats: Any, target_feats: Any, eps: float = 1e-1) -> FeatureAlignment:
    """CORAL: align target feature covariance (and mean) to the source's."""
    mean, cov = feature_stats(_as_2d(source_feats, "source features"))
    return fit_alignment_from_stats(mean, cov, target_feats, method="coral", eps=eps)


def aligned_head(alignment: FeatureAlignment, head: nn.Module) -> nn.Sequential:
    """The head with the alignment in front of it: features -> aligned features -> logits."""
    return nn.Sequential(alignment.as_torch_module(), head)
