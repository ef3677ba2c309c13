"""The multi-label binary cross-entropy of KvsAll training, without a label matrix."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class BCEMultiLabel(torch.autograd.Function):
    """Mean binary cross-entropy with logits against labels that are ``smoothing / C`` everywhere plus
    ``1 - smoothing`` at the pairs ``(rows, cols)``. With ``bce(x, y) = softplus(x) - x y`` the sum splits into a
    dense part that needs no labels and a sparse correction at the true pairs; the gradient
    ``(sigmoid(x) - y) / n`` is written in place the same way. Three passes over the ``(B, C)`` scores where the
    dense loss with a materialised label matrix makes about ten."""

    @staticmethod
    def forward(scores: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, smoothing: float) -> torch.Tensor:
        total = F.softplus(scores).sum() - (1 - smoothing) * scores[rows, cols].sum()
        if smoothing:
            total = total - smoothing / scores.shape[1] * scores.sum()
        return total / scores.numel()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        scores, rows, cols, smoothing = inputs
        ctx.save_for_backward(scores, rows, cols)
        ctx.smoothing = smoothing

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        scores, rows, cols = ctx.saved_tensors
        out = torch.sigmoid(scores)
        if ctx.smoothing:
            out.sub_(ctx.smoothing / scores.shape[1])
        step = torch.tensor(ctx.smoothing - 1, dtype=out.dtype, device=out.device)
        out.index_put_((rows, cols), step, accumulate=True)
        return out.mul_(grad / scores.numel()), None, None, None


def bce_multi_label(scores: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, smoothing: float) -> torch.Tensor:
    """``binary_cross_entropy_with_logits(scores, labels)`` for the multi-hot labels of distinct pairs
    ``(rows, cols)``, smoothed as ``BCEWithLogits`` does (a test checks values and gradients)."""
    out: torch.Tensor = BCEMultiLabel.apply(scores, rows, cols, smoothing)
    return out
