"""``sparseadam`` for any model: lazy Adam on sparse gradients, Adam on dense ones, one state per parameter.

torch's ``SparseAdam`` refuses dense gradients, yet a model trained with sparse lookups has some: its layers
(ConvE's convolution, TuckER's core), and the entity table itself where a step scores every entity (1vsAll,
KvsAll). ``SparseAdam`` here takes each gradient as it comes: a sparse one updates the moments and the rows it
names (torch's ``SparseAdam`` arithmetic), a dense one everything (torch's ``Adam``, without weight decay). The state
is ``SparseAdam``'s (``step``, ``exp_avg``, ``exp_avg_sq`` per parameter), so ``state_dict`` / ``load_state_dict``
are torch's and a resume is exact.
"""

from __future__ import annotations

import math
from typing import Any

import torch


class SparseAdam(torch.optim.SparseAdam):
    """torch's ``SparseAdam`` (same arguments and checks) that also steps parameters whose gradient is dense."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, maximize = float(group["lr"]), group["eps"], group.get("maximize", False)
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                grad = -p.grad if maximize else p.grad
                moments = (state["exp_avg"], state["exp_avg_sq"], state["step"])
                if grad.is_sparse:
                    _sparse_step(p, grad, *moments, lr=lr, beta1=beta1, beta2=beta2, eps=eps)
                else:
                    _dense_step(p, grad, *moments, lr=lr, beta1=beta1, beta2=beta2, eps=eps)
        return loss


def _sparse_step(p: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, step: int, *,
                 lr: float, beta1: float, beta2: float, eps: float) -> None:
    """torch's ``sparse_adam`` for one parameter: the moments and values of the rows the gradient names only."""
    grad = grad.coalesce()  # the update is not linear: each row once, its gradients summed
    indices, values = grad._indices(), grad._values()
    if values.numel() == 0:
        return

    def rows(update: torch.Tensor) -> torch.Tensor:
        return torch.sparse_coo_tensor(indices, update, grad.shape, check_invariants=False)  # a gradient's own

    old_avg = exp_avg.sparse_mask(grad)._values()
    avg_update = values.sub(old_avg).mul_(1 - beta1)  # old += (1 - b) (new - old)
    exp_avg.add_(rows(avg_update))
    old_sq = exp_avg_sq.sparse_mask(grad)._values()
    sq_update = values.pow(2).sub_(old_sq).mul_(1 - beta2)
    exp_avg_sq.add_(rows(sq_update))
    numer = avg_update.add_(old_avg)
    denom = sq_update.add_(old_sq).sqrt_().add_(eps)
    step_size = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
    p.add_(rows(-step_size * numer.div_(denom)))


def _dense_step(p: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, step: int, *,
                lr: float, beta1: float, beta2: float, eps: float) -> None:
    """torch's single-tensor ``Adam`` step (no weight decay, no amsgrad)."""
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    p.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**step))
