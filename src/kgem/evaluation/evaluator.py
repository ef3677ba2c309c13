"""Rank-based link-prediction evaluation: batched over queries, chunked over entities, filtered by masking.

A query is a triple with one side hidden: ``(h, r, ?)`` ("tail") or ``(?, r, t)`` ("head"). Its true answer is ranked
against every entity (``evaluate``) or against sampled entities (``evaluate_sampled``). In the filtered setting,
candidates forming another known true triple are masked out of the ranking (Bordes et al. 2013).

Memory: a query batch scores one entity chunk at a time, a ``(B, chunk)`` float32 block that stays within
``memory_budget_bytes`` (plus a few same-sized boolean temporaries; the model's own intermediates are its concern).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from kgem.data.known import KnownTriples
from kgem.evaluation.ranks import EvaluationError, RankCounts, Ranks, check_rank_type
from kgem.evaluation.result import EvaluationResult
from kgem.ops.process import retain_freed_memory

DEFAULT_MEMORY_BUDGET = 256 * 2**20
MIN_BATCH = 64  # below this many queries per batch, chunk the entities instead of shrinking the batch further
MIN_SAMPLED_BATCH = 1024


class ScoringModel(Protocol):
    """What evaluation needs of a model (kgem.models satisfy it): scores, higher = more plausible."""

    @property
    def num_entities(self) -> int: ...

    @property
    def training(self) -> bool: ...

    def score_t(self, h: torch.Tensor, r: torch.Tensor, tails: torch.Tensor | None = None) -> torch.Tensor: ...

    def score_h(self, r: torch.Tensor, t: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor: ...

    def train(self, mode: bool = True) -> object: ...


def _parse_sides(sides: str | Sequence[str]) -> tuple[str, ...]:
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


def _score(model: ScoringModel, side: str, anchor: torch.Tensor, r: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Scores ``(B, C)`` of candidates ``ids`` for the hidden ``side``; ``anchor`` is the other, given entity."""
    return model.score_t(anchor, r, tails=ids) if side == "tail" else model.score_h(r, anchor, heads=ids)


