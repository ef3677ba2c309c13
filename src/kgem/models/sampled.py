"""Scores against per-row sampled candidates without materialising the ``(B, K, d)`` gathered rows.

Negative sampling scores each query ``q_b`` against its own ``K`` candidate rows ``table[ids[b]]``. Gathering them
writes ``B * K * d`` floats (52 MB at B = 1024, K = 64, d = 200), and every elementwise op and its backward passes
over that again: memory traffic, not arithmetic, bounds the step. ``sampled_dot`` computes the ``B * K`` dot
products as a sampled dense-dense product (SDDMM) and its backward as two sparse-dense products (SpMM):
``grad_q = G @ table`` and ``grad_table = G^T @ q`` with ``G`` the ``(B, N)`` sparse matrix of the incoming
gradient. No ``(B, K, d)`` tensor exists at any point. ``kgem.models.query`` builds DistMult, ComplEx and TransE
(L2, by the expanded square) on it.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch


def _csr(values: torch.Tensor, ids: torch.Tensor, num: int) -> torch.Tensor:
    """``(B, num)`` CSR matrix with ``values[b, k]`` at column ``ids[b, k]`` (duplicates allowed: they add up in
    products, as gathered rows would)."""
    rows, k = ids.shape
    crow = torch.arange(0, rows * k + 1, k, device=ids.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, ids.reshape(-1), values.reshape(-1), (rows, num))


def _csr_transposed(values: torch.Tensor, ids: torch.Tensor, num: int) -> torch.Tensor:
    """``(num, B)``: the transpose of ``_csr``, built by a stable sort of the column ids."""
    rows, k = ids.shape
    flat = ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    crow = torch.zeros(num + 1, dtype=torch.long, device=ids.device)
    crow[1:] = torch.bincount(flat, minlength=num).cumsum(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, order // k, values.reshape(-1)[order], (num, rows))


class SampledDot(torch.autograd.Function):
    """``out[b, k] = q[b] . table[ids[b, k]]``."""

    @staticmethod
    def forward(q: torch.Tensor, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        pattern = _csr(torch.zeros(ids.shape, dtype=q.dtype, device=q.device), ids, len(table))
        return torch.sparse.sampled_addmm(pattern, q, table.T, beta=0.0).values().view(ids.shape)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        q, table, ids = inputs
        ctx.save_for_backward(q, table, ids)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        q, table, ids = ctx.saved_tensors
        grad = grad.contiguous()
        grad_q = grad_table = None
        if ctx.needs_input_grad[0]:
            grad_q = _csr(grad, ids, len(table)) @ table
        if ctx.needs_input_grad[1]:
            grad_table = _csr_transposed(grad, ids, len(table)) @ q
        return grad_q, grad_table, None


def sampled_dot(q: torch.Tensor, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``(B, d), (N, d), (B, K) -> (B, K)``: ``q[b] . table[ids[b, k]]``, equal to
    ``(q.unsqueeze(1) * table[ids]).sum(-1)`` (a test checks values and gradients)."""
    if ids.shape[0] != q.shape[0] or q.shape[-1] != table.shape[-1]:
        raise ValueError(f"sampled_dot: q {tuple(q.shape)}, table {tuple(table.shape)}, ids {tuple(ids.shape)}")
    if q.is_complex() or ids.numel() == 0 or ids.shape[1] > len(table):  # sampled_addmm: at most N per row
        return (q.unsqueeze(1) * table[ids]).sum(-1)
    out: torch.Tensor = SampledDot.apply(q.contiguous(), table.contiguous(), ids.contiguous())
    return out


ROWS_PER_CHUNK = 32  # (32, K, 2d) floats: the working set of one chunk stays in the core's cache


class SampledModulusDistance(torch.autograd.Function):
    """``out[b, k] = sum_i |q[b, i] - table[ids[b, k], i]|`` over complex numbers given as ``(.., d)`` complex
    tensors. The inputs are laid out planar (real parts, then imaginary parts, per row) once, so that every op
    below runs over contiguous memory; forward and backward go over chunks of rows with real arithmetic,
    recomputing the differences in backward instead of keeping a ``(B, K, d)`` graph of complex intermediates."""

    @staticmethod
    def forward(q: torch.Tensor, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        q_planar, table_planar = _planar(q), _planar(table)
        out = q_planar.new_empty(ids.shape)
        for start in range(0, len(q), ROWS_PER_CHUNK):
            rows = slice(start, start + ROWS_PER_CHUNK)
            out[rows] = _moduli(q_planar[rows], table_planar, ids[rows])[1].sum(-1)
        return out

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        q, table, ids = ctx.saved_tensors
        q_planar, table_planar = _planar(q), _planar(table)
        grad_q, grad_table = torch.empty_like(q_planar), torch.zeros_like(table_planar)
        for start in range(0, len(q), ROWS_PER_CHUNK):
            rows = slice(start, start + ROWS_PER_CHUNK)
            diff, modulus = _moduli(q_planar[rows], table_planar, ids[rows])
            # d|x| / dx = x / |x| (0 at x = 0, as torch's abs), weighted by the incoming gradient
            scale = torch.where(modulus > 0, grad[rows].unsqueeze(-1) / modulus, 0.0)
            weighted = diff * scale.unsqueeze(2)  # (c, K, 2, d)
            grad_q[rows] = weighted.sum(1)
            grad_table.index_add_(0, ids[rows].reshape(-1), weighted.flatten(0, 1), alpha=-1)
        return _complex(grad_q), _complex(grad_table), None


def _planar(x: torch.Tensor) -> torch.Tensor:
    """Complex ``(n, d)`` -> real ``(n, 2, d)``: each row's real parts, then its imaginary parts."""
    return torch.view_as_real(x).transpose(1, 2).contiguous()


def _complex(x: torch.Tensor) -> torch.Tensor:
    """The inverse of ``_planar``."""
    return torch.view_as_complex(x.transpose(1, 2).contiguous())


def _moduli(q: torch.Tensor, table: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Planar differences ``(c, K, 2, d)`` of a chunk of queries with their candidates, and the moduli
    ``(c, K, d)``."""
    rows, k = ids.shape
    diff = q.unsqueeze(1) - table.index_select(0, ids.reshape(-1)).view(rows, k, *table.shape[1:])
    square = diff.square()
    return diff, (square[:, :, 0] + square[:, :, 1]).sqrt_()


def sampled_modulus_distance(q: torch.Tensor, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``(B, d), (N, d), (B, K) -> (B, K)`` for complex ``q`` and ``table``: ``sum_i |q[b, i] - table[ids[b, k], i]|``,
    equal to ``(q.unsqueeze(1) - table[ids]).abs().sum(-1)`` (a test checks values and gradients)."""
    if ids.shape[0] != q.shape[0] or q.shape[-1] != table.shape[-1]:
        raise ValueError(f"sampled_modulus_distance: q {tuple(q.shape)}, table {tuple(table.shape)}, "
                         f"ids {tuple(ids.shape)}")
    out: torch.Tensor = SampledModulusDistance.apply(q, table, ids.contiguous())
    return out
