"""Rank-based link-prediction evaluation: one evaluator, batched over queries, scanned over candidates, filtered by
masking.

A query is a triple with one side hidden: ``(h, r, ?)`` ("tail") or ``(?, r, t)`` ("head"). Its true answer is ranked
against the candidates of a strategy (``kgem.evaluation.candidates``): every entity (``evaluate``) or sampled entities
(``evaluate_sampled``, or ``evaluate`` with ``num_negatives``: uniformly, or in proportion to weights such as the
entities' degrees). In the filtered setting, candidates forming another known true triple are masked out of the
ranking (Bordes et al. 2013).

Memory: a query batch is scored by the entity scan (``kgem.models.scan``), one ``(B, width)`` float32 block at a time
within ``memory_budget_bytes`` (plus a few same-sized boolean temporaries; the model's own intermediates are its
concern), and each block is counted (``RankCounts``) as it comes; a degree-proportional sample also weighs the
counted candidates (``kgem.evaluation.estimate.WeightedCounts``, in cache-sized row blocks).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from tqdm.auto import tqdm

from kgem.data.known import KnownSplits, KnownTriples
from kgem.evaluation.candidates import (
    MIN_SAMPLED_BATCH,
    AllEntities,
    Candidates,
    DegreeSampledEntities,
    Excluded,
    SampledEntities,
    Unit,
    check_weights,
    known_answer,
    known_pairs,
)
from kgem.evaluation.estimate import BeaterEstimates, WeightedCounts
from kgem.evaluation.ranks import EvaluationError, RankCounts, Ranks, check_rank_type
from kgem.evaluation.result import EvaluationResult
from kgem.models.scan import DEFAULT_MEMORY_BUDGET, MIN_BATCH, ScoringModel, Side, plan, scan
from kgem.ops.process import retain_freed_memory

__all__ = ["DEFAULT_MEMORY_BUDGET", "MIN_BATCH", "MIN_SAMPLED_BATCH", "ScoringModel", "eval_mode", "evaluate",
           "evaluate_sampled", "fraction_indices", "model_device", "plan_full"]


def _parse_sides(sides: str | Sequence[str]) -> tuple[Side, ...]:
    chosen = {"both": ("head", "tail")}.get(sides, (sides,)) if isinstance(sides, str) else tuple(sides)
    if not chosen or any(s not in ("head", "tail") for s in chosen):
        raise EvaluationError(f"sides must be 'both', 'head', 'tail' or a list of 'head'/'tail', got {sides!r}")
    return tuple(s for s in ("head", "tail") if s in chosen)


def _check_triples(triples: torch.Tensor, model: ScoringModel, known: KnownTriples | None) -> torch.Tensor:
    if triples.ndim != 2 or triples.shape[1] != 3:
        raise EvaluationError(f"expected triples of shape (n, 3), got {tuple(triples.shape)}")
    triples = triples.long().cpu()
    entities = triples[:, [0, 2]]
    if len(triples) and (entities.min() < 0 or entities.max() >= model.num_entities):
        raise EvaluationError(f"entity ids must lie in [0, {model.num_entities}); got {int(entities.min())}.."
                              f"{int(entities.max())}")
    if known is not None and known.num_entities != model.num_entities:
        raise EvaluationError(f"known triples index {known.num_entities} entities, the model {model.num_entities}")
    if len(triples) and (triples[:, 1].min() < 0 or (known is not None and triples[:, 1].max() >= known.num_relations)):
        raise EvaluationError(f"relation ids must lie in [0, num_relations); got {int(triples[:, 1].min())}.."
                              f"{int(triples[:, 1].max())}")
    return triples


@contextmanager
def eval_mode(model: ScoringModel) -> Iterator[None]:
    """``model.eval()`` and ``torch.no_grad()`` for the duration; the previous train/eval mode is restored after."""
    was_training = model.training
    model.train(False)
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def model_device(model: ScoringModel) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            return tensor.device
    return torch.device("cpu")


def plan_full(num_queries: int, num_entities: int, memory_budget_bytes: int,
              batch_size: int | None = None) -> tuple[int, int]:
    """``(query batch size, entity chunk size)`` so that a float32 ``(batch, chunk)`` block fits the budget: the
    scan's plan (``kgem.models.scan.plan``) over every entity."""
    return plan(num_queries, num_entities, memory_budget_bytes, batch_size)


