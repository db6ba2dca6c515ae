"""Detector model: timm backbone, heads, gradient reversal, SupCon loss, MC dropout."""

from deepgen.models.detector import (
    Detector,
    ModelConfig,
    backbone_mean_std,
    boundary_scores,
    check_backbone,
    create_detector,
    preprocess,
)
from deepgen.models.grl import GradientReversal, dann_coefficient, grad_reverse
from deepgen.models.losses import supcon_loss

__all__ = [
    "Detector",
    "GradientReversal",
    "ModelConfig",
    "backbone_mean_std",
    "boundary_scores",
    "check_backbone",
    "create_detector",
    "dann_coefficient",
    "grad_reverse",
    "preprocess",
    "supcon_loss",
]
