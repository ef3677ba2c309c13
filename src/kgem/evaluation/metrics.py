"""Rank-based metrics: pure functions of a rank tensor ``(n,)`` (1 = best) and, for the adjusted ones, the number
of candidates each rank was taken among. An empty rank tensor gives NaN."""

from __future__ import annotations

import torch

HITS_AT = (1, 3, 5, 10)


def mean_rank(ranks: torch.Tensor) -> float:
    """MR: the arithmetic mean rank (lower is better)."""
    return float(ranks.double().mean())


def mean_reciprocal_rank(ranks: torch.Tensor) -> float:
    """MRR: the mean of 1 / rank (higher is better)."""
    return float(ranks.double().reciprocal().mean())


def hits_at(ranks: torch.Tensor, k: int) -> float:
    """Hits@k: the fraction of ranks <= k (a realistic rank of 1.5 is not a hit at 1)."""
    return float((ranks <= k).double().mean())


def expected_mean_rank(num_candidates: torch.Tensor) -> float:
    """E[MR] of a random scorer: the mean over queries of (num_candidates + 1) / 2."""
    return float(((num_candidates.double() + 1) / 2).mean())


def adjusted_mean_rank(ranks: torch.Tensor, num_candidates: torch.Tensor) -> float:
    """AMR = MR / E[MR] (Berrendorf et al. 2020): 1 for random scores, towards 0 for perfect ones."""
    return mean_rank(ranks) / expected_mean_rank(num_candidates)


def adjusted_mean_rank_index(ranks: torch.Tensor, num_candidates: torch.Tensor) -> float:
    """AMRI = 1 - (MR - 1) / (E[MR] - 1) (Berrendorf et al. 2020): 1 perfect, 0 random, -1 worst.

    NaN when every query has a single candidate (E[MR] = 1): any scorer is then perfect and random at once.
    """
    expected = expected_mean_rank(num_candidates)
    if expected == 1.0:
        return float("nan")
    return 1.0 - (mean_rank(ranks) - 1.0) / (expected - 1.0)


def rank_metrics(ranks: torch.Tensor, num_candidates: torch.Tensor,
                 ks: tuple[int, ...] = HITS_AT) -> dict[str, float]:
    """All metrics of one rank tensor: count, mrr, mr, hits@k for each k, amr and amri."""
    out: dict[str, float] = {"count": len(ranks), "mrr": mean_reciprocal_rank(ranks), "mr": mean_rank(ranks)}
    out.update({f"hits@{k}": hits_at(ranks, k) for k in ks})
    out["amr"] = adjusted_mean_rank(ranks, num_candidates)
    out["amri"] = adjusted_mean_rank_index(ranks, num_candidates)
    return out