def _views(triples: torch.Tensor, sides: tuple[Side, ...]) -> Iterator[tuple[Side, torch.Tensor, torch.Tensor,
                                                                            torch.Tensor]]:
    """Per side: ``(side, anchor, r, target)`` where target is the hidden entity and anchor the given one."""
    h, r, t = triples.T.contiguous()  # contiguous rows for searchsorted
    for side in sides:
        yield (side, h, r, t) if side == "tail" else (side, t, r, h)


def _home_batches(cols: torch.Tensor, batch_size: int, width: int) -> tuple[torch.Tensor, list[slice]]:
    """Query order and batches of it whose true answers (at positions ``cols`` among the candidates) all lie in one
    block of ``width`` candidates.

    Each batch first scores the block holding its true answers and takes the true scores out of that block, so the
    true score and the scores it is compared with come from the same ``score_t``/``score_h`` call: a tie is a tie.
    Where the first block holds every true answer, the queries keep their order.
    """
    if not len(cols) or int(cols.max()) < width:
        return torch.arange(len(cols)), [slice(s, s + batch_size) for s in range(0, len(cols), batch_size)]
    order = torch.argsort(cols, stable=True)
    _, sizes = torch.unique_consecutive(cols[order] // width, return_counts=True)
    starts = torch.cumsum(sizes, 0) - sizes
    batches = [slice(s, min(s + batch_size, start + size)) for start, size in zip(starts.tolist(), sizes.tolist())
               for s in range(start, start + size, batch_size)]
    return order, batches


def _rank_batch(model: ScoringModel, side: Side, anchor: torch.Tensor, r: torch.Tensor, cols: torch.Tensor,
                ids: torch.Tensor | None, excluded: Excluded, width: int, memory_budget_bytes: int,
                device: torch.device, scale: torch.Tensor | None = None) -> tuple[RankCounts, WeightedCounts | None]:
    """Counts of one query batch (true answers at ``cols``, all in one block) against its candidates, block by block
    as the scan yields them, the home block first; with ``scale`` (a weighted sample's, ``Unit.scale``) also the
    weighted counts of the drawn candidates that beat or tie with each true answer."""
    home = int(cols[0])
    anchor, r, cols = anchor.to(device), r.to(device), cols.to(device)
    rows = torch.arange(len(cols), device=device)
    counts = RankCounts.zeros(len(cols), device)
    weighted = None if scale is None else WeightedCounts.zeros(len(cols), device)
    scale = None if scale is None else scale.to(device)
    true = torch.empty(0)
    for block in scan(model, side, anchor, r, candidates=ids, memory_budget_bytes=memory_budget_bytes, width=width,
                      first=home):
        scores = block.scores  # (B, C)
        if block.start <= home < block.stop:
            true = scores[rows, cols - block.start]  # (B,)
        pairs = excluded.within(block.start, block.stop)
        if weighted is not None and scale is not None:  # before the count, which may overwrite the scores
            weighted.add(true, scores, scale[block.start : block.stop], *_with_own(pairs, cols, block.start,
                                                                                   block.stop))
        counts.add_excluding(true, scores, *pairs, in_place=True)
        del block, scores  # one block alive at a time
    if excluded.restore is not None:  # true answers excluded with the other known answers (their scores unchanged):
        counts.equal += excluded.restore  # count them again as a tie and a candidate
        counts.candidates += excluded.restore
    return counts, weighted


def _with_own(pairs: tuple[torch.Tensor | None, torch.Tensor | None], cols: torch.Tensor, start: int,
              stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The excluded ``(row, column)`` pairs of a block plus each query's own answer where it lies in the block: the
    candidates a weighted count leaves out (a query's answer is never among its excluded pairs)."""
    inside = torch.nonzero((cols >= start) & (cols < stop)).flatten()
    own_rows, own_cols = inside, cols[inside] - start
    rows, found = pairs
    if rows is None or found is None:
        return own_rows, own_cols
    return torch.cat([rows.to(own_rows), own_rows]), torch.cat([found.to(own_cols), own_cols])


def _rank_unit(model: ScoringModel, strategy: Candidates, unit: Unit, side: Side, anchor: torch.Tensor,
               r: torch.Tensor, target: torch.Tensor, known: KnownTriples | None, memory_budget_bytes: int,
               device: torch.device, bar: tqdm,
               min_weight: float) -> Iterator[tuple[torch.Tensor, Ranks, BeaterEstimates | None]]:
    """``(query positions, ranks, beater estimates)`` of the unit's queries, batch by batch; the estimates only
    for a weighted sample (``unit.scale``)."""
    order, batches = _home_batches(unit.cols, unit.batch, unit.width)
    for batch in batches:
        rows = order[batch]  # positions within the unit
        queries = rows + unit.queries.start
        a, rb, tb = anchor[queries], r[queries], target[queries]
        excluded = strategy.excluded(unit, rows, side, a, rb, tb, known, device)
        counts, weighted = _rank_batch(model, side, a, rb, unit.cols[rows], unit.ids, excluded, unit.width,
                                       memory_budget_bytes, device, unit.scale)
        bar.update(len(rows))
        beaters = None if weighted is None else weighted.estimates(unit.threshold, min_weight)
        yield queries, counts.ranks().cpu(), beaters


def _rank(model: ScoringModel, triples: torch.Tensor, strategy: Candidates, chosen: tuple[Side, ...],
          known: KnownTriples | None, batch_size: int | None, memory_budget_bytes: int,
          progress: bool) -> tuple[Ranks, BeaterEstimates | None]:
    """The ranks of every query: all head queries (in triple order), then all tail queries; and, for a weighted
    sample, their beater estimates in the same order."""
    device, parts, estimates = model_device(model), [], []
    min_weight = getattr(strategy, "min_weight", 1.0)
    with eval_mode(model), tqdm(total=len(triples) * len(chosen), disable=not progress, unit="query") as bar:
        for side, anchor, r, target in _views(triples, chosen):
            positions, ranks, beaters = [], [], []
            for unit in strategy.units(model.num_entities, side, anchor, r, target, known, batch_size,
                                       memory_budget_bytes):
                for queries, batch_ranks, batch_beaters in _rank_unit(model, strategy, unit, side, anchor, r, target,
                                                                      known, memory_budget_bytes, device, bar,
                                                                      min_weight):
                    positions.append(queries)
                    ranks.append(batch_ranks)
                    if batch_beaters is not None:
                        beaters.append(batch_beaters)
            if ranks:
                order = torch.argsort(torch.cat(positions))  # back to the triples' order
                parts.append(Ranks.cat(ranks)[order])
                if beaters:
                    estimates.append(BeaterEstimates.cat(beaters, min_weight)[order])
    weighted = isinstance(strategy, DegreeSampledEntities)
    return Ranks.cat(parts), BeaterEstimates.cat(estimates, min_weight) if weighted else None


def _per_query(triples: torch.Tensor, sides: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The side and relation of every query: all head queries (in triple order), then all tail queries."""
    return np.repeat(np.asarray(sides), len(triples)), np.tile(triples[:, 1].numpy(), len(sides))


def fraction_indices(num_triples: int, fraction: float, seed: int = 0) -> torch.Tensor:
    """The sorted ids of a random ``fraction`` of ``num_triples`` triples, drawn from ``seed``: the nearest whole
    number of them, at least one (all of them, in order, for 1)."""
    if not 0 < fraction <= 1:
        raise EvaluationError(f"fraction must lie in (0, 1], got {fraction}")
    if fraction == 1:
        return torch.arange(num_triples)
    count = min(num_triples, max(1, math.floor(fraction * num_triples + 0.5)))
    return torch.randperm(num_triples, generator=torch.Generator().manual_seed(seed))[:count].sort().values


def evaluate(model: ScoringModel, triples: torch.Tensor, *, known: KnownTriples | KnownSplits | None = None,
             sides: str | Sequence[str] = "both", batch_size: int | None = None,
             memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET, rank_type: str = "realistic",
             relation_categories: np.ndarray | None = None, filter_splits: str = "",
             progress: bool = False, num_negatives: int | None = None, fraction: float = 1.0,
             seed: int = 0, negative_weights: torch.Tensor | None = None) -> EvaluationResult:
    """Rank each triple's hidden head and/or tail against all ``model.num_entities`` entities.

    ``known``: the true triples to filter out (e.g. ``dataset.known()``; ``KnownSplits`` indexes only those the
    evaluated queries need); ``None`` gives raw ranks.
    ``filter_splits`` only labels the result (e.g. "train+valid+test"). ``rank_type`` is the default of the result;
    all three rank types are kept. ``relation_categories`` (one per relation id) enables ``result.per_category()``.
    ``batch_size`` queries are scored together (default: as many as fit ``memory_budget_bytes``).
    Runs under ``model.eval()`` and ``torch.no_grad()``; the model's train/eval mode is restored afterwards.

    Cheaper estimates, as DGL-KE's ``neg_sample_size_eval`` and ``eval_percent``: ``num_negatives`` ranks against
    that many sampled entities instead (``evaluate_sampled``; ``num_entities`` or more is the full ranking), and
    ``fraction`` evaluates a random fraction of the triples (``fraction_indices``); both are drawn from ``seed``.
    ``negative_weights`` draws the ``num_negatives`` in proportion to them instead of uniformly (``evaluate_sampled``'s
    ``weights``, e.g. ``degree_weights(dataset.train.hrt, num_entities)``); a full ranking has no use for them.
    """
    if fraction != 1:
        triples = triples[fraction_indices(len(triples), fraction, seed)]
    if num_negatives is not None and num_negatives < model.num_entities:
        return evaluate_sampled(model, triples, num_negatives=num_negatives, known=known, seed=seed, sides=sides,
                                batch_size=batch_size, memory_budget_bytes=memory_budget_bytes, rank_type=rank_type,
                                relation_categories=relation_categories, filter_splits=filter_splits,
                                progress=progress, weights=negative_weights)
    check_rank_type(rank_type)
    retain_freed_memory()
    chosen = _parse_sides(sides)
    known = _indexed(known, triples)
    triples = _check_triples(triples, model, known)
    ranks, _ = _rank(model, triples, AllEntities(), chosen, known, batch_size, memory_budget_bytes, progress)
    return _result(model, triples, chosen, ranks, AllEntities(), known, filter_splits, rank_type, relation_categories)


def evaluate_sampled(model: ScoringModel, triples: torch.Tensor, *, num_negatives: int,
                     known: KnownTriples | KnownSplits | None = None, seed: int = 0,
                     sides: str | Sequence[str] = "both", batch_size: int | None = None,
                     memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET, rank_type: str = "realistic",
                     relation_categories: np.ndarray | None = None, filter_splits: str = "",
                     progress: bool = False, weights: torch.Tensor | None = None) -> EvaluationResult:
    """Rank each hidden head/tail against ``num_negatives`` entities drawn uniformly without replacement, or, with
    ``weights``, in proportion to them.

    The negatives are shared by all queries of a batch (drawn afresh per batch and side from ``seed``), so a batch is
    one ``(B, K)``-like block. Per query, negatives that are known true (filtered setting) or equal to the true answer
    are dropped, so ranks lie in ``[1, num_negatives + 1]``. Sampled ranks are smaller (better) than full ranks and
    not comparable with them; the result is labelled ``sampled=True`` with ``num_negatives``, and
    ``result.estimate()`` turns them into estimates of the full-ranking metrics with intervals
    (``kgem.evaluation.estimate``).

    ``weights``: a float ``(num_entities,)`` tensor of positive sampling weights, e.g. training degree + 1
    (``kgem.evaluation.candidates.degree_weights``). The negatives are then drawn by priority sampling
    (``DegreeSampledEntities``): popular entities, the usual competitors of a true answer, are drawn more often, and
    each drawn one stands for ``max(1, τ / w)`` entities of the full ranking. The result records the sampler
    ("degree") and, per query, the estimated number of full-ranking candidates that beat the true answer, its
    variance estimate and the threshold (``result.beaters``), from which ``result.estimate()`` gives the full-ranking
    metrics with their intervals. The sampled ranks are the usual ones, against the drawn candidates.
    Other arguments as in ``evaluate``; ``batch_size`` is the number of queries that share one draw.
    """
    check_rank_type(rank_type)
    chosen = _parse_sides(sides)
    known = _indexed(known, triples)
    triples = _check_triples(triples, model, known)
    if not 1 <= num_negatives <= model.num_entities:
        raise EvaluationError(f"num_negatives must lie in [1, {model.num_entities}], got {num_negatives}")
    strategy = SampledEntities(num_negatives, seed) if weights is None else DegreeSampledEntities(
        num_negatives, seed, check_weights(weights, model.num_entities))
    ranks, beaters = _rank(model, triples, strategy, chosen, known, batch_size, memory_budget_bytes, progress)
    full = _full_candidates(triples, chosen, known, model.num_entities)
    return _result(model, triples, chosen, ranks, strategy, known, filter_splits, rank_type, relation_categories,
                   full, beaters)


def _indexed(known: KnownTriples | KnownSplits | None, triples: torch.Tensor) -> KnownTriples | None:
    """The index of the true triples that filtering ``triples``' queries needs."""
    if known is None or not (triples.ndim == 2 and triples.shape[1] == 3):  # bad shapes: _check_triples says so
        return known if isinstance(known, KnownTriples) else None
    return known.for_queries(triples.cpu())


def _full_candidates(triples: torch.Tensor, chosen: tuple[Side, ...], known: KnownTriples | None,
                     num_entities: int) -> torch.Tensor:
    """Each query's candidates in the full ranking, its true answer included: every entity but its other known
    answers (filtered setting), in the order of ``_rank``."""
    parts = []
    for side, anchor, r, target in _views(triples, chosen):
        count = torch.full((len(target),), num_entities, dtype=torch.int64)
        if known is not None:
            rows, _ = known_pairs(known, side, anchor, r)
            own = known_answer(known, side, anchor, r, target).long()
            count -= torch.bincount(rows, minlength=len(target)) - own
        parts.append(count)
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)


def _result(model: ScoringModel, triples: torch.Tensor, chosen: tuple[Side, ...], ranks: Ranks,
            strategy: Candidates, known: KnownTriples | None, filter_splits: str, rank_type: str,
            relation_categories: np.ndarray | None, full_candidates: torch.Tensor | None = None,
            beaters: BeaterEstimates | None = None) -> EvaluationResult:
    query_side, query_relation = _per_query(triples, chosen)
    return EvaluationResult(ranks, query_side, query_relation, num_entities=model.num_entities,
                            filtered=known is not None, filter_splits=filter_splits, rank_type=rank_type,
                            sampled=strategy.sampled, num_negatives=strategy.num_negatives,
                            relation_categories=relation_categories, reciprocal=getattr(model, "inverse", None),
                            full_candidates=full_candidates, sampler=strategy.sampler, beaters=beaters)
