"""Training-time image augmentation: real-world perturbations and blended pseudo-fakes."""

from deepgen.augment.perturb import (
    PerturbConfig,
    add_noise,
    color_jitter,
    downscale,
    gaussian_blur,
    jpeg_compress,
    perturb,
)
from deepgen.augment.sbi import boundary_map, color_transfer, face_mask, other_blend, self_blend
from deepgen.augment.temporal import temporal_blend

__all__ = [
    "PerturbConfig",
    "add_noise",
    "boundary_map",
    "color_jitter",
    "color_transfer",
    "downscale",
    "face_mask",
    "gaussian_blur",
    "jpeg_compress",
    "other_blend",
    "perturb",
    "self_blend",
    "temporal_blend",
]
