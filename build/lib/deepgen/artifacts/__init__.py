"""Artifact evidence: frequency (upsampling peaks, high-frequency energy), blending boundary
(Face X-ray head) and compression mismatch, as per-item scores a reviewer can read."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepgen.artifacts.boundary import (
    BoundaryHead,
    boundary_loss,
    boundary_score,
    boundary_target,
    boundary_targets,
)
from deepgen.artifacts.compression import (
    block_grid,
    blockiness,
    compression_evidence,
    compression_mismatch,
    quantization_step,
)
from deepgen.artifacts.frequency import (
    FrequencyBranch,
    feature_names,
    frequency_features,
    high_frequency_ratio,
    radial_profile,
    spectral_peak_score,
)
from deepgen.errors import DeepgenError

__all__ = [
    "BoundaryHead",
    "FrequencyBranch",
    "block_grid",
    "blockiness",
    "boundary_loss",
    "boundary_score",
    "boundary_target",
    "boundary_targets",
    "compression_evidence",
    "compression_mismatch",
    "evidence_scores",
    "feature_names",
    "frequency_features",
    "high_frequency_ratio",
    "quantization_step",
    "radial_profile",
    "spectral_peak_score",
]


def evidence_scores(
    crops: Sequence[np.ndarray] | np.ndarray,
    full_frames: Sequence[np.ndarray] | None = None,
    boxes: Sequence[Sequence[float]] | None = None,
) -> dict[str, np.ndarray]:
    """Per-crop evidence, each an array of length N: ``frequency_score`` (spectral peak score),
    ``hf_ratio`` and ``compression_score`` (face-vs-frame compression mismatch).

    ``compression_score`` needs the full frames and the faces' (x0, y0, x1, y1) boxes in them (a
    resized crop has lost its compression grid); without them it is NaN. Aggregate per video with
    e.g. the mean or max over frames to fill the scores table's evidence columns.
    """
    items = list(crops) if not isinstance(crops, np.ndarray) or crops.ndim == 4 else [crops]
    n = len(items)
    freq = np.array([spectral_peak_score(c) for c in items], dtype=np.float64)
    hf = np.array([high_frequency_ratio(c) for c in items], dtype=np.float64)
    comp = np.full(n, np.nan)
    if full_frames is not None or boxes is not None:
        if full_frames is None or boxes is None or len(full_frames) != n or len(boxes) != n:
            raise DeepgenError(
                f"evidence_scores got {n} crops but {0 if full_frames is None else len(full_frames)} "
                f"frames and {0 if boxes is None else len(boxes)} boxes; pass one frame and one box "
                "per crop, or neither."
            )
        comp = np.array(
            [compression_mismatch(f, b) for f, b in zip(full_frames, boxes)], dtype=np.float64
        )
    return {"frequency_score": freq, "hf_ratio": hf, "compression_score": comp}
