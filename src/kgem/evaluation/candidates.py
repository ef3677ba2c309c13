"""The candidate strategies of the evaluator: which entities each query's true answer is ranked against.

``AllEntities`` ranks against every entity, filtering the other known answers out (the standard protocol).
``SampledEntities`` ranks against ``num_negatives`` entities drawn uniformly without replacement, shared by a batch of
queries (as DGL-KE's ``neg_sample_size_eval``). ``DegreeSampledEntities`` draws them in proportion to positive
weights instead (``degree_weights``: training degree + 1) by priority sampling (Duffield, Lund & Thorup 2007), and
labels each drawn entity with how many entities of the full ranking it stands for (``priority_sample``). All hand
the evaluator ``Unit``s: queries that share one set of candidates, which the evaluator ranks through the one entity
scan (``kgem.models.scan``) with the same counting.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

from kgem.data.known import KnownTriples
from kgem.errors import EvaluationError
from kgem.models.scan import Side, budget_elements, plan, within

MIN_SAMPLED_BATCH = 1024  # queries sharing one draw of negatives, at least (budget permitting)
DEGREE_BLOCK = 2**24  # training triples counted at a time by degree_weights


@dataclass(frozen=True)
class Excluded:
    """Candidates a query batch does not rank against: ``(row, candidate position)`` pairs, or a boolean
    ``(B, C)`` mask, plus ``restore``: 1 for each query whose true answer the pairs exclude, to count back in."""

    pairs: tuple[torch.Tensor, torch.Tensor] | None = None
    mask: torch.Tensor | None = None
    restore: torch.Tensor | None = None

    def within(self, start: int, stop: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The excluded ``(row, column in the block)`` pairs of the candidates at positions ``[start, stop)``."""
        if self.mask is not None:
            rows, cols = torch.nonzero(self.mask[:, start:stop], as_tuple=True)
            return rows, cols
        if self.pairs is None:
            return None, None
        return within(self.pairs, start, stop)


@dataclass(frozen=True)
class Unit:
    """Queries of one side that share one set of candidates, and how to rank them within the budget.

    ``queries``: their positions among the side's queries. ``ids``: the candidates' entity ids, sorted ``(C,)``, or
    None for every entity (position = id). ``cols``: each query's true answer's position among the candidates.
    ``mask``: ``(n, C)`` candidates that a query does not rank against (None: the strategy filters by pairs).
    ``batch`` and ``width``: the query batch and the block width the scan uses (``kgem.models.scan.plan``).
    Weighted sampling only: ``scale`` ``(C,)`` float64, how many entities of the full ranking each drawn candidate
    stands for, ``max(1, threshold / weight)``, and 0 for a candidate that was not drawn (another query's answer);
    ``threshold``: the draw's priority threshold (0: every entity drawn)."""

    queries: slice
    ids: torch.Tensor | None
    cols: torch.Tensor
    mask: torch.Tensor | None
    batch: int
    width: int
    scale: torch.Tensor | None = None
    threshold: float = 0.0


class Candidates(Protocol):
    """A candidate strategy: how it labels the result, its units, and each batch's excluded candidates."""

    sampled: bool
    sampler: str | None  # "uniform" or "degree" for sampled candidates
    num_negatives: int | None

    def units(self, num_entities: int, side: Side, anchor: torch.Tensor, r: torch.Tensor, target: torch.Tensor,
              known: KnownTriples | None, batch_size: int | None, memory_budget_bytes: int) -> Iterator[Unit]: ...

    def excluded(self, unit: Unit, rows: torch.Tensor, side: Side, anchor: torch.Tensor, r: torch.Tensor,
                 target: torch.Tensor, known: KnownTriples | None, device: torch.device) -> Excluded: ...


