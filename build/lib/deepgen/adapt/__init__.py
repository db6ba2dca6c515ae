"""Adaptation of a trained detector: feature alignment to a new domain, few-shot to a new method."""

from deepgen.adapt.align import (
    FeatureAlignment,
    aligned_head,
    feature_stats,
    fit_alignment_from_stats,
    fit_coral,
    fit_moment_matching,
)
from deepgen.adapt.fewshot import (
    Task,
    adapt_head,
    finetune_head,
    make_tasks,
    meta_train_fomaml,
    predict_proba,
)
from deepgen.adapt.protocol import leave_one_manipulation_out, summarize

__all__ = [
    "FeatureAlignment",
    "Task",
    "adapt_head",
    "aligned_head",
    "feature_stats",
    "finetune_head",
    "fit_alignment_from_stats",
    "fit_coral",
    "fit_moment_matching",
    "leave_one_manipulation_out",
    "make_tasks",
    "meta_train_fomaml",
    "predict_proba",
    "summarize",
]
