"""Scores against per-row sampled candidates without materialising the ``(B, K, d)`` gathered rows.

Negative sampling scores each query ``q_b`` against its own ``K`` candidate rows ``table[ids[b]]``. Gathering them
writes ``B * K * d`` floats (52 MB at B = 1024, K = 64, d = 200), and every elementwise op and its backward passes
over that again: memory traffic, not arithmetic, bounds the step. ``sampled_dot`` computes the ``B * K`` dot
products as a sampled dense-dense product (SDDMM) and its backward as two sparse-dense products (SpMM):
``grad_q = G @ table`` and ``grad_table = G^T @ q`` with ``G`` the ``(B, N)`` sparse matrix of the incoming
gradient. No ``(B, K, d)`` tensor exists at any point. ``sampled_square_distance`` does the same for L2 distances
(the expanded square). ``kgem.ops.compare`` builds the comparisons of every factorised model on them.
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


class SavesInputs(torch.autograd.Function):
    """A function whose backward needs its inputs ``(q, table, ids)``."""

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.save_for_backward(*inputs)


def _sampled_dots(q: torch.Tensor, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The SDDMM: ``q[b] . table[ids[b, k]]`` as ``(B, K)``."""
    pattern = _csr(torch.zeros(ids.shape, dtype=q.dtype, device=q.device), ids, len(table))
    return torch.sparse.sampled_addmm(pattern, q, table.T, beta=0.0).values().view(ids.shape)


