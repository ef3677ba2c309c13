"""One bounded-memory scan of queries against entities, shared by evaluation, prediction, top triples and
similarity: a batch of ``B`` queries is scored against the candidates one ``(B, width)`` block at a time, the width
derived from one memory budget, so a scan never holds more scores than the budget allows (a block is at least one
candidate wide, whatever the budget).

Tail queries ``(h, r, ?)`` are scored by ``model.score_t(h, r, tails)``, head queries ``(?, r, t)`` by
``model.score_h(r, t, heads)``, over all entities, over a candidate subset shared by the batch ``(C,)`` (sampled
evaluation) or over one subset per query ``(B, C)``. ``RunningTopK`` reduces the blocks to each query's k best
candidates, for prediction and top triples.

A block's scores are the caller's: consumers may overwrite them (masking, counting in place). Drop a block before
asking for the next one, so that only one is alive at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from kgem.errors import ConfigError
from kgem.models.storage import release_entity_rows

DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes of one score block (evaluation.memory_budget_mb is the same knob)
SCORE_BYTES = 4  # one float32 score
MIN_BATCH = 64  # a plan chunks the candidates before it batches fewer queries than this

Side = Literal["head", "tail"]


class ScoringModel(Protocol):
    """What a scan needs of a model (kgem.models satisfy it): scores, higher = more plausible."""

    @property
    def num_entities(self) -> int: ...

    @property
    def training(self) -> bool: ...

    def score_t(self, h: torch.Tensor, r: torch.Tensor, tails: torch.Tensor | None = None) -> torch.Tensor: ...

    def score_h(self, r: torch.Tensor, t: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor: ...

    def train(self, mode: bool = True) -> object: ...


def budget_bytes(memory_budget_bytes: int | None) -> int:
    """The budget in bytes: ``memory_budget_bytes``, or ``DEFAULT_MEMORY_BUDGET`` (read now) for None."""
    budget = DEFAULT_MEMORY_BUDGET if memory_budget_bytes is None else memory_budget_bytes
    if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
        raise ConfigError(f"the memory budget must be a positive number of bytes, got {budget!r}")
    return budget


def budget_elements(memory_budget_bytes: int | None) -> int:
    """How many float32 scores the budget holds (at least one)."""
    return max(1, budget_bytes(memory_budget_bytes) // SCORE_BYTES)


def block_width(num_queries: int, num_candidates: int, memory_budget_bytes: int | None) -> int:
    """The widest block of ``num_queries`` rows within the budget: at least one candidate, at most all of them."""
    return max(1, min(num_candidates, budget_elements(memory_budget_bytes) // max(1, num_queries)))


def plan(num_queries: int, num_candidates: int, memory_budget_bytes: int | None,
         batch_size: int | None = None) -> tuple[int, int]:
    """``(query batch size, block width)`` so that a float32 ``(batch, width)`` block fits the budget.

    Without ``batch_size``, as many queries as fit against every candidate; when fewer than ``MIN_BATCH`` would,
    ``MIN_BATCH`` queries (never more than the budget's scores) scored against narrower blocks instead, which keeps
    the score products large enough to run fast."""
    elements = budget_elements(memory_budget_bytes)
    if batch_size is None:
        batch_size = max(1, min(num_queries, elements // max(1, num_candidates)))
        batch_size = max(batch_size, min(MIN_BATCH, num_queries, elements))
    elif batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    return batch_size, block_width(batch_size, num_candidates, memory_budget_bytes)


def block_ranges(num_queries: int, num_candidates: int, memory_budget_bytes: int | None, *,
                 width: int | None = None, first: int = 0) -> Iterator[tuple[int, int]]:
    """The ``[start, stop)`` candidate ranges of a scan: blocks aligned at multiples of ``width`` (default: the
    widest within the budget), the block holding candidate ``first`` first, then the others in order.

    A given ``width`` must fit the budget for ``num_queries`` rows (or be 1)."""
    widest = block_width(num_queries, num_candidates, memory_budget_bytes)
    if width is None:
        width = widest
    elif width < 1 or (width > widest and width > 1):
        raise ConfigError(f"a block of {num_queries} queries x {width} candidates exceeds the memory budget of "
                          f"{budget_elements(memory_budget_bytes)} scores")
    home = first // width * width if 0 <= first < num_candidates else 0
    starts = range(0, num_candidates, width)
    for start in [home, *(s for s in starts if s != home)] if num_candidates else []:
        yield start, min(start + width, num_candidates)


@dataclass(frozen=True)
class Block:
    """One block of a scan: the scores ``(B, C)`` of the candidates at positions ``[start, stop)`` of the scanned
    candidates, and those candidates' entity ids: ``(C,)``, or ``(B, C)`` for per-query candidates."""

    start: int
    ids: torch.Tensor
    scores: torch.Tensor

    @property
    def stop(self) -> int:
        return self.start + self.scores.shape[1]


def scan(model: ScoringModel, side: Side, anchor: torch.Tensor, r: torch.Tensor, *,
         candidates: torch.Tensor | None = None, memory_budget_bytes: int | None = None, width: int | None = None,
         first: int = 0) -> Iterator[Block]:
    """Score the queries against the candidates, one block within the budget at a time.

    ``side`` is the hidden entity: "tail" scores ``(anchor, r, ?)``, "head" scores ``(?, r, anchor)``.
    ``candidates``: None for every entity (position = entity id), a ``(C,)`` subset shared by the queries, or
    ``(B, C)`` subsets, one per query (scored by ``score_t_sampled``/``score_h_sampled`` where the model has them).
    ``width`` and ``first`` as in ``block_ranges``: e.g. the block holding the true answers first.
    """
    if side not in ("head", "tail"):
        raise ConfigError(f"side must be 'head' or 'tail', got {side!r}")
    if candidates is not None and (candidates.ndim not in (1, 2) or
                                   (candidates.ndim == 2 and len(candidates) != len(anchor))):
        raise ConfigError(f"candidates must be (C,) or ({len(anchor)}, C) entity ids, got {tuple(candidates.shape)}")
    device = anchor.device
    num = model.num_entities if candidates is None else candidates.shape[-1]
    if candidates is not None:
        candidates = candidates.to(device)
    score = _scorer(model, side, anchor, r, per_query=candidates is not None and candidates.ndim == 2)
    for start, stop in block_ranges(len(anchor), num, memory_budget_bytes, width=width, first=first):
        ids = torch.arange(start, stop, device=device) if candidates is None else candidates[..., start:stop]
        yield Block(start, ids, _writable(score(ids)))
        if candidates is None:  # a mapped table's rows of the block back to the page cache (kgem.ops.pages)
            release_entity_rows(model, start, stop)


def _writable(scores: torch.Tensor) -> torch.Tensor:
    """The block as a tensor its consumer may overwrite: a broadcast one (a stride of 0, e.g. a score that ignores
    the candidate) is materialised; any other is the model's fresh result, as it is."""
    broadcast = any(stride == 0 and size > 1 for stride, size in zip(scores.stride(), scores.shape, strict=True))
    return scores.contiguous() if broadcast else scores


def _scorer(model: ScoringModel, side: Side, anchor: torch.Tensor, r: torch.Tensor, *,
            per_query: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """Scores ``(B, C)`` of candidate ids ``(C,)`` (or ``(B, C)`` with ``per_query``) for the hidden ``side``."""
    if per_query:
        sampled = getattr(model, "score_t_sampled" if side == "tail" else "score_h_sampled", None)
        if sampled is not None:
            return (lambda ids: sampled(anchor, r, ids)) if side == "tail" else (lambda ids: sampled(r, anchor, ids))
        one = [_scorer(model, side, anchor[i : i + 1], r[i : i + 1], per_query=False) for i in range(len(anchor))]
        return lambda ids: torch.cat([score(row) for score, row in zip(one, ids, strict=True)])
    if side == "tail":
        return lambda ids: model.score_t(anchor, r, tails=ids)
    return lambda ids: model.score_h(r, anchor, heads=ids)


class RunningTopK:
    """Each query's ``k`` best candidates over blocks of a scan, merged block by block.

    Order and ties: by score, highest first, a NaN above everything (as ``torch.topk`` and ``torch.sort`` order
    them); among equal scores the candidate at the lower position (the earlier column of the scan, the lower entity
    id over all entities) first, in the result and in which of several tied candidates make the cut. The result is
    therefore independent of the blocking: it equals a stable descending sort of the whole score matrix, cut at k.
    """

    def __init__(self, num_queries: int, k: int, device: torch.device | str | None = None) -> None:
        if k < 0:
            raise ConfigError(f"k must not be negative, got {k}")
        self.k, self.num_queries, self.device = k, num_queries, device
        self.values: torch.Tensor | None = None
        self.positions = torch.zeros(num_queries, 0, dtype=torch.int64, device=device)

    def add(self, scores: torch.Tensor, start: int = 0, positions: torch.Tensor | None = None) -> None:
        """Merge a block ``scores (B, C)`` whose columns are the positions ``start, start + 1, ...``, or a few
        candidates at the given ``positions (B, C)`` (sorted in full: cut a large block with ``block_topk`` first).
        Positions are distinct within a row and from earlier blocks'."""
        if self.k == 0 or scores.shape[1] == 0:
            return
        if positions is None:
            values, found = block_topk(scores, self.k)
            found = found + start
        else:
            values, found = scores, positions
        if self.values is not None:
            values, found = torch.cat([self.values, values], 1), torch.cat([self.positions, found], 1)
        if positions is not None or self.values is not None:
            values, found = best_of(values, found, self.k)
        self.values, self.positions = values, found

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values, positions)``, each ``(B, min(k, candidates seen))``, best first."""
        if self.values is None:
            return torch.zeros(self.num_queries, 0, device=self.device), self.positions
        return self.values, self.positions


def topk(blocks: Iterable[Block], num_queries: int, k: int, *,
         exclude: tuple[torch.Tensor, torch.Tensor] | None = None,
         device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's ``k`` best ``(scores, candidate ids)`` over the blocks of a scan, ordered as ``RunningTopK``
    says. ``exclude``: ``(query row, candidate position)`` pairs scored -inf (e.g. known answers)."""
    best = RunningTopK(num_queries, k, device)
    ids: list[tuple[int, torch.Tensor]] = []
    for block in blocks:
        scores = block.scores
        if exclude is not None:
            rows, cols = within(exclude, block.start, block.stop)
            scores[rows, cols] = float("-inf")
        best.add(scores, block.start)
        ids.append((block.start, block.ids))
        del block, scores  # only one block alive at a time
    values, positions = best.result()
    if not ids:
        return values, positions
    every = torch.cat([i for _, i in sorted(ids, key=lambda x: x[0])], -1)  # the ids by position: few next to a block
    return values, every[positions] if every.ndim == 1 else every.gather(1, positions)


def within(pairs: tuple[torch.Tensor, torch.Tensor], start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(row, position)`` pairs whose position lies in ``[start, stop)``, as (row, column in the block)."""
    rows, positions = pairs
    if start == 0 and (not len(positions) or int(positions.max()) < stop):  # the block holds them all
        return rows, positions
    inside = (positions >= start) & (positions < stop)
    return rows[inside], positions[inside] - start


def block_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best ``(values, columns)`` ``(B, min(k, C))`` of each row of ``scores``, ordered as ``RunningTopK``
    says (lower column first among ties).

    ``torch.topk`` finds them, in one pass, up to the tied candidates at the k-th place; only where more candidates
    tie there than there are places left are the lowest columns among them looked up, row by row."""
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1)
    values, cols = top.values, top.indices
    if k == 0:
        return values, cols
    kth = values[:, -1:]
    nan = bool(kth.isnan().any())
    places = _same(values, kth, nan).sum(1)
    crowded = torch.nonzero(_same(scores, kth, nan).sum(1) > places).squeeze(1)
    for row in crowded.tolist():  # more ties at the k-th place than places: take the lowest columns
        keep = ~_same(values[row], kth[row], nan)
        ties = torch.nonzero(_same(scores[row], kth[row], nan)).squeeze(1)[: k - int(keep.sum())]
        cols[row] = torch.cat([cols[row][keep], ties])
    return _ordered(scores.gather(1, cols), cols)


def best_of(values: torch.Tensor, positions: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best of each row of ``values (B, N)`` (all candidates of a merge, few), with their ``positions``,
    ordered by value, highest first, then by position."""
    values, positions = _ordered(values, positions)
    return values[:, :k], positions[:, :k]


def _ordered(values: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row sorted by value (highest and NaN first), then by position: by position, then stably by value."""
    by_position = positions.argsort(1)
    values, positions = values.gather(1, by_position), positions.gather(1, by_position)
    by_value = values.sort(dim=1, descending=True, stable=True).indices
    return values.gather(1, by_value), positions.gather(1, by_value)


def _same(x: torch.Tensor, value: torch.Tensor, nan: bool) -> torch.Tensor:
    """``x == value`` with NaN equal to NaN (as in a sort) when ``nan`` says a NaN value is possible."""
    equal = x == value
    return equal | (x.isnan() & value.isnan()) if nan else equal
