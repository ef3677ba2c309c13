"""Query-form interactions: the score is a comparison of a query vector with the candidate's row.

DistMult (``<h * r, t>``), ComplEx (``Re<h * r, conj(t)>``), TransE (``-||(h + r) - t||``) and RotatE
(``-||h * r - t||``) all score
``compare(tail_query(h, r), rows(t))`` and, from the other side, ``compare(head_query(r, t), rows(h))``. Written
that way every scoring mode is one product of a ``(B, w)`` query matrix with candidate rows:

- all candidates: a matmul (``dot``) or the expanded square / ``cdist`` (``distance``);
- sampled candidates: a sampled dense-dense product (``kgem.ops.sampled``), no ``(B, K, d)`` gather;
- negative sampling: head- and tail-corrupting rows of a batch stack their queries and make *one* such call,
  positives included (``score_queries``), so the candidate table is consumed once per step.

``forward`` keeps each paper's formula; a test proves every mode equals it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from kgem.models.interaction import Interaction
from kgem.ops import native
from kgem.ops.process import row_blocks
from kgem.ops.sampled import sampled_dot, sampled_square_distance

Comparison = Literal["dot", "distance"]
SQRT_FLOOR = 1e-30  # PyTorch-BigGraph's L2 comparator and torch.cdist's expanded square clamp there too


def sqrt_distance(square: torch.Tensor) -> torch.Tensor:
    """A distance from its square, ``sqrt(max(square, 0))``, with a finite gradient everywhere: at an exact fit, or
    where the expanded square ``|q|^2 - 2 q.c + |c|^2`` rounds to zero or below, ``d sqrt(x) / dx`` is infinite and
    ``clamp_min(0)`` turns it into ``0 * inf = NaN``. Squares below ``SQRT_FLOOR`` give ``sqrt(SQRT_FLOOR)`` (1e-15)
    and a zero gradient instead, as in PyTorch-BigGraph; the same two passes as ``clamp_min(0).sqrt()``."""
    floor = max(SQRT_FLOOR, torch.finfo(square.dtype).tiny)  # half precision: 1e-30 would round to 0
    return square.clamp_min(floor).sqrt()


def real_view(x: torch.Tensor) -> torch.Tensor:
    """Complex ``(..., d)`` -> real ``(..., 2d)`` with (re, im) interleaved; no copy for contiguous input."""
    return torch.view_as_real(x).flatten(-2)


def complex_view(x: torch.Tensor) -> torch.Tensor:
    """The inverse of ``real_view``."""
    return torch.view_as_complex(x.unflatten(-1, (-1, 2)))


def conj_rows(r: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """``conj(r)`` in the complex rows where ``flip (B, 1)`` is True, ``r`` in the others: one real product, where
    a ``where`` over a conjugate costs four passes over the rows with its backward."""
    imaginary = 1 - 2 * flip.to(r.real.dtype)
    return torch.view_as_complex(torch.view_as_real(r) * torch.stack([torch.ones_like(imaginary), imaginary], -1))


class QueryInteraction(Interaction):
    """Subclasses define ``tail_query`` and ``reverse`` and set ``comparison``:
    ``dot`` scores ``q . c``; ``distance`` scores ``-||q - c||_p`` with ``self.p``."""

    comparison: ClassVar[Comparison] = "dot"
    p: float = 2.0

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reverse(self, r: torch.Tensor) -> torch.Tensor:
        """The relation read backwards, so that ``head_query(r, t) = tail_query(t, reverse(r))``: a batch mixing
        head and tail queries then makes one ``tail_query`` call with per-row relations."""
        raise NotImplementedError

    def reverse_rows(self, r: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """``reverse(r)`` in the rows where ``flip (B, 1)`` is True, ``r`` in the others."""
        return torch.where(flip, self.reverse(r), r)

    def head_query(self, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.tail_query(t, self.reverse(r))

    def rows(self, e: torch.Tensor) -> torch.Tensor:
        """Entity representations as the real rows queries are compared with: complex rows as ``real_view``."""
        return real_view(e) if e.is_complex() else e

    def entities(self, rows: torch.Tensor) -> torch.Tensor:
        """The inverse of ``rows``."""
        return complex_view(rows) if self.entity_kind == "complex" else rows

    def compare(self, q: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """``(B, w), (C, w) -> (B, C)``."""
        if self.comparison == "dot":
            return q @ candidates.T
        if self.p != 2:
            return -torch.cdist(q, candidates, p=self.p)
        if torch.is_grad_enabled() and (q.requires_grad or candidates.requires_grad):
            square = torch.addmm(q.pow(2).sum(-1, keepdim=True), q, candidates.T, alpha=-2)  # the expanded square
            return -sqrt_distance(square.add(candidates.pow(2).sum(-1)))
        # no autograd (evaluation): the whole square in the product, [-2q, |q|^2, 1] . [c, 1, |c|^2], and the block
        # finished in place, so no other (B, C) tensor is written
        ones_q, ones_c = q.new_ones(len(q), 1), candidates.new_ones(len(candidates), 1)
        augmented_q = torch.cat([q * -2, q.pow(2).sum(-1, keepdim=True), ones_q], 1)
        augmented_c = torch.cat([candidates, ones_c, candidates.pow(2).sum(-1, keepdim=True)], 1)
        square = augmented_q @ augmented_c.T
        if not native.neg_sqrt_(square):  # one pass; else three passes per row block, in the cache
            for rows_in_cache in row_blocks(*square.shape):
                square[rows_in_cache].clamp_min_(0).sqrt_().neg_()
        return square

    def compare_sampled(self, q: torch.Tensor, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``(B, w), (N, w), (B, K) -> (B, K)``: each query against its own candidate rows ``table[ids[b]]``."""
        if self.comparison == "dot":
            return sampled_dot(q, table, ids)
        if self.p == 2:
            return -sqrt_distance(sampled_square_distance(q, table, ids))
        return -torch.linalg.vector_norm(q.unsqueeze(1) - table[ids], ord=self.p, dim=-1)

    def compare_pairs(self, q: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``(B, w), (B, w) -> (B,)``: each query against one row."""
        if self.comparison == "dot":
            return (q * rows).sum(-1)
        return -torch.linalg.vector_norm(q - rows, ord=self.p, dim=-1)

    def score_t(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.compare(self.tail_query(h, r), self.rows(t))

    def score_h(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.compare(self.head_query(r, t), self.rows(h))

    def score_t_sampled(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self.compare_sampled(self.tail_query(h, r), self.rows(t), ids)

    def score_h_sampled(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self.compare_sampled(self.head_query(r, t), self.rows(h), ids)