def known_pairs(known: KnownTriples, side: Side, anchor: torch.Tensor,
                r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The known answers of each query as ``(row, entity)`` pairs (CPU ids)."""
    return known.tail_pairs(anchor, r) if side == "tail" else known.head_pairs(r, anchor)


def known_answer(known: KnownTriples, side: Side, anchor: torch.Tensor, r: torch.Tensor,
                 target: torch.Tensor) -> torch.Tensor:
    """Whether each query's own triple is among the known ones."""
    h, t = (anchor, target) if side == "tail" else (target, anchor)
    return known.contains(torch.stack([h, r, t], 1).cpu())


class AllEntities:
    """Every entity is a candidate; in the filtered setting the other known answers are excluded."""

    sampled = False
    sampler: str | None = None
    num_negatives: int | None = None

    def units(self, num_entities: int, side: Side, anchor: torch.Tensor, r: torch.Tensor, target: torch.Tensor,
              known: KnownTriples | None, batch_size: int | None, memory_budget_bytes: int) -> Iterator[Unit]:
        """One unit: all queries, ``batch_size`` (default: planned) at a time."""
        batch, width = plan(len(target), num_entities, memory_budget_bytes, batch_size)
        yield Unit(slice(0, len(target)), None, target, None, batch, width)

    def excluded(self, unit: Unit, rows: torch.Tensor, side: Side, anchor: torch.Tensor, r: torch.Tensor,
                 target: torch.Tensor, known: KnownTriples | None, device: torch.device) -> Excluded:
        """The known answers as pairs. They include a known true answer: excluding it sets its score to the true
        score, which it is, and ``restore`` counts it back, cheaper than selecting it out of millions of pairs."""
        if known is None:
            return Excluded()
        found, ids = known_pairs(known, side, anchor, r)
        restore = known_answer(known, side, anchor, r, target).to(device).long()
        return Excluded(pairs=(found.to(device), ids.to(device)), restore=restore)


class SampledEntities:
    """``num_negatives`` entities drawn uniformly without replacement from ``seed``, afresh for each batch of
    ``batch_size`` queries (default: as many as fit the budget with their own answers, near ``num_negatives``) and
    side, shared by the batch. Per query, negatives that are known (filtered setting) or the true answer are dropped,
    so ranks lie in ``[1, num_negatives + 1]``."""

    sampled = True
    sampler: str | None = "uniform"

    def __init__(self, num_negatives: int, seed: int) -> None:
        self.num_negatives: int | None = num_negatives
        self.count = num_negatives
        self.generator = torch.Generator().manual_seed(seed)

    def batch_size(self, memory_budget_bytes: int) -> int:
        """A batch scores up to ``B * (K + B)`` candidates, its own true answers too, so keep ``B`` near ``K``."""
        elements, count = budget_elements(memory_budget_bytes), self.count
        fits = int((math.sqrt(count**2 + 4 * elements) - count) / 2)
        return max(1, min(fits, max(count, MIN_SAMPLED_BATCH)))

    def draw(self, num_entities: int) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """One batch's negatives, sorted ``(K,)``; the entities of the full ranking each stands for (None: the
        uniform estimator needs none); the priority threshold (0 here)."""
        return torch.randperm(num_entities, generator=self.generator)[: self.count].sort().values, None, 0.0

    def units(self, num_entities: int, side: Side, anchor: torch.Tensor, r: torch.Tensor, target: torch.Tensor,
              known: KnownTriples | None, batch_size: int | None, memory_budget_bytes: int) -> Iterator[Unit]:
        """A unit per batch: the drawn negatives plus the batch's true answers, sorted and distinct."""
        size = batch_size or self.batch_size(memory_budget_bytes)
        for start in range(0, len(target), size):
            queries = slice(start, start + size)
            negatives, stands_for, threshold = self.draw(num_entities)
            ids = torch.unique(torch.cat([negatives, target[queries]]))  # sorted (C,), C <= K + B
            cols = torch.searchsorted(ids, target[queries])
            mask = _not_candidates(ids, negatives, cols, side, anchor[queries], r[queries], known)
            batch, width = plan(len(cols), len(ids), memory_budget_bytes)
            scale = None
            if stands_for is not None:  # the drawn columns' scale; 0 for the other queries' answers
                scale = torch.zeros(len(ids), dtype=torch.float64)
                scale[torch.searchsorted(ids, negatives)] = stands_for
            yield Unit(queries, ids, cols, mask, batch, width, scale, threshold)

    def excluded(self, unit: Unit, rows: torch.Tensor, side: Side, anchor: torch.Tensor, r: torch.Tensor,
                 target: torch.Tensor, known: KnownTriples | None, device: torch.device) -> Excluded:
        """The unit's mask, of the batch's ``rows`` (positions within the unit)."""
        assert unit.mask is not None
        return Excluded(mask=unit.mask[rows].to(device))


class DegreeSampledEntities(SampledEntities):
    """``num_negatives`` entities drawn without replacement in proportion to ``weights`` (``(num_entities,)``,
    positive: e.g. ``degree_weights``, so that the popular entities, the usual competitors of a true answer, are
    drawn more often), by ``priority_sample`` from ``seed``, afresh for each batch and side as ``SampledEntities``.
    Each unit carries the draw's threshold and each drawn candidate's scale, from which the evaluator counts the
    estimated number of full-ranking candidates beating each true answer (``kgem.evaluation.estimate``)."""

    sampler: str | None = "degree"

    def __init__(self, num_negatives: int, seed: int, weights: torch.Tensor) -> None:
        super().__init__(num_negatives, seed)
        self.weights = check_weights(weights, len(weights))
        self.min_weight = float(self.weights.min()) if len(self.weights) else 1.0

    def draw(self, num_entities: int) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """A priority sample of the weights: the negatives, their scale ``max(1, threshold / weight)``, the
        threshold."""
        if num_entities != len(self.weights):
            raise EvaluationError(f"{len(self.weights)} sampling weights for {num_entities} entities")
        negatives, threshold = priority_sample(self.weights, self.count, self.generator)
        return negatives, (threshold / self.weights[negatives]).clamp_min_(1), threshold


def priority_sample(weights: torch.Tensor, count: int, generator: torch.Generator) -> tuple[torch.Tensor, float]:
    """``count`` distinct entities drawn by priority sampling (Duffield, Lund & Thorup 2007), sorted, and the
    threshold ``tau``.

    Each entity ``e`` draws ``u_e ~ U(0, 1]`` and gets the priority ``q_e = w_e / u_e``; the ``count`` highest
    priorities are kept and ``tau`` is the next one, the ``count + 1``-th highest. Given ``tau`` an entity is drawn
    with probability ``min(1, w_e / tau)``, so a drawn ``e`` stands for ``max(1, tau / w_e)`` entities: the sum of
    that over the drawn members of any set is an unbiased estimate of the set's size. Every entity is drawn (and
    ``tau`` is 0) when ``count`` reaches their number. Memory: two float64 vectors of ``len(weights)`` (the weights,
    as given, and the priorities), and ``O(num_entities)`` time: a ``topk``, no sort of all entities."""
    num = len(weights)
    if count >= num:
        return torch.arange(num), 0.0
    priority = torch.rand(num, dtype=torch.float64, generator=generator).neg_().add_(1)  # u in (0, 1]
    torch.div(weights, priority, out=priority)
    top = torch.topk(priority, count + 1, sorted=True)
    return top.indices[:count].sort().values, float(top.values[count])


def check_weights(weights: torch.Tensor, num_entities: int) -> torch.Tensor:
    """``weights`` as float64 on the CPU, if they are ``(num_entities,)``, finite and positive."""
    if not isinstance(weights, torch.Tensor) or weights.shape != (num_entities,):
        shape = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
        raise EvaluationError(f"sampling weights must be a ({num_entities},) tensor, one per entity, got {shape}")
    weights = weights.detach().to("cpu", torch.float64)
    if not bool((weights > 0).all()) or not bool(torch.isfinite(weights).all()):
        raise EvaluationError("sampling weights must be finite and positive (e.g. degree_weights: degree + 1)")
    return weights


def degree_weights(hrt: torch.Tensor, num_entities: int) -> torch.Tensor:
    """Each entity's degree in ``hrt`` (as head plus as tail) + 1, float64 ``(num_entities,)``: the sampling
    weights of degree-proportional sampled evaluation, positive for every entity (the training triples give the
    degree; an entity seen in none gets 1). Counted ``DEGREE_BLOCK`` triples at a time."""
    if hrt.ndim != 2 or hrt.shape[1] != 3:
        raise EvaluationError(f"expected triples of shape (n, 3), got {tuple(hrt.shape)}")
    degree = torch.zeros(num_entities, dtype=torch.int64)
    for start in range(0, len(hrt), DEGREE_BLOCK):
        ends = hrt[start : start + DEGREE_BLOCK][:, [0, 2]].reshape(-1).long().cpu()
        if len(ends) and (int(ends.min()) < 0 or int(ends.max()) >= num_entities):
            raise EvaluationError(f"entity ids must lie in [0, {num_entities}); got {int(ends.min())}.."
                                  f"{int(ends.max())}")
        degree += torch.bincount(ends, minlength=num_entities)
    return degree.double().add_(1)


def _not_candidates(ids: torch.Tensor, negatives: torch.Tensor, cols: torch.Tensor, side: Side,
                    anchor: torch.Tensor, r: torch.Tensor, known: KnownTriples | None) -> torch.Tensor:
    """``(B, C)``: the columns of ``ids`` a query does not rank against: other queries' answers that were not drawn,
    and known answers (filtered setting); never its own true answer (a candidate once, even if drawn or known)."""
    batch = len(cols)
    mask = ~torch.isin(ids, negatives).expand(batch, -1)
    if known is not None:  # map known entities to their columns in ids, if drawn
        rows, entities = known_pairs(known, side, anchor, r)
        pos = torch.searchsorted(ids, entities).clamp(max=len(ids) - 1)
        hit = ids[pos] == entities
        mask[rows[hit], pos[hit]] = True
    mask[torch.arange(batch), cols] = False
    return mask
