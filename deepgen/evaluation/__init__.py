"""Evaluation: metrics, cross-dataset protocol, calibration, uncertainty, domain shift, subgroups, report.

Plain functions: numpy arrays or pandas tables in, dicts and DataFrames out. Import the
submodules directly (``from deepgen.evaluation.metrics import compute_metrics``); the report
module pulls in matplotlib, so it is not imported here.
"""

from deepgen.evaluation.calibration import (
    calibration_metrics,
    expected_calibration_error,
    fit_offset,
    fit_temperature,
)
from deepgen.evaluation.crossdataset import auc_matrix, cross_dataset_metrics
from deepgen.evaluation.metrics import aggregate_video_scores, compute_metrics
from deepgen.evaluation.shift import mmd_test, shift_report
from deepgen.evaluation.subgroups import subgroup_metrics

__all__ = [
    "aggregate_video_scores",
    "auc_matrix",
    "calibration_metrics",
    "compute_metrics",
    "cross_dataset_metrics",
    "expected_calibration_error",
    "fit_offset",
    "fit_temperature",
    "mmd_test",
    "shift_report",
    "subgroup_metrics",
]
