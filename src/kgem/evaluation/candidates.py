"""The candidate strategies of the evaluator: which entities each query's true answer is ranked against.

``AllEntities`` ranks against every entity, filtering the other known answers out (the standard protocol).
``SampledEntities`` ranks against ``num_negatives`` entities drawn uniformly without replacement, shared by a batch of
queries (as DGL-KE's ``neg_sample_size_eval``). Both hand the evaluator ``Unit``s: queries that share one set of
candidates, which the evaluator ranks through the one entity scan (``kgem.models.scan``) with the same counting.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

from kgem.data.known import KnownTriples
from kgem.models.scan import Side, budget_elements, plan, within

MIN_SAMPLED_BATCH = 1024  # queries sharing one draw of negatives, at least (budget permitting)


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
    ``batch`` and ``width``: the query batch and the block width the scan uses (``kgem.models.scan.plan``)."""

    queries: slice
    ids: torch.Tensor | None
    cols: torch.Tensor
    mask: torch.Tensor | None
    batch: int
    width: int


class Candidates(Protocol):
    """A candidate strategy: how it labels the result, its units, and each batch's excluded candidates."""

    sampled: bool
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

    def __init__(self, num_negatives: int, seed: int) -> None:
        self.num_negatives: int | None = num_negatives
        self.count = num_negatives
        self.generator = torch.Generator().manual_seed(seed)

    def batch_size(self, memory_budget_bytes: int) -> int:
        """A batch scores up to ``B * (K + B)`` candidates, its own true answers too, so keep ``B`` near ``K``."""
        elements, count = budget_elements(memory_budget_bytes), self.count
        fits = int((math.sqrt(count**2 + 4 * elements) - count) / 2)
        return max(1, min(fits, max(count, MIN_SAMPLED_BATCH)))

    def units(self, num_entities: int, side: Side, anchor: torch.Tensor, r: torch.Tensor, target: torch.Tensor,
              known: KnownTriples | None, batch_size: int | None, memory_budget_bytes: int) -> Iterator[Unit]:
        """A unit per batch: the drawn negatives plus the batch's true answers, sorted and distinct."""
        size = batch_size or self.batch_size(memory_budget_bytes)
        for start in range(0, len(target), size):
            queries = slice(start, start + size)
            negatives = torch.randperm(num_entities, generator=self.generator)[: self.count].sort().values
            ids = torch.unique(torch.cat([negatives, target[queries]]))  # sorted (C,), C <= K + B
            cols = torch.searchsorted(ids, target[queries])
            mask = _not_candidates(ids, negatives, cols, side, anchor[queries], r[queries], known)
            batch, width = plan(len(cols), len(ids), memory_budget_bytes)
            yield Unit(queries, ids, cols, mask, batch, width)

    def excluded(self, unit: Unit, rows: torch.Tensor, side: Side, anchor: torch.Tensor, r: torch.Tensor,
                 target: torch.Tensor, known: KnownTriples | None, device: torch.device) -> Excluded:
        """The unit's mask, of the batch's ``rows`` (positions within the unit)."""
        assert unit.mask is not None
        return Excluded(mask=unit.mask[rows].to(device))


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
