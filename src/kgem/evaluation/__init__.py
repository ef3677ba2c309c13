"""Rank-based link-prediction evaluation: filtered ranks, tie-aware rank types and metrics; calibration of the
models' probabilities."""

from kgem.evaluation.calibration import (
    Calibration,
    expected_calibration_error,
    plot_reliability,
    query_probabilities,
    reliability_table,
)
from kgem.evaluation.candidates import degree_weights
from kgem.evaluation.evaluator import (
    DEFAULT_MEMORY_BUDGET,
    ScoringModel,
    evaluate,
    evaluate_sampled,
    fraction_indices,
    plan_full,
)
from kgem.evaluation.metrics import (
    HITS_AT,
    adjusted_mean_rank,
    adjusted_mean_rank_index,
    expected_mean_rank,
    hits_at,
    mean_rank,
    mean_reciprocal_rank,
    rank_metrics,
)
from kgem.evaluation.ranks import RANK_TYPES, EvaluationError, RankCounts, Ranks, RankType, ranks_from_scores
from kgem.evaluation.result import EvaluationResult
from kgem.evaluation.semantic import semantic_at_k

__all__ = [
    "DEFAULT_MEMORY_BUDGET", "HITS_AT", "RANK_TYPES", "Calibration", "EvaluationError", "EvaluationResult",
    "RankCounts", "RankType", "Ranks", "ScoringModel", "adjusted_mean_rank", "adjusted_mean_rank_index",
    "degree_weights", "evaluate",
    "evaluate_sampled", "expected_calibration_error", "expected_mean_rank", "fraction_indices", "hits_at", "mean_rank",
    "mean_reciprocal_rank", "plan_full", "plot_reliability", "query_probabilities", "rank_metrics", "ranks_from_scores",
    "reliability_table", "semantic_at_k",
]
