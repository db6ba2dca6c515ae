"""Batch scoring (Ray Data), the results store and nightly rescoring."""

from deepgen.scoring.nightly import rescore, run_summary
from deepgen.scoring.pipeline import ScoreConfig, score_stream, score_table_rows
from deepgen.scoring.score import score

__all__ = ["ScoreConfig", "rescore", "run_summary", "score", "score_stream", "score_table_rows"]
