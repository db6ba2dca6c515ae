"""Frequency-domain evidence on RGB uint8 face crops: radial log-spectrum, high-frequency energy
ratio and a spectral peak score for the periodic traces that upsampling (nearest, zero-insertion /
transposed convolution, bilinear) leaves, as GAN decoders and resize-and-paste pipelines do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from deepgen.errors import DeepgenError

N_RADIAL_BINS = 32
HF_CUTOFF = 0.25  # cycles/pixel; the upper half of the frequency radius range
MIN_SIDE = 16
_EPS = 1e-12
_LUMA = np.array([0.299, 0.587, 0.114])


def feature_names(n_bins: int = N_RADIAL_BINS) -> list[str]:
    """Column names of :func:`frequency_features`: the radial bins, then the two scalar scores."""
    return [f"radial_{i:02d}" for i in range(n_bins)] + ["hf_ratio", "spectral_peak"]


def _gray(crop: np.ndarray) -> np.ndarray:
    """Luma in [0, 1] as float64 from an HxWx3 uint8 RGB crop (HxW grey is accepted too)."""
    a = np.asarray(crop)
    if a.ndim == 3 and a.shape[2] == 3:
        g = a.astype(np.float64) @ _LUMA
    elif a.ndim == 2:
        g = a.astype(np.float64)
    else:
        raise DeepgenError(
            f"crop has shape {a.shape}; pass an HxWx3 RGB uint8 image (or HxW grey)."
        )
    if min(g.shape) < MIN_SIDE:
        raise DeepgenError(
            f"crop of shape {a.shape} is too small for spectral statistics; use crops of at least "
            f"{MIN_SIDE}x{MIN_SIDE} pixels."
        )
    return g / 255.0 if a.dtype == np.uint8 else g


def _power_spectrum(g: np.ndarray) -> np.ndarray:
    """Centred 2-D power spectrum of a mean-removed, Hann-windowed grey image."""
    h, w = g.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    f = np.fft.fftshift(np.fft.fft2((g - g.mean()) * win))
    return np.abs(f) ** 2


def _radius(shape: tuple[int, int]) -> np.ndarray:
    """Frequency radius in cycles/pixel of each bin of a centred spectrum."""
    fy = np.fft.fftshift(np.fft.fftfreq(shape[0]))
    fx = np.fft.fftshift(np.fft.fftfreq(shape[1]))
    return np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def radial_profile(crop: np.ndarray, n_bins: int = N_RADIAL_BINS) -> np.ndarray:
    """Azimuthally averaged log10 power spectrum in ``n_bins`` equal-width radius bins over (0, 0.5].

    Works for any crop size because the radius is in cycles/pixel; corners beyond 0.5 are ignored.
    """
    g = _gray(crop)
    p = _power_spectrum(g)
    r = _radius(g.shape)
    edges = np.linspace(0.0, 0.5, n_bins + 1)
    idx = np.digitize(r, edges[1:-1], right=True)
    keep = (r > 0) & (r <= 0.5)
    logp = np.log10(p[keep] + _EPS)
    sums = np.bincount(idx[keep], weights=logp, minlength=n_bins)
    counts = np.bincount(idx[keep], minlength=n_bins)
    return sums / np.maximum(counts, 1)


def high_frequency_ratio(crop: np.ndarray, cutoff: float = HF_CUTOFF) -> float:
    """Share of (non-DC) spectral energy above ``cutoff`` cycles/pixel; low for over-smoothed faces."""
    g = _gray(crop)
    p = _power_spectrum(g)
    r = _radius(g.shape)
    total = p[r > 0].sum()
    return float(p[r > cutoff].sum() / total) if total > 0 else 0.0


def _profiles(g: np.ndarray) -> list[np.ndarray]:
    """1-D profiles of local-derivative magnitudes, averaged across the other axis.

    Upsampling by 2 or 4 makes |first difference| (nearest, zero-insertion) or |second difference|
    (bilinear) periodic with period 2 or 4 along an axis; averaging over the other axis keeps that
    periodic part and averages the image content away.
    """
    out = []
    for img in (g, g.T):
        d1 = np.abs(np.diff(img, n=1, axis=1))
        d2 = np.abs(np.diff(img, n=2, axis=1))
        for d in (d1, d2):
            out.append(d.mean(axis=0))  # varies along the differenced axis
            out.append(d.mean(axis=1))  # varies along the other axis (row-wise zero insertion)
    return out


def _peak_log_ratio(spec: np.ndarray, k: int, half_width: int) -> float:
    """Log ratio of the power at bin k to the median of its neighbours (the local smooth level)."""
    lo, hi = max(1, k - half_width), min(len(spec), k + half_width + 1)
    neigh = np.concatenate([spec[lo:k], spec[k + 1 : hi]])
    return float(np.log10(spec[k] + _EPS) - np.log10(np.median(neigh) + _EPS))


def spectral_peak_score(crop: np.ndarray) -> float:
    """Strength (log10 power ratio) of spectral peaks at N/2 and N/4 above their local smooth level.

    Computed on the spectra of derivative-magnitude profiles (see ``_profiles``). Peaks at N/8 and
    3N/8 come only from an 8x8 block grid (JPEG), which also has harmonics at N/4 and N/2, so the
    grid's own peak level is subtracted: compression alone scores near 0, upsampling scores high.
    Note: a crop that was itself enlarged 2x or 4x when resized to the model size also scores high.
    """
    g = _gray(crop)
    best = -np.inf
    for prof in _profiles(g):
        n = (len(prof) // 8) * 8
        if n < MIN_SIDE:
            continue
        x = prof[:n] - prof[:n].mean()
        spec = np.abs(np.fft.rfft(x)) ** 2
        hw = max(4, n // 16)
        upsampling = max(_peak_log_ratio(spec, n // 2, hw), _peak_log_ratio(spec, n // 4, hw))
        grid = max(_peak_log_ratio(spec, n // 8, hw), _peak_log_ratio(spec, 3 * n // 8, hw))
        best = max(best, upsampling - max(0.0, grid))
    return float(best)


def _as_list(crops: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(crops, np.ndarray):
        if crops.ndim == 4:
            return list(crops)
        if crops.ndim == 3 and crops.shape[-1] == 3:
            return [crops]
        raise DeepgenError(
            f"crops array has shape {crops.shape}; pass NxHxWx3 uint8 or a list of HxWx3 crops."
        )
    return list(crops)


def frequency_features(
    crops: np.ndarray | Sequence[np.ndarray], n_bins: int = N_RADIAL_BINS
) -> np.ndarray:
    """Per-crop frequency features, shape (N, n_bins + 2); columns as :func:`feature_names`.

    ``crops`` is an NxHxWx3 uint8 array or a list of HxWx3 uint8 crops (sizes may differ).
    """
    items = _as_list(crops)
    out = np.empty((len(items), n_bins + 2), dtype=np.float64)
    for i, c in enumerate(items):
        out[i, :n_bins] = radial_profile(c, n_bins)
        out[i, n_bins] = high_frequency_ratio(c)
        out[i, n_bins + 1] = spectral_peak_score(c)
    return out


class FrequencyBranch(nn.Module):
    """Learned frequency features: log-magnitude FFT of the grey image -> small CNN -> (N, out_dim).

    Input: NCHW float tensor (any normalization, H and W >= 16). Output: (N, out_dim) features,
    meant to be concatenated with the backbone's pooled features before the classifier head.
    """

    def __init__(self, out_dim: int = 64, width: int = 16) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * width, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.float().mean(dim=1, keepdim=True)
        g = g - g.mean(dim=(2, 3), keepdim=True)
        spec = torch.fft.fftshift(torch.fft.fft2(g), dim=(-2, -1))
        logmag = torch.log1p(spec.abs())
        mu = logmag.mean(dim=(2, 3), keepdim=True)
        sd = logmag.std(dim=(2, 3), keepdim=True)
        return self.net((logmag - mu) / (sd + 1e-6))
