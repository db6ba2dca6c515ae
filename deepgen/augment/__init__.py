"""Training-time image augmentation: real-world perturbations and self-blended pseudo-fakes."""

from deepgen.augment.perturb import (
    PerturbConfig,
    add_noise,
    color_jitter,
    downscale,
    gaussian_blur,
    jpeg_compress,
    perturb,
)
from deepgen.augment.sbi import boundary_map, face_mask, self_blend

__all__ = [
    "PerturbConfig",
    "add_noise",
    "boundary_map",
    "color_jitter",
    "downscale",
    "face_mask",
    "gaussian_blur",
    "jpeg_compress",
    "perturb",
    "self_blend",
]
