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

Degree-proportional sampling (``evaluate_sampled(..., weights=...)``, ``DegreeSampledEntities``) draws the ``K``
candidates by priority sampling with positive weights ``w`` (training degree + 1): given the draw's threshold
``τ``, an entity ``e`` is drawn with probability ``p_e = min(1, w_e / τ)`` and, drawn, stands for
``x_e = max(1, τ / w_e) = 1 / p_e`` entities. With ``f_e`` = 1 for a candidate of the full ranking that beats the
true answer, ½ for one that ties with it (realistic ranks; optimistic ranks count no tie, pessimistic ranks count a
tie as 1) and 0 otherwise, ``A = Σ_e f_e`` is the full rank minus 1, and (Duffield, Lund & Thorup 2007)

- ``Â = Σ_drawn f_e x_e`` is unbiased for ``A`` (the evaluator accumulates it block by block, ``WeightedCounts``),
- ``v̂ = Σ_drawn f_e² x_e (x_e - 1)`` is an unbiased estimate of its variance (the terms are uncorrelated).

The plug-in rank is ``1 + Â``, kept within ``[1 + c, N]``, where ``c = Σ_drawn f_e`` (the sampled rank minus 1)
counts the drawn beaters. The interval: a beater of weight ``w_e ≥ τ`` (``x_e = 1``) is drawn for certain, so the
``h`` drawn such beaters are all of them, exactly; only the light beaters (``w_e < τ``), of estimated number
``Â_L = Â - h``, are uncertain. Given ``τ`` the bounds treat the draws as independent (threshold sampling, of which
priority sampling is the fixed-size version), each side at ``α = (1 - level) / 2`` as the Wilson bounds, and use
``X = τ / w_min``: no entity stands for more (``w_min`` is the smallest weight).

- High: the light term ``Y_e = f_e x_e 1[e drawn]`` has ``E exp(-θ Y_e) ≤ exp(-(1 - exp(-θ f_e x_e)) / x_e)
  ≤ exp(-f_e (1 - exp(-θ X)) / X)``, because ``(1 - exp(-θ x)) / x`` falls as ``x`` grows (and
  ``1 - exp(-a/2) ≥ (1 - exp(-a)) / 2`` for the halves): the hidden beaters do the most harm when they are the
  lightest entities, and ``Â_L`` is then ``X`` times a Poisson count of mean ``A_L / X``. Chernoff's bound gives
  ``P(Â_L ≤ y) ≤ exp(-(μ - k - k ln(μ / k)))`` for ``k = y / X < μ = A_L / X``, so with probability at least
  ``1 - α``, ``A_L ≤ X μ⁺(Â_L / X)`` where ``μ⁺(k) > k`` solves ``μ - k - k ln(μ / k) = ln(1 / α)``. With no light
  beater drawn this reads: beaters of total weight ``W`` are all missed with probability at most ``exp(-W / τ)``,
  so ``W ≤ ln(1 / α) τ`` and up to ``ln(1 / α) τ / w_min`` of them may hide below the threshold (``ln 40 ≈ 3.7``
  at level 0.95, as the uniform bound's ``3.7 N / K``). With many drawn, ``X μ⁺ ≈ Â_L + sqrt(2 ln(1 / α) X Â_L)``:
  the normal bound ``Â + z sqrt(v̂)`` widened, never narrower than it (``v̂ ≤ (X - 1) Â_L``, ``z² ≤ 2 ln(1 / α)``),
  because ``v̂`` cannot see the beaters that were missed. The high rank is ``1 + h + X μ⁺``.
- Low: the gamma bound for weighted Poisson sums (Fay & Feuer 1997) on the light part: the ``α`` quantile of the
  gamma distribution with the light estimate's mean ``Â_L`` and variance ``v̂`` (shape ``Â_L² / v̂``, scale
  ``v̂ / Â_L``), plus ``h``. With equal scales ``x`` it is the exact (Garwood) lower limit of the Poisson count
  ``Â_L / x``; where few beaters were seen the gamma is skewed and its lower quantile lies above the normal bound
  ``Â - z sqrt(v̂)``, meeting it as more are seen. Drawing a light beater is what makes ``Â`` overshoot, and each
  one drawn adds ``x (x - 1)`` to ``v̂``: a lone beater of scale ``x``, drawn with probability ``1 / x``, gets
  the low bound ``(x - 1) G_α(x / (x - 1)) ≈ α x``, above its true count 1 only where ``1 / x < α``.

