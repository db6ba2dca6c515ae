"""Detector models: the registry, timm backbones and their weight sources, heads, gradient reversal,
SupCon loss, and the checkpoint bundle (``deepgen.models.bundle``)."""

from deepgen.models.config import ModelConfig
from deepgen.models.detector import (
    Detector,
    backbone_mean_std,
    boundary_scores,
    input_mean_std,
    preprocess,
)
from deepgen.models.grl import GradientReversal, dann_coefficient, grad_reverse
from deepgen.models.losses import supcon_loss
from deepgen.models.registry import check_backbone, create_detector, list_models, register_model
from deepgen.models.temporal import TemporalDetector

__all__ = [
    "Detector",
    "GradientReversal",
    "ModelConfig",
    "TemporalDetector",
    "backbone_mean_std",
    "boundary_scores",
    "check_backbone",
    "create_detector",
    "dann_coefficient",
    "grad_reverse",
    "input_mean_std",
    "list_models",
    "preprocess",
    "register_model",
    "supcon_loss",
]