class SampledDot(SavesInputs):
    """``out[b, k] = q[b] . table[ids[b, k]]``."""

    @staticmethod
    def forward(q: torch.Tensor, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return _sampled_dots(q, table, ids)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return _products_backward(ctx, grad, norms=False)


def _spmm(out: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``out += alpha * sparse @ dense`` in place. On the CPU this is several times faster than ``sparse @ dense``
    (2.3 vs 9.5 ms for the ``(14505, 1024) @ (1024, 200)`` product of FB15k-237's negatives), and it
    lets a dense term of the gradient be written into ``out`` first instead of being added afterwards."""
    return out.addmm_(sparse, dense, alpha=alpha)


class SampledSquaredDistance(SavesInputs):
    """``out[b, k] = ||q[b] - table[ids[b, k]]||^2``, expanded as ``|q|^2 + |t|^2 - 2 q.t`` (the dot products a
    sampled product). The backward is the two sparse products of ``SampledDot`` with the norms' terms written into
    their outputs: ``grad_q = 2 (s * q - G table)``, ``grad_table = 2 (c * table - G^T q)``, ``s`` and ``c`` the row
    and column sums of the incoming gradient ``G``, so the table is passed over once for it, not four times
    (norm backward, accumulation)."""

    @staticmethod
    def forward(q: torch.Tensor, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        dots = _sampled_dots(q, table, ids)
        square_q, square_t = q.pow(2).sum(-1, keepdim=True), torch.linalg.vector_norm(table, dim=-1).square_()
        return (square_q + square_t[ids]).sub_(dots, alpha=2)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return _products_backward(ctx, grad, norms=True)


def _products_backward(ctx: Any, grad: torch.Tensor, *, norms: bool) -> tuple[torch.Tensor | None, ...]:
    """The two sparse products of the backward: ``grad_q = G table``, ``grad_table = G^T q``; with ``norms`` (the
    squared distance) ``2 (s * q - G table)`` and ``2 (c * table - G^T q)``, the dense terms written first."""
    q, table, ids = ctx.saved_tensors
    grad = grad.contiguous()
    alpha = -2.0 if norms else 1.0
    grad_q = grad_table = None
    if ctx.needs_input_grad[0]:
        start = q * (2 * grad.sum(1, keepdim=True)) if norms else torch.zeros_like(q)
        grad_q = _spmm(start, _csr(grad, ids, len(table)), table, alpha=alpha)
    if ctx.needs_input_grad[1]:
        if norms:
            column = grad.new_zeros(len(table)).index_add_(0, ids.reshape(-1), grad.reshape(-1))
            start = table * (2 * column).unsqueeze(1)
        else:
            start = torch.zeros_like(table)
        grad_table = _spmm(start, _csr_transposed(grad, ids, len(table)), q, alpha=alpha)
    return grad_q, grad_table, None


def sampled_dot(q: torch.Tensor, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``(B, d), (N, d), (B, K) -> (B, K)``: ``q[b] . table[ids[b, k]]``, equal to
    ``(q.unsqueeze(1) * table[ids]).sum(-1)`` (a test checks values and gradients)."""
    if _gathers(q, table, ids, "sampled_dot"):
        return (q.unsqueeze(1) * table[ids]).sum(-1)
    out: torch.Tensor = SampledDot.apply(q.contiguous(), table.contiguous(), ids.contiguous())
    return out


def sampled_square_distance(q: torch.Tensor, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``(B, d), (N, d), (B, K) -> (B, K)``: ``||q[b] - table[ids[b, k]]||^2``, equal to
    ``(q.unsqueeze(1) - table[ids]).pow(2).sum(-1)`` up to rounding (a test checks values and gradients)."""
    if _gathers(q, table, ids, "sampled_square_distance"):
        return (q.unsqueeze(1) - table[ids]).pow(2).sum(-1)
    out: torch.Tensor = SampledSquaredDistance.apply(q.contiguous(), table.contiguous(), ids.contiguous())
    return out


def _gathers(q: torch.Tensor, table: torch.Tensor, ids: torch.Tensor, name: str) -> bool:
    """Check the shapes; True where the sparse kernels do not apply and the caller gathers instead."""
    if ids.shape[0] != q.shape[0] or q.shape[-1] != table.shape[-1]:
        raise ValueError(f"{name}: q {tuple(q.shape)}, table {tuple(table.shape)}, ids {tuple(ids.shape)}")
    return q.is_complex() or ids.numel() == 0 or ids.shape[1] > len(table)  # sampled_addmm: at most N per row


class RowsSparseGrad(torch.autograd.Function):
    """``table.index_select(0, ids)`` whose backward is a sparse ``(N, d)`` gradient holding only the gathered rows.

    ``index_select``'s backward zero-fills a dense copy of the table, adds the rows into it, and autograd then adds
    that copy to the table's other gradient: three passes over the whole table for a few thousand rows. A sparse
    gradient is added into the other one where autograd sums them. Use it only where the table also gets a dense
    gradient (optimizers such as Adam refuse a sparse one)."""

    @staticmethod
    def forward(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return table.index_select(0, ids)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        table, ids = inputs
        ctx.save_for_backward(ids)
        ctx.shape = table.shape

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (ids,) = ctx.saved_tensors
        return torch.sparse_coo_tensor(ids.unsqueeze(0), grad, ctx.shape, check_invariants=False), None


def rows_sparse_grad(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``table[ids]`` for a 1-d ``ids`` with a sparse gradient (see ``RowsSparseGrad``)."""
    out: torch.Tensor = RowsSparseGrad.apply(table, ids)
    return out


class DenseGradientLast(torch.autograd.Function):
    """The identity (a view), for the use of a table that gets a dense gradient, next to ``rows_sparse_grad``.

    Autograd sums a tensor's gradients as they arrive. A dense gradient that arrives first and a sparse one after
    are added out of place (a copy of the whole table: 3 ms a step for FB15k-237's); a sparse one first and the
    dense one last are added into the dense one in place. Autograd runs the later-created of two ready nodes first,
    so this node, created before the sparse gathers, runs after them and hands its dense gradient over last. Were
    the order to change, only the copy would come back; the gradient is the same either way."""

    @staticmethod
    def forward(table: torch.Tensor) -> torch.Tensor:
        return table.view_as(table)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


def dense_gradient_last(table: torch.Tensor) -> torch.Tensor:
    """``table`` as it is; create it before any ``rows_sparse_grad`` of the table (see ``DenseGradientLast``)."""
    out: torch.Tensor = DenseGradientLast.apply(table)
    return out


ROWS_PER_CHUNK = 32  # (32, K, 2d) floats: the working set of one chunk stays in the core's cache


class SampledModulusDistance(SavesInputs):
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


def rows_of(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``table[ids]`` for a 1-d ``ids``; ``index_select``'s backward is an ``index_add``, several times faster
    on the CPU than the accumulating ``index_put`` behind ``table[ids]``."""
    return table.index_select(0, ids)


def few_rows_of(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``rows_of`` for a gather that names few of the table's rows, where the table also gets a dense gradient
    (the sampled product's): with a sparse gradient, added into that one, instead of a dense table of its own
    (zero-filled, index-added, then added: three passes over the table for a few rows)."""
    return rows_sparse_grad(table, ids) if 4 * len(ids) <= len(table) else rows_of(table, ids)