Both are kept within ``[c, N - 1]``; the metrics' intervals are the means of the per-query bounds as above.
``degree_bounds`` computes them. Priority sampling guarantees the unbiasedness exactly; the bounds rest on reading
its draws as independent given ``τ``, which the tests check by simulation (per-query coverage with adversarial
beaters: the lightest entities, the heaviest, mid-weight and random ones, mixtures) and on a small power-law graph
(the MRR interval against the exact ranking). The high bound is what degree-proportional sampling pays for drawing
the light entities rarely: ``X`` is ``mean(w) / w_min`` times the uniform sample's ``N / K``, so a query whose
answer beats every drawn candidate may rank far lower than under uniform sampling, while the popular competitors
that are drawn make the estimate and the low bound much sharper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from kgem.errors import EvaluationError
from kgem.evaluation.ranks import check_rank_type
from kgem.ops.process import row_blocks

TIE_SHARE = {"optimistic": 0.0, "pessimistic": 1.0, "realistic": 0.5}  # f of a tying candidate, per rank type


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
    return _metric_table(1 + share * n, 1 + low * n, 1 + high * n, ks)  # ranks: plug-in, lowest, highest


def _metric_table(point: torch.Tensor, best: torch.Tensor, worst: torch.Tensor, ks: Sequence[int]) -> pd.DataFrame:
    """The metrics of the plug-in ranks and their intervals from each query's lowest and highest rank."""
    rows = {"mrr": (point.reciprocal(), worst.reciprocal(), best.reciprocal()), "mr": (point, best, worst)}
    for at in ks:
        rows[f"hits@{at}"] = ((point <= at).double(), (worst <= at).double(), (best <= at).double())
    table = pd.DataFrame({name: [float(v.mean()) if len(v) else math.nan for v in values]
                          for name, values in rows.items()}, index=["estimate", "low", "high"]).T
    table.index.name = "metric"
    return table


@dataclass(frozen=True)
class BeaterEstimates:
    """Per query of a degree-proportional (priority-sampled) evaluation, sums over its drawn candidates that beat
    the true answer (``better_*``) and that tie with it (``tie_*``), each drawn ``e`` standing for
    ``x = max(1, τ / w_e)`` entities of the full ranking: ``*_count`` = Σ x, ``*_variance`` = Σ x (x - 1),
    ``*_exact`` = how many have ``x = 1`` (weight at least ``τ``: every such entity is drawn). ``threshold``: each
    query's ``τ`` (0: every entity drawn); ``min_weight``: the smallest sampling weight. All float64 ``(n,)``.
    ``count`` and ``variance`` give the estimate ``Â`` of the number of full-ranking candidates that beat the
    answer (ties counted as the rank type does) and its variance estimate (module docstring)."""

    better_count: torch.Tensor
    better_variance: torch.Tensor
    better_exact: torch.Tensor
    tie_count: torch.Tensor
    tie_variance: torch.Tensor
    tie_exact: torch.Tensor
    threshold: torch.Tensor
    min_weight: float

    FIELDS = ("better_count", "better_variance", "better_exact", "tie_count", "tie_variance", "tie_exact",
              "threshold")

    def __len__(self) -> int:
        return len(self.threshold)

    @classmethod
    def of(cls, columns: Sequence[torch.Tensor], min_weight: float) -> BeaterEstimates:
        """From the seven ``(n,)`` tensors in the order of ``FIELDS``."""
        if len(columns) != len(cls.FIELDS):
            raise EvaluationError(f"expected {len(cls.FIELDS)} columns ({', '.join(cls.FIELDS)}), got {len(columns)}")
        better_count, better_variance, better_exact, tie_count, tie_variance, tie_exact, threshold = columns
        return cls(better_count, better_variance, better_exact, tie_count, tie_variance, tie_exact, threshold,
                   min_weight)

    def __getitem__(self, index: torch.Tensor | slice) -> BeaterEstimates:
        """The estimates of a subset of the queries (boolean mask, index tensor or slice)."""
        return BeaterEstimates.of([getattr(self, name)[index] for name in self.FIELDS], self.min_weight)

    @staticmethod
    def cat(parts: Sequence[BeaterEstimates], min_weight: float) -> BeaterEstimates:
        """Concatenate the estimates of several query sets."""
        return BeaterEstimates.of([torch.cat([getattr(p, name) for p in parts]) if parts
                                   else torch.zeros(0, dtype=torch.float64) for name in BeaterEstimates.FIELDS],
                                  min_weight)

    def count(self, rank_type: str = "realistic") -> torch.Tensor:
        """``Â``: the estimated number of the full ranking's candidates that beat the true answer."""
        return self.better_count + TIE_SHARE[check_rank_type(rank_type)] * self.tie_count

    def variance(self, rank_type: str = "realistic") -> torch.Tensor:
        """``v̂``: the unbiased estimate of ``Â``'s variance."""
        return self.better_variance + TIE_SHARE[check_rank_type(rank_type)] ** 2 * self.tie_variance

    def exact(self, rank_type: str = "realistic") -> torch.Tensor:
        """``h``: the beaters of weight at least ``τ``, all drawn, so counted exactly."""
        return self.better_exact + TIE_SHARE[check_rank_type(rank_type)] * self.tie_exact