def _filter_pairs(known: KnownTriples | None, side: str, anchor: torch.Tensor, r: torch.Tensor,
                  target: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Known answers to filter out as ``(row in batch, entity)`` pairs on ``device``. They include a known true
    answer: excluding it sets its score to the true score, which it is, and ``_rank_full_batch`` counts it back,
    cheaper than selecting it out of millions of pairs."""
    if known is None:
        return None
    rows, ids = known.tail_pairs(anchor, r) if side == "tail" else known.head_pairs(r, anchor)
    return rows.to(device), ids.to(device)


def _chunk_pairs(pairs: tuple[torch.Tensor, torch.Tensor] | None, start: int,
                 stop: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The filter pairs whose entity lies in [start, stop), as (row, column in the chunk)."""
    if pairs is None:
        return None, None
    rows, ids = pairs
    if start == 0 and (not len(ids) or int(ids.max()) < stop):  # one chunk holds every entity: all pairs, as they are
        return rows, ids
    inside = (ids >= start) & (ids < stop)
    return rows[inside], ids[inside] - start


def _views(triples: torch.Tensor, sides: tuple[str, ...]) -> Iterator[tuple[str, torch.Tensor, torch.Tensor,
                                                                           torch.Tensor]]:
    """Per side: ``(side, anchor, r, target)`` where target is the hidden entity and anchor the given one."""
    h, r, t = triples.T.contiguous()  # contiguous rows for searchsorted
    for side in sides:
        yield (side, h, r, t) if side == "tail" else (side, t, r, h)


def plan_full(num_queries: int, num_entities: int, memory_budget_bytes: int,
              batch_size: int | None = None) -> tuple[int, int]:
    """``(query batch size, entity chunk size)`` so that a float32 ``(batch, chunk)`` block fits the budget."""
    elements = max(1, memory_budget_bytes // 4)
    if batch_size is None:
        batch_size = max(1, min(num_queries, elements // num_entities))
        batch_size = max(batch_size, min(MIN_BATCH, num_queries))  # many entities: chunk them, keep batches useful
    return batch_size, max(1, min(num_entities, elements // batch_size))


def _full_batches(target: torch.Tensor, batch_size: int, chunk: int) -> tuple[torch.Tensor, list[slice]]:
    """Query order and batches of it whose true answers all lie in one entity chunk.

    Each batch first scores the chunk holding its true answers and takes the true scores out of that block, so the
    true score and the scores it is compared with come from the same ``score_t``/``score_h`` call: a tie is a tie.
    """
    order = torch.argsort(target, stable=True)
    _, sizes = torch.unique_consecutive(target[order] // chunk, return_counts=True)
    starts = torch.cumsum(sizes, 0) - sizes
    batches = [slice(s, min(s + batch_size, start + size)) for start, size in zip(starts.tolist(), sizes.tolist())
               for s in range(start, start + size, batch_size)]
    return order, batches


def _rank_full_batch(model: ScoringModel, side: str, anchor: torch.Tensor, r: torch.Tensor, target: torch.Tensor,
                     known: KnownTriples | None, chunk: int, device: torch.device) -> RankCounts:
    """Counts of one query batch (CPU ids, true answers in one chunk) against every entity, chunk by chunk."""
    batch, num_entities = len(target), model.num_entities
    home = int(target[0]) // chunk * chunk
    pairs = _filter_pairs(known, side, anchor, r, target, device)
    anchor, r, target = anchor.to(device), r.to(device), target.to(device)
    rows = torch.arange(batch, device=device)
    counts = RankCounts.zeros(batch, device)
    true = torch.empty(0)
    for start in [home, *(s for s in range(0, num_entities, chunk) if s != home)]:  # the home chunk first
        stop = min(start + chunk, num_entities)
        scores = _score(model, side, anchor, r, torch.arange(start, stop, device=device))  # (B, C)
        if start == home:
            true = scores[rows, target - start]  # (B,)
        counts.add_excluding(true, scores, *_chunk_pairs(pairs, start, stop), in_place=True)
    if known is not None:  # a known true answer was excluded with the other known answers (its score unchanged):
        kept = _known(known, side, anchor, r, target).to(device).long()  # count it again as a tie and a candidate
        counts.equal += kept
        counts.candidates += kept
    return counts


def _known(known: KnownTriples, side: str, anchor: torch.Tensor, r: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Whether each query's own triple is among the known ones."""
    h, t = (anchor, target) if side == "tail" else (target, anchor)
    return known.contains(torch.stack([h, r, t], 1).cpu())


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


def evaluate(model: ScoringModel, triples: torch.Tensor, *, known: KnownTriples | None = None,
             sides: str | Sequence[str] = "both", batch_size: int | None = None,
             memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET, rank_type: str = "realistic",
             relation_categories: np.ndarray | None = None, filter_splits: str = "",
             progress: bool = False, num_negatives: int | None = None, fraction: float = 1.0,
             seed: int = 0) -> EvaluationResult:
    """Rank each triple's hidden head and/or tail against all ``model.num_entities`` entities.

    ``known``: the true triples to filter out (e.g. ``dataset.known()``); ``None`` gives raw ranks.
    ``filter_splits`` only labels the result (e.g. "train+valid+test"). ``rank_type`` is the default of the result;
    all three rank types are kept. ``relation_categories`` (one per relation id) enables ``result.per_category()``.
    Runs under ``model.eval()`` and ``torch.no_grad()``; the model's train/eval mode is restored afterwards.

    Cheaper estimates, as DGL-KE's ``neg_sample_size_eval`` and ``eval_percent``: ``num_negatives`` ranks against
    that many sampled entities instead (``evaluate_sampled``; ``num_entities`` or more is the full ranking), and
    ``fraction`` evaluates a random fraction of the triples (``fraction_indices``); both are drawn from ``seed``.
    """
    if fraction != 1:
        triples = triples[fraction_indices(len(triples), fraction, seed)]
    if num_negatives is not None and num_negatives < model.num_entities:
        return evaluate_sampled(model, triples, num_negatives=num_negatives, known=known, seed=seed, sides=sides,
                                batch_size=batch_size, memory_budget_bytes=memory_budget_bytes, rank_type=rank_type,
                                relation_categories=relation_categories, filter_splits=filter_splits,
                                progress=progress)
    check_rank_type(rank_type)
    retain_freed_memory()
    chosen = _parse_sides(sides)
    triples = _check_triples(triples, model, known)
    batch_size, chunk = plan_full(len(triples), model.num_entities, memory_budget_bytes, batch_size)
    device, parts = model_device(model), []
    with eval_mode(model), tqdm(total=len(triples) * len(chosen), disable=not progress, unit="query") as bar:
        for side, anchor, r, target in _views(triples, chosen):
            order, batches = _full_batches(target, batch_size, chunk)
            counts = []
            for batch in batches:
                idx = order[batch]
                counts.append(_rank_full_batch(model, side, anchor[idx], r[idx], target[idx], known, chunk, device))
                bar.update(len(idx))
            ranks = Ranks.cat([c.ranks().cpu() for c in counts])
            parts.append(ranks[torch.argsort(order)])  # back to the order of ``triples``
    query_side, query_relation = _per_query(triples, chosen)
    return EvaluationResult(Ranks.cat(parts), query_side, query_relation, num_entities=model.num_entities,
                            filtered=known is not None, filter_splits=filter_splits, rank_type=rank_type,
                            relation_categories=relation_categories)


def _rank_sampled_batch(model: ScoringModel, side: str, anchor: torch.Tensor, r: torch.Tensor, target: torch.Tensor,
                        known: KnownTriples | None, negatives: torch.Tensor, device: torch.device) -> RankCounts:
    """Counts of one query batch (CPU ids) against shared sampled ``negatives`` (sorted, distinct) plus its answer."""
    batch = len(target)
    ids = torch.unique(torch.cat([negatives, target]))  # sorted (C,), C <= K + B
    col = torch.searchsorted(ids, target)  # (B,) column of each query's true answer
    mask = ~torch.isin(ids, negatives).expand(batch, -1)  # (B, C): other queries' answers are not candidates
    rows = torch.arange(batch)
    pairs = _filter_pairs(known, side, anchor, r, target, torch.device("cpu"))
    if pairs is not None:  # map known entities to their columns in ids, if sampled
        pos = torch.searchsorted(ids, pairs[1]).clamp(max=len(ids) - 1)
        hit = ids[pos] == pairs[1]
        mask[pairs[0][hit], pos[hit]] = True
    mask[rows, col] = False  # the true answer is a candidate, once (even if it was also sampled or is known)
    scores = _score(model, side, anchor.to(device), r.to(device), ids.to(device))  # (B, C)
    true = scores[rows.to(device), col.to(device)]  # the same call as the negatives' scores: exact ties
    return RankCounts.zeros(batch, device).add(true, scores, mask)


def evaluate_sampled(model: ScoringModel, triples: torch.Tensor, *, num_negatives: int,
                     known: KnownTriples | None = None, seed: int = 0, sides: str | Sequence[str] = "both",
                     batch_size: int | None = None,
                     memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET, rank_type: str = "realistic",
                     relation_categories: np.ndarray | None = None, filter_splits: str = "",
                     progress: bool = False) -> EvaluationResult:
    """Rank each hidden head/tail against ``num_negatives`` entities drawn uniformly without replacement.

    The negatives are shared by all queries of a batch (drawn afresh per batch and side from ``seed``), so a batch is
    one ``(B, K)``-like block. Per query, negatives that are known true (filtered setting) or equal to the true answer
    are dropped, so ranks lie in ``[1, num_negatives + 1]``. Sampled ranks are smaller (better) than full ranks and
    not comparable with them; the result is labelled ``sampled=True`` with ``num_negatives``.
    Other arguments as in ``evaluate``.
    """
    check_rank_type(rank_type)
    chosen = _parse_sides(sides)
    triples = _check_triples(triples, model, known)
    if not 1 <= num_negatives <= model.num_entities:
        raise EvaluationError(f"num_negatives must lie in [1, {model.num_entities}], got {num_negatives}")
    if batch_size is None:  # a batch scores up to B * (K + B): its own true answers too, so keep B near K
        elements = max(1, memory_budget_bytes // 4)
        fits = int((math.sqrt(num_negatives**2 + 4 * elements) - num_negatives) / 2)
        batch_size = max(1, min(fits, max(num_negatives, MIN_SAMPLED_BATCH)))
    generator = torch.Generator().manual_seed(seed)
    device, parts = model_device(model), []
    with eval_mode(model), tqdm(total=len(triples) * len(chosen), disable=not progress, unit="query") as bar:
        for side, anchor, r, target in _views(triples, chosen):
            counts = []
            for start in range(0, len(triples), batch_size):
                batch = slice(start, start + batch_size)
                negatives = torch.randperm(model.num_entities, generator=generator)[:num_negatives].sort().values
                counts.append(_rank_sampled_batch(model, side, anchor[batch], r[batch], target[batch], known,
                                                  negatives, device))
                bar.update(len(target[batch]))
            parts.append(Ranks.cat([c.ranks().cpu() for c in counts]))
    query_side, query_relation = _per_query(triples, chosen)
    return EvaluationResult(Ranks.cat(parts), query_side, query_relation, num_entities=model.num_entities,
                            filtered=known is not None, filter_splits=filter_splits, rank_type=rank_type,
                            sampled=True, num_negatives=num_negatives, relation_categories=relation_categories)
