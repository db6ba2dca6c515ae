"""Ray Tune sweeps of the generalization loss weights, each trial a Ray Train run scored on held-out datasets."""

from deepgen.tune.settings import TuneSettings, load_settings, objective_value
from deepgen.tune.sweep import tune_sweep

__all__ = ["TuneSettings", "load_settings", "objective_value", "tune_sweep"]