@dataclass
class WeightedCounts:
    """``BeaterEstimates``' sums of a query batch, accumulated block by block as ``RankCounts`` are: ``better`` and
    ``ties`` ``(B, 3)`` float64, columns Σ x, Σ x (x - 1), Σ [x = 1]."""

    better: torch.Tensor
    ties: torch.Tensor

    @classmethod
    def zeros(cls, batch: int, device: torch.device | str | None = None) -> WeightedCounts:
        return cls(torch.zeros(batch, 3, dtype=torch.float64, device=device),
                   torch.zeros(batch, 3, dtype=torch.float64, device=device))

    def add(self, true_scores: torch.Tensor, scores: torch.Tensor, scale: torch.Tensor,
            rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> WeightedCounts:
        """Count one block: ``true_scores (B,)``, ``scores (B, C)`` (read, not written), ``scale (C,)`` float64 the
        candidates' ``x`` (0 for a candidate that was not drawn: it counts nothing). ``rows``, ``cols``: the
        ``(row, column)`` pairs not to count, distinct: the excluded candidates and each query's own answer.

        Each cache-sized row block's comparisons are weighted by matrix-vector products with ``x``, ``x (x - 1)``
        and ``[x = 1]`` (three products: a ``(B, C) @ (C, 3)`` matrix product can cost a thread pool's start-up many
        times over); the pairs are then taken back out. Returns ``self``."""
        columns = (scale, scale * (scale - 1), (scale == 1).to(torch.float64))
        table = torch.stack(columns, 1)
        for part in row_blocks(*scores.shape):
            block, true = scores[part], true_scores[part, None]
            for total, hit in ((self.better, torch.gt(block, true)), (self.ties, torch.eq(block, true))):
                hit = hit.to(torch.float64)
                for j, column in enumerate(columns):
                    total[part, j] += hit.mv(column)
        if rows is not None and cols is not None and len(rows):
            drawn = scale[cols] > 0
            rows, cols = rows[drawn], cols[drawn]
            found, true = scores[rows, cols], true_scores[rows]
            for total, hit in ((self.better, found > true), (self.ties, found == true)):
                total.index_add_(0, rows[hit], table[cols[hit]], alpha=-1)
        return self

    def estimates(self, threshold: float, min_weight: float) -> BeaterEstimates:
        """The batch's ``BeaterEstimates`` (on the CPU), all of one draw's ``threshold``."""
        better, ties = self.better.cpu(), self.ties.cpu()
        return BeaterEstimates.of([*better.T, *ties.T, torch.full((len(better),), threshold, dtype=torch.float64)],
                                  min_weight)


def degree_bounds(beaters: BeaterEstimates, drawn: torch.Tensor, full_candidates: torch.Tensor, *,
                  rank_type: str = "realistic", level: float = 0.95) -> tuple[torch.Tensor, ...]:
    """Per query: ``(plug-in, low, high)`` estimates of how many of the full ranking's candidates beat the true
    answer (the rank minus 1), from a degree-proportional sample (module docstring). ``drawn``: the drawn ones that
    beat it (the sampled rank minus 1); ``full_candidates``: as in ``estimate_full_metrics``."""
    if not 0 < level < 1:
        raise EvaluationError(f"level must lie in (0, 1), got {level}")
    alpha = (1 - level) / 2  # each side's
    log = -math.log(alpha)
    count, exact = beaters.count(rank_type), beaters.exact(rank_type)
    c, n = drawn.double(), full_candidates.double() - 1
    most = beaters.threshold / beaters.min_weight  # X: the most entities one drawn candidate can stand for
    light, variance = (count - exact).clamp_min(0), beaters.variance(rank_type).clamp_min(0)
    hidden = torch.where(most > 1, most * _poisson_upper(light / most.clamp_min(1), log), light)
    spread = variance / light.clamp_min(1e-300)  # the gamma's scale
    seen = torch.where(variance > 0, spread * _gamma_quantile(light / spread.clamp_min(1e-300), alpha), light)
    return tuple(torch.minimum(torch.maximum(v, c), n) for v in (count, exact + seen, exact + hidden))


def estimate_weighted_metrics(sampled_ranks: torch.Tensor, beaters: BeaterEstimates, full_candidates: torch.Tensor,
                              *, rank_type: str = "realistic", level: float = 0.95,
                              ks: Sequence[int] = (1, 3, 10)) -> pd.DataFrame:
    """Estimates of the full-ranking MRR, MR and Hits@k with their intervals from a degree-proportional sample:
    ``sampled_ranks`` of ``rank_type``, each query's ``BeaterEstimates`` and ``full_candidates`` (the true answer
    included). Returns the table of ``estimate_full_metrics``."""
    if not len(sampled_ranks) == len(beaters) == len(full_candidates):
        raise EvaluationError("sampled ranks, beater estimates and candidate counts differ in length")
    point, low, high = degree_bounds(beaters, sampled_ranks.double() - 1, full_candidates, rank_type=rank_type,
                                     level=level)
    return _metric_table(1 + point, 1 + low, 1 + high, ks)


def _gamma_quantile(shape: torch.Tensor, q: float) -> torch.Tensor:
    """The ``q`` quantile (``q < 1/2``) of the unit-scale gamma distributions of ``shape``, by bisection on
    ``torch.special.gammainc`` (the regularised lower incomplete gamma function) between 0 and the mean ``shape``,
    where the distribution function has passed 1/2 (``P(a, a) > 1/2`` for every ``a``); the lower end is
    returned, so it errs low."""
    lo, hi = torch.zeros_like(shape), shape.clone()
    for _ in range(64):
        mid = (lo + hi) / 2
        below = torch.special.gammainc(shape, mid) < q
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return lo


def _poisson_upper(k: torch.Tensor, log: float) -> torch.Tensor:
    """``μ⁺(k)``: the root ``μ ≥ k`` of ``μ - k - k ln(μ / k) = log`` (``μ = log`` at ``k = 0``), Chernoff's upper
    confidence limit of a Poisson mean from the count ``k`` (real, not only whole), by bisection on ``d = μ - k``
    (the left side, ``d - k ln(1 + d / k)``, grows with ``d``); the upper end is returned, so it errs high."""
    def excess(d: torch.Tensor) -> torch.Tensor:
        return d - torch.where(k > 0, k * torch.log1p(d / k.clamp_min(1e-300)), torch.zeros_like(d))

    lo = torch.zeros_like(k)
    hi = 2 * log + 2 * torch.sqrt(2 * k * log)
    while bool((excess(hi) < log).any()):
        hi = torch.where(excess(hi) < log, 2 * hi, hi)
    for _ in range(64):
        mid = (lo + hi) / 2
        below = excess(mid) < log
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return k + hi


def _normal_quantile(q: float) -> float:
    """The standard normal quantile (two-sided levels: 0.975 gives 1.96)."""
    return float(torch.special.ndtri(torch.tensor(q, dtype=torch.float64)))
