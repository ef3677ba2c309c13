"""Ranks of true answers among scored candidates, with explicit tie semantics: pure functions over score
blocks, realistic ranks by default.

A candidate *beats* the true answer when its score is strictly higher, and *ties* with it when the scores are equal.
With ``better`` candidates that beat it and ``ties`` other candidates that tie with it, the true answer's rank is

- optimistic  = better + 1          (it wins every tie),
- pessimistic = better + ties + 1   (it loses every tie; kbc's ``scores >= target`` count),
- realistic   = their mean          (the expected rank under uniformly random tie-breaking; the default).

Optimistic ranks reward a model that gives every entity the same score; pessimistic ranks punish it; realistic
ranks give it exactly the rank of random guessing. Candidates that are masked out (known true triples in the
filtered setting) count neither as better, nor as ties, nor as candidates. The true answer itself is never masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from kgem.errors import EvaluationError
from kgem.ops import native
from kgem.ops.process import row_blocks

RankType = Literal["optimistic", "pessimistic", "realistic"]
RANK_TYPES: tuple[RankType, ...] = ("optimistic", "pessimistic", "realistic")


def check_rank_type(rank_type: str) -> RankType:
    """``rank_type`` if it is one of RANK_TYPES, else an EvaluationError listing them."""
    if rank_type not in RANK_TYPES:
        raise EvaluationError(f"unknown rank type {rank_type!r}; choose from {', '.join(RANK_TYPES)}")
    return rank_type


@dataclass(frozen=True)
class Ranks:
    """Per-query ranks (1 = best) of all three tie types, as float64 ``(n,)``, and the candidates counted."""

    optimistic: torch.Tensor
    pessimistic: torch.Tensor
    realistic: torch.Tensor
    num_candidates: torch.Tensor  # (n,) int64, the true answer included

    def __len__(self) -> int:
        return len(self.realistic)

    def get(self, rank_type: str) -> torch.Tensor:
        """The ranks of one tie type."""
        return getattr(self, check_rank_type(rank_type))

    def __getitem__(self, index: torch.Tensor | slice) -> Ranks:
        """The ranks of a subset of the queries (boolean mask, index tensor or slice)."""
        return Ranks(self.optimistic[index], self.pessimistic[index], self.realistic[index],
                     self.num_candidates[index])

    def cpu(self) -> Ranks:
        return Ranks(self.optimistic.cpu(), self.pessimistic.cpu(), self.realistic.cpu(), self.num_candidates.cpu())

    @staticmethod
    def cat(parts: list[Ranks]) -> Ranks:
        """Concatenate the ranks of several query sets (an empty list gives zero queries)."""
        if not parts:
            empty = torch.zeros(0, dtype=torch.float64)
            return Ranks(empty, empty, empty, torch.zeros(0, dtype=torch.int64))
        return Ranks(*(torch.cat([getattr(p, name) for p in parts])
                       for name in ("optimistic", "pessimistic", "realistic", "num_candidates")))


@dataclass
class RankCounts:
    """Integer counts per query, accumulated block by block (e.g. over entity chunks) before ranks are formed.

    ``equal`` counts the candidates whose score equals the true score *including the true answer itself*, so every
    query must see its true answer in exactly one block: ``ties = equal - 1`` and ``pessimistic = better + equal``.
    """

    better: torch.Tensor  # (B,) int64
    equal: torch.Tensor  # (B,) int64, true answer included
    candidates: torch.Tensor  # (B,) int64, true answer included
    nan: torch.Tensor  # () bool: any NaN seen; checked once in ranks() to avoid a device sync per block

    @classmethod
    def zeros(cls, batch: int, device: torch.device | str | None = None) -> RankCounts:
        def zero() -> torch.Tensor:
            return torch.zeros(batch, dtype=torch.int64, device=device)

        return cls(zero(), zero(), zero(), torch.zeros((), dtype=torch.bool, device=device))

    def add(self, true_scores: torch.Tensor, scores: torch.Tensor, mask_out: torch.Tensor | None = None) -> RankCounts:
        """Count one block of candidates: ``true_scores (B,)``, ``scores (B, C)``, ``mask_out`` bool ``(B, C)``.

        ``mask_out`` marks candidates to exclude; it must not mark a query's own true answer. Returns ``self``.
        """
        if mask_out is None:
            return self.add_excluding(true_scores, scores)
        rows, cols = torch.nonzero(mask_out.to(scores.device), as_tuple=True)
        return self.add_excluding(true_scores, scores, rows, cols)

    def add_excluding(self, true_scores: torch.Tensor, scores: torch.Tensor, rows: torch.Tensor | None = None,
                      cols: torch.Tensor | None = None, *, in_place: bool = False) -> RankCounts:
        """``add`` with the excluded candidates as distinct ``(row, column)`` pairs. ``in_place`` lets the count
        use ``scores`` as scratch memory (its values may be destroyed).

        With the native kernels (``kgem.ops.native.count_ranks``) a float32 CPU block is counted in one read. Otherwise
        counting runs on torch floats: ``s = sign(scores - true)`` gives ``better - worse = sum(s)`` and
        ``better + worse = sum(s^2)`` (a squared L2 norm), two reductions that vectorise and read the block
        without writing it, where comparisons that produce boolean blocks and count them cost three times as much;
        the block is processed in row blocks that stay in the cache between passes (``kgem.ops.process.row_blocks``).
        The counts are exact (integers below 2^24 in float32, float64 beyond). NaN scores among the counted
        candidates (or a NaN true score) are recorded for ``ranks`` to report.
        """
        if scores.ndim != 2 or true_scores.shape != scores.shape[:1]:
            raise EvaluationError(f"expected true scores (B,) and scores (B, C), got {tuple(true_scores.shape)} "
                                  f"and {tuple(scores.shape)}")
        if rows is None or cols is None or not len(rows):
            rows = cols = None
        else:
            _check_pairs(rows, cols, *scores.shape)
        if native.usable(scores, true_scores):
            return self._add_native(true_scores, scores, rows, cols)
        batch, width = scores.shape
        work = scores if in_place else scores.clone()
        removed: torch.Tensor | int = 0
        if rows is not None and cols is not None:
            # an excluded candidate scores as the true answer (neither better nor worse) ...
            work.index_put_((rows, cols), true_scores[rows])
            removed = torch.bincount(rows, minlength=batch)  # ... and is taken out of the ties and the candidates
        exact = torch.float32 if work.dtype == torch.float32 and width < 2**24 else torch.float64
        difference, nonzero = work.new_empty(batch, dtype=exact), work.new_empty(batch, dtype=exact)
        for rows_in_cache in row_blocks(batch, width):  # only the first of the four passes reads memory
            sign = work[rows_in_cache].sub_(true_scores[rows_in_cache, None])
            self.nan |= _any_nan(sign)  # before sign_, which maps NaN to 0
            difference[rows_in_cache] = sign.sign_().sum(1, dtype=exact)
            nonzero[rows_in_cache] = _count_nonzero(sign)
        self.better += ((difference + nonzero) / 2).long()
        self.equal += width - nonzero.long() - removed
        self.candidates += width - removed
        return self

    def _add_native(self, true_scores: torch.Tensor, scores: torch.Tensor, rows: torch.Tensor | None,
                    cols: torch.Tensor | None) -> RankCounts:
        """``add_excluding`` in one read of the block (``kgem.ops.native.count_ranks``); the block is left as it is."""
        offsets = None
        if rows is not None and cols is not None:
            if len(rows) > 1 and not bool((rows[1:] >= rows[:-1]).all()):  # the kernel reads each row's columns
                order = torch.argsort(rows, stable=True)
                rows, cols = rows[order], cols[order]
            offsets = torch.zeros(len(scores) + 1, dtype=torch.int64)
            torch.cumsum(torch.bincount(rows, minlength=len(scores)), 0, out=offsets[1:])
            cols = cols.long()
        better, equal, removed, nan = native.count_ranks(scores, true_scores, offsets, cols)
        self.better += better
        self.equal += equal
        self.candidates += scores.shape[1] - removed
        self.nan |= bool((nan > 0).any())
        return self

    def ranks(self) -> Ranks:
        """Optimistic, pessimistic and realistic ranks from the accumulated counts."""
        if bool(self.nan):
            raise EvaluationError("the model produced NaN scores; ranks would be meaningless "
                                  "(check for diverged training, e.g. a too large learning rate)")
        if bool((self.equal < 1).any()):
            raise EvaluationError("a query's true answer was not among its scored candidates (or was masked out)")
        optimistic = (self.better + 1).double()
        pessimistic = (self.better + self.equal).double()
        return Ranks(optimistic, pessimistic, (optimistic + pessimistic) / 2, self.candidates.clone())


def ranks_from_scores(true_scores: torch.Tensor, scores: torch.Tensor,
                      mask_out: torch.Tensor | None = None) -> Ranks:
    """Ranks of ``true_scores (B,)`` among ``scores (B, C)``, which must include each query's true answer.

    ``mask_out`` (bool ``(B, C)``) excludes candidates, e.g. other known true answers; never the true answer itself.
    """
    return RankCounts.zeros(len(true_scores), scores.device).add(true_scores, scores, mask_out).ranks()


def _check_pairs(rows: torch.Tensor, cols: torch.Tensor, batch: int, width: int) -> None:
    if rows.shape != cols.shape or rows.ndim != 1:
        raise EvaluationError(f"excluded rows and columns must be two (n,) tensors, got {tuple(rows.shape)} and "
                              f"{tuple(cols.shape)}")
    if int(rows.min()) < 0 or int(rows.max()) >= batch or int(cols.min()) < 0 or int(cols.max()) >= width:
        raise EvaluationError(f"excluded pairs must lie in the ({batch}, {width}) block; got rows "
                              f"{int(rows.min())}..{int(rows.max())}, columns {int(cols.min())}..{int(cols.max())}")


def _count_nonzero(sign: torch.Tensor) -> torch.Tensor:
    """``sum(s^2)`` per row of a block of -1 / 0 / 1: the squared L2 norm, one vectorised read of the block (torch's
    L1 norm and ``abs`` are several times slower), rounded back to the exact integer: the relative error of the
    square root is 2^-24 (float32, used below 2^20 columns) or 2^-53."""
    dtype = torch.float32 if sign.dtype == torch.float32 and sign.shape[1] < 2**20 else torch.float64
    return torch.linalg.vector_norm(sign, dim=1, dtype=dtype).square_().round_()


def _any_nan(x: torch.Tensor) -> torch.Tensor:
    """Whether ``x`` holds a NaN, as a 0-d bool tensor. On the CPU a sum (a cheap reduction) answers first and the
    elementwise check runs only when the sum is NaN (a NaN, or +inf and -inf together); on an accelerator the
    elementwise check avoids a device sync per block."""
    if x.device.type == "cpu" and not bool(x.sum().isnan()):
        return torch.zeros((), dtype=torch.bool)
    return x.isnan().any()
