"""Full-ranking metrics estimated from sampled ranks, with an interval that says how sure the estimate is.

A sampled evaluation ranks each query's true answer against ``K`` of its ``N`` candidates (the entities it would
be ranked against in the full evaluation, known answers filtered out), drawn uniformly without replacement. If
``A`` of the ``N`` beat the true answer, its full rank is ``1 + A``, and the ``c`` of the ``K`` drawn that beat it
are hypergeometric with mean ``K A / N``: so ``A ≈ c N / K``, and the plug-in estimates of the metrics come from
the ranks ``1 + c N / K``.

Those plug-in estimates are biased where ranks are small. A query whose answer beats all ``K`` drawn candidates
(``c = 0``) may rank first, or anywhere up to about ``3.7 N / K`` (the 95% Wilson bound). So each query also gets
Wilson score bounds on ``A / N`` at ``level``, narrowed by the finite-population factor ``sqrt((N - K) / (N - 1))``,
which closes them when every candidate was drawn. The interval of a metric is the mean of its per-query bounds:
a metric that falls as ranks grow (MRR, Hits@k) runs from its value at every query's upper rank bound to its
value at every lower one. The interval is conservative: it holds unless many queries' true ranks leave their own
bounds in the same direction. For an MRR dominated by top-ranked answers it can be wide. That width is what the
sample leaves unknown, and ``num_negatives`` narrows it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import torch

from kgem.errors import EvaluationError


def wilson_bounds(c: torch.Tensor, k: torch.Tensor, n: torch.Tensor, level: float) -> tuple[torch.Tensor, ...]:
    """Per query: the Wilson score bounds ``(low, high)`` on the share ``p`` of ``n`` candidates beating the
    answer, from ``c`` beating it among ``k`` drawn without replacement (with the finite-population factor)."""
    z = _normal_quantile(0.5 + level / 2)
    k = k.clamp_min(1)
    p = (c / k).clamp(0, 1)
    scale = 1 + z * z / k
    center = (p + z * z / (2 * k)) / scale
    half = z * torch.sqrt(p * (1 - p) / k + z * z / (4 * k * k)) / scale
    half = half * torch.sqrt(((n - k).clamp_min(0)) / (n - 1).clamp_min(1))
    exact = k >= n  # every candidate drawn: no uncertainty left
    low = torch.where(exact, p, (center - half).clamp(0, 1))
    high = torch.where(exact, p, (center + half).clamp(0, 1))
    return torch.minimum(low, p), torch.maximum(high, p)


def estimate_full_metrics(sampled_ranks: torch.Tensor, sampled_candidates: torch.Tensor,
                          full_candidates: torch.Tensor, *, level: float = 0.95,
                          ks: Sequence[int] = (1, 3, 10)) -> pd.DataFrame:
    """Estimates of the full-ranking MRR, MR and Hits@k with their intervals (see the module docstring).

    ``sampled_ranks``: each query's rank among its sampled candidates (1 = best; realistic ranks may be halves).
    ``sampled_candidates`` / ``full_candidates``: how many candidates it was ranked against, and would be in the
    full ranking, the true answer included in both. Returns one row per metric: ``estimate``, ``low``, ``high``."""
    if not 0 < level < 1:
        raise EvaluationError(f"level must lie in (0, 1), got {level}")
    if not len(sampled_ranks) == len(sampled_candidates) == len(full_candidates):
        raise EvaluationError("sampled ranks and candidate counts differ in length")
    c = sampled_ranks.double() - 1
    k = sampled_candidates.double() - 1
    n = full_candidates.double() - 1
    low, high = wilson_bounds(c, k, n, level)
    share = (c / k.clamp_min(1)).clamp(0, 1)
    point, best, worst = 1 + share * n, 1 + low * n, 1 + high * n  # ranks: plug-in, lowest, highest
    rows = {"mrr": (point.reciprocal(), worst.reciprocal(), best.reciprocal()), "mr": (point, best, worst)}
    for at in ks:
        rows[f"hits@{at}"] = ((point <= at).double(), (worst <= at).double(), (best <= at).double())
    table = pd.DataFrame({name: [float(v.mean()) if len(v) else math.nan for v in values]
                          for name, values in rows.items()}, index=["estimate", "low", "high"]).T
    table.index.name = "metric"
    return table


def _normal_quantile(q: float) -> float:
    """The standard normal quantile (two-sided levels: 0.975 gives 1.96)."""
    return float(torch.special.ndtri(torch.tensor(q, dtype=torch.float64)))
