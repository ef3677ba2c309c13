"""Comparisons of queries with keys, in every scoring mode: PyTorch-BigGraph's comparators, done once.

A factorisable model scores ``compare(query, key)`` (plus biases). Each ``Comparator`` gives that comparison
three ways, all equal to the plain broadcast formula (``pairs``) up to rounding, which a test checks:

- ``all(q (B, w), keys (C, w)) -> (B, C)``: every query against every key, by one matmul (``dot``), the expanded
  square (``l2``, ``squared_l2``), ``cdist`` (``lp``) or chunks of complex moduli (``modulus``);
- ``sampled(q (B, w), table (N, w), ids (B, K)) -> (B, K)``: each query against its own keys ``table[ids[b]]`` by a
  sampled product (``kgem.ops.sampled``), without the ``(B, K, w)`` gather;
- ``pairs(q, k) -> (...)``: broadcast pairs, ``(B, w), (B, w) -> (B,)`` for instance.

Kinds: ``dot`` ``q . k``; ``l2`` ``-||q - k||``; ``squared_l2`` ``-||q - k||^2``; ``lp`` ``-||q - k||_p``; ``modulus``
``-sum_i |q_i - k_i|`` over complex numbers stored as real rows with (re, im) interleaved (RotatE's distance).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from kgem.ops import native
from kgem.ops.process import row_blocks
from kgem.ops.sampled import sampled_dot, sampled_modulus_distance, sampled_square_distance

Kind = Literal["dot", "l2", "squared_l2", "lp", "modulus"]
KINDS: tuple[Kind, ...] = ("dot", "l2", "squared_l2", "lp", "modulus")
SQRT_FLOOR = 1e-30  # PyTorch-BigGraph's L2 comparator and torch.cdist's expanded square clamp there too
CHUNK_ELEMENTS = 2**24  # ~64 MB of float32 intermediates per chunk of candidates


def chunked(score: Callable[[torch.Tensor], torch.Tensor], candidates: torch.Tensor, batch_elements: int,
            budget: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """Apply ``score`` to slices of ``candidates`` so that the broadcast intermediate, ``batch_elements`` (B * d)
    per candidate, stays under ``budget`` elements."""
    num = candidates.shape[0]
    size = max(1, budget // max(1, batch_elements))
    if size >= num:
        return score(candidates)
    return torch.cat([score(candidates[i : i + size]) for i in range(0, num, size)], dim=1)


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


@dataclass(frozen=True)
class Comparator:
    """One comparison of queries with keys (see the module docstring); ``p`` is the order of ``lp``."""

    kind: Kind = "dot"
    p: float = 2.0

    def pairs(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The broadcast formula: ``(..., w), (..., w) -> (...)``."""
        if self.kind == "dot":
            return (q * k).sum(-1)
        if self.kind == "modulus":
            return -(complex_view(q) - complex_view(k)).abs().sum(-1)
        if self.kind == "squared_l2":
            return -(q - k).pow(2).sum(-1)
        return -torch.linalg.vector_norm(q - k, ord=self.p, dim=-1)

    def all(self, q: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """``(B, w), (C, w) -> (B, C)``."""
        if self.kind == "dot":
            return q @ keys.T
        if self.kind == "lp":
            return -torch.cdist(q, keys, p=self.p)
        if self.kind == "modulus":
            queries = complex_view(q).unsqueeze(1)
            return chunked(lambda c: -(queries - complex_view(c).unsqueeze(0)).abs().sum(-1), keys, q.numel())
        if torch.is_grad_enabled() and (q.requires_grad or keys.requires_grad):
            square = torch.addmm(q.pow(2).sum(-1, keepdim=True), q, keys.T, alpha=-2).add(keys.pow(2).sum(-1))
            return -sqrt_distance(square) if self.kind == "l2" else -square.clamp_min(0)
        return _negative_distances(q, keys, squared=self.kind == "squared_l2")

    def sampled(self, q: torch.Tensor, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``(B, w), (N, w), (B, K) -> (B, K)``: each query against its own keys ``table[ids[b]]``."""
        if self.kind == "dot":
            return sampled_dot(q, table, ids)
        if self.kind == "l2":
            return -sqrt_distance(sampled_square_distance(q, table, ids))
        if self.kind == "squared_l2":
            return -sampled_square_distance(q, table, ids).clamp_min(0)
        if self.kind == "modulus":
            return -sampled_modulus_distance(complex_view(q), complex_view(table), ids)
        return -torch.linalg.vector_norm(q.unsqueeze(1) - table[ids], ord=self.p, dim=-1)


def comparator(kind: str, p: float = 2.0) -> Comparator:
    """The comparator of ``kind``; ``l2`` with another ``p`` is ``lp``, ``lp`` with ``p = 2`` is ``l2``."""
    if kind not in KINDS:
        raise ValueError(f"comparison must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind in ("l2", "lp"):
        return Comparator("l2" if p == 2 else "lp", float(p))
    return Comparator(kind)


def _negative_distances(q: torch.Tensor, keys: torch.Tensor, *, squared: bool) -> torch.Tensor:
    """``-||q_b - k_c||`` (``^2`` with ``squared``) without autograd: the whole square in one product,
    ``[-2q, |q|^2, 1] . [k, 1, |k|^2]``, and the block finished in place, so no other ``(B, C)`` tensor is written."""
    ones_q, ones_k = q.new_ones(len(q), 1), keys.new_ones(len(keys), 1)
    augmented_q = torch.cat([q * -2, q.pow(2).sum(-1, keepdim=True), ones_q], 1)
    augmented_k = torch.cat([keys, ones_k, keys.pow(2).sum(-1, keepdim=True)], 1)
    square = augmented_q @ augmented_k.T
    if squared:
        for rows_in_cache in row_blocks(*square.shape):
            square[rows_in_cache].clamp_min_(0).neg_()
    elif not native.neg_sqrt_(square):  # one pass; else three passes per row block, in the cache
        for rows_in_cache in row_blocks(*square.shape):
            square[rows_in_cache].clamp_min_(0).sqrt_().neg_()
    return square
