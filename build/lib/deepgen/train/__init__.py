"""Detector training on Ray Train: recipes, data mixing, the worker loop and the driver."""

from deepgen.train.config import TrainConfig, load_config, validate_config
from deepgen.train.trainer import train

__all__ = ["TrainConfig", "load_config", "train", "validate_config"]
