"""OGB's protocol (Hu et al. 2020): each triple's hidden head and tail ranked against negatives given with it.

A link-prediction benchmark may fix, per test triple, the entities its head and its tail compete with (OGB's
``head_neg`` / ``tail_neg``: 500 each for ogbl-biokg and ogbl-wikikg2, sampled so that none forms a known triple).
The true entity is ranked among its own negatives, unfiltered: a negative that scores as high as it is a tie, counted
half (OGB's rank is the mean of the optimistic and the pessimistic rank, kgem's realistic rank), and a negative equal to
the true entity ties with it. MRR and Hits@1/3/10 are means over the queries of both sides, as OGB reports them.

``GivenEntities`` is a candidate strategy of the evaluator (``kgem.evaluation.candidates``): each unit is a batch of
queries with one row of candidates per query, the true entity first and its negatives after, scored by the entity
scan's per-query path (``score_t_sampled`` / ``score_h_sampled``) a budget-sized block at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from kgem.data.known import KnownTriples
from kgem.data.negatives import GivenNegatives
from kgem.evaluation.candidates import Excluded, Unit
from kgem.evaluation.evaluator import _check_triples, _parse_sides, _rank, _result, fraction_indices
from kgem.evaluation.ranks import EvaluationError, check_rank_type
from kgem.evaluation.result import EvaluationResult
from kgem.models.scan import DEFAULT_MEMORY_BUDGET, ScoringModel, Side, plan
from kgem.ops.process import retain_freed_memory


class GivenEntities:
    """Each query's candidates are its true entity and its own given negatives: ``head`` and ``tail`` ``(n, K)``
    entity ids, row ``i`` for triple ``i``. Nothing is filtered; ranks lie in ``[1, K + 1]``."""

    sampled = True
    sampler: str | None = "given"

    def __init__(self, head: torch.Tensor, tail: torch.Tensor) -> None:
        if head.ndim != 2 or head.shape != tail.shape:
            raise EvaluationError(f"given head and tail negatives must be two (n, K) id tensors of one shape, got "
                                  f"{tuple(head.shape)} and {tuple(tail.shape)}")
        self.head, self.tail = head, tail
        self.num_negatives: int | None = head.shape[1]

    def units(self, num_entities: int, side: Side, anchor: torch.Tensor, r: torch.Tensor, target: torch.Tensor,
              known: KnownTriples | None, batch_size: int | None, memory_budget_bytes: int) -> Iterator[Unit]:
        """A unit per batch of queries: ``(B, K + 1)`` candidates, the true entity in column 0."""
        negatives = self.head if side == "head" else self.tail
        if len(negatives) != len(target):
            raise EvaluationError(f"{len(negatives)} rows of given negatives for {len(target)} triples")
        # a query's K + 1 candidate ids (int64) lie beside their scores (float32): the scores get a third of the budget
        batch, width = plan(len(target), negatives.shape[1] + 1, max(1, memory_budget_bytes // 3), batch_size)
        for start in range(0, len(target), batch):
            queries = slice(start, start + batch)
            ids = torch.cat([target[queries, None], negatives[queries].long()], 1)
            if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= num_entities):
                raise EvaluationError(f"given {side} negatives of triples {start}..{start + len(ids) - 1} name "
                                      f"entities outside [0, {num_entities})")
            yield Unit(queries, ids, torch.zeros(len(ids), dtype=torch.long), None, len(ids), width)

    def excluded(self, unit: Unit, rows: torch.Tensor, side: Side, anchor: torch.Tensor, r: torch.Tensor,
                 target: torch.Tensor, known: KnownTriples | None, device: torch.device) -> Excluded:
        """Nothing: OGB's negatives are ranked as given."""
        return Excluded()


def evaluate_given(model: ScoringModel, triples: torch.Tensor, *, head_negatives: torch.Tensor,
                   tail_negatives: torch.Tensor, sides: str | Sequence[str] = "both", batch_size: int | None = None,
                   memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET, rank_type: str = "realistic",
                   relation_categories: np.ndarray | None = None, progress: bool = False, fraction: float = 1.0,
                   seed: int = 0) -> EvaluationResult:
    """Rank each triple's hidden head against its ``head_negatives`` and its tail against its ``tail_negatives``
    (``(n, K)`` entity ids, row ``i`` for triple ``i``): OGB's protocol, unfiltered. The result is labelled
    ``sampled`` with ``num_negatives=K`` and ``sampler="given"``; its default rank type, realistic, is OGB's rank.

    ``fraction`` evaluates a seeded random fraction of the triples with their negatives (``fraction_indices``).
    ``batch_size`` queries are scored together (default: as many as fit ``memory_budget_bytes`` with their ``K + 1``
    candidate ids and scores); other arguments as in ``evaluate``.
    """
    check_rank_type(rank_type)
    if len(head_negatives) != len(triples) or len(tail_negatives) != len(triples):
        raise EvaluationError(f"{len(head_negatives)} and {len(tail_negatives)} rows of given head and tail "
                              f"negatives for {len(triples)} triples: one row per triple")
    if fraction != 1:
        chosen_rows = fraction_indices(len(triples), fraction, seed)
        triples, head_negatives, tail_negatives = (triples[chosen_rows], head_negatives[chosen_rows],
                                                   tail_negatives[chosen_rows])
    retain_freed_memory()
    chosen = _parse_sides(sides)
    triples = _check_triples(triples, model, None)
    strategy = GivenEntities(head_negatives, tail_negatives)
    ranks, _ = _rank(model, triples, strategy, chosen, None, batch_size, memory_budget_bytes, progress)
    return _result(model, triples, chosen, ranks, strategy, None, "", rank_type, relation_categories)


def given_evaluator(negatives: GivenNegatives,
                    **options: Any) -> Callable[[ScoringModel, torch.Tensor], EvaluationResult]:
    """``evaluator(model, hrt)`` ranking ``hrt`` by ``evaluate_given`` (``options``) against the negatives given
    with it: the split's own rows when ``hrt`` is that split, else each triple's (``GivenNegatives.rows_for``)."""

    def evaluator(model: ScoringModel, hrt: torch.Tensor) -> EvaluationResult:
        rows = negatives.rows_for(hrt)
        head, tail = (negatives.head, negatives.tail) if rows is None else (negatives.head[rows],
                                                                              negatives.tail[rows])
        return evaluate_given(model, hrt, head_negatives=head, tail_negatives=tail, **options)

    return evaluator
