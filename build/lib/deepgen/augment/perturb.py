"""Real-world perturbations (JPEG re-compression, blur, noise, colour jitter, downscale), seeded.

Each perturbation fires with its own probability from :class:`PerturbConfig`; all randomness comes
from the ``numpy.random.Generator`` passed in, so a seed reproduces the exact output.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class PerturbConfig:
    """Probability of each perturbation and the range its strength is drawn from."""

    jpeg_p: float = 0.0
    jpeg_quality: tuple[int, int] = (30, 95)
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    noise_p: float = 0.0
    noise_std: tuple[float, float] = (2.0, 10.0)  # in 0..255 pixel units
    color_p: float = 0.0
    color_strength: float = 0.2  # brightness/contrast/saturation jitter amplitude
    downscale_p: float = 0.0
    downscale_factor: tuple[float, float] = (0.4, 0.9)


def jpeg_compress(image: np.ndarray, quality: int) -> np.ndarray:
    """Re-encode as JPEG at ``quality`` (1-100) and decode again."""
    ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigmaX=float(sigma))


def add_noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise with standard deviation ``std`` pixel levels."""
    noisy = image.astype(np.float32) + rng.normal(0.0, std, image.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def color_jitter(image: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """Scale brightness, contrast (around the mean) and saturation (around the grey image) by factors."""
    x = image.astype(np.float32) * brightness
    x = (x - x.mean()) * contrast + x.mean()
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = (x - grey[..., None]) * saturation + grey[..., None]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def downscale(image: np.ndarray, factor: float) -> np.ndarray:
    """Shrink by ``factor`` and scale back up (loses high frequencies like low-resolution uploads)."""
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def perturb(image: np.ndarray, cfg: PerturbConfig, rng: np.random.Generator) -> np.ndarray:
    """Apply each perturbation with its probability, in a fixed order; deterministic given ``rng``."""
    out = image
    if rng.random() < cfg.color_p:
        s = cfg.color_strength
        out = color_jitter(out, *(1.0 + rng.uniform(-s, s, 3)))
    if rng.random() < cfg.blur_p:
        out = gaussian_blur(out, rng.uniform(*cfg.blur_sigma))
    if rng.random() < cfg.downscale_p:
        out = downscale(out, rng.uniform(*cfg.downscale_factor))
    if rng.random() < cfg.noise_p:
        out = add_noise(out, rng.uniform(*cfg.noise_std), rng)
    if rng.random() < cfg.jpeg_p:
        out = jpeg_compress(out, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    return out
