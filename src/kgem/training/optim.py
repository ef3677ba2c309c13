"""Optimizers by name (torch's and PyTorch-BigGraph's row-wise Adagrad) and gradient clipping; learning-rate
schedules are in ``kgem.training.schedule``."""

from __future__ import annotations

from collections.abc import Iterable
from numbers import Real
from typing import Any

import torch

from kgem.errors import ConfigError
from kgem.training.sparse_adam import SparseAdam


class RowAdagrad(torch.optim.Optimizer):
    """Adagrad with one accumulator per row (PyTorch-BigGraph's optimizer for embedding tables): a row's step is
    ``lr * g / (sqrt(sum of mean(g^2) over its updates) + eps)``. State is one float per row instead of one per
    entry, and a sparse gradient updates only its rows. 1-d parameters (biases) count each entry as a row."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 0.01, eps: float = 1e-10,
                 initial_accumulator_value: float = 0.0) -> None:
        if lr <= 0 or eps < 0 or initial_accumulator_value < 0:
            raise ValueError(f"invalid rowadagrad settings: lr={lr}, eps={eps}, "
                             f"initial_accumulator_value={initial_accumulator_value}")
        super().__init__(params, {"lr": lr, "eps": eps, "initial_accumulator_value": initial_accumulator_value})

    def init_state(self) -> None:
        """Create every parameter's accumulator now rather than at its first step (to share it between
        processes)."""
        for group in self.param_groups:
            for p in group["params"]:
                if not self.state[p]:
                    self.state[p]["sum"] = torch.full(p.shape[:1], group["initial_accumulator_value"],
                                                      dtype=p.dtype, device=p.device)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = closure() if closure is not None else None
        self.init_state()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    row_step(p, p.grad, self.state[p]["sum"], group["lr"], group["eps"])
        return loss


def plain_sgd(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` is SGD without momentum: a step that keeps no state between steps."""
    return isinstance(optimizer, torch.optim.SGD) and all(g.get("momentum", 0) == 0 for g in optimizer.param_groups)


def row_step(p: torch.Tensor, grad: torch.Tensor, total: torch.Tensor, lr: float, eps: float) -> None:
    """The divisor is the sum as read plus this step's own term, never the shared ``total`` read back after the add:
    HOGWILD workers add into ``total`` without locks, and another worker's read-modify-write of the same row can
    store its stale sum over this one's add (at first a 0, from a row of zero gradient); read back, that sum lacks
    this gradient, and a step of ``lr * g / (0 + eps)`` throws the row 1e6 away. With its own term in the divisor a row
    moves at most ``lr * sqrt(width)`` per step whatever the race did; a lost add only under-counts the history."""
    rows = p.view(len(p), -1)
    if grad.is_sparse:
        grad = _coalesced(grad)  # duplicate rows add up first, as in the dense gradient
        ids, values = grad.indices()[0], grad.values().reshape(len(grad.indices()[0]), -1)
        square = _mean_square(values)
        divisor = total[ids].add_(square).sqrt_().add_(eps)  # a private copy, read before the shared add
        total.index_add_(0, ids, square)
        rows.index_add_(0, ids, values * divisor.reciprocal_().unsqueeze(1), alpha=-lr)
    else:
        values = grad.reshape(len(p), -1)
        square = _mean_square(values)
        divisor = total.add(square).sqrt_().add_(eps)
        total.add_(square)
        rows.addcdiv_(values, divisor.unsqueeze(1), value=-lr)


class Adagrad(torch.optim.Adagrad):
    """torch's Adagrad, with its arguments, state and steps (a test checks them against torch's, in one process),
    safe for HOGWILD workers: a step divides by the sum it read plus its own ``g^2`` (see ``_adagrad_step``), where
    torch's reads back the shared sum after adding into it. ``foreach``, ``fused`` and ``differentiable`` choose
    between torch's implementations, which this one replaces, so it does not take them; nor complex parameters
    (kgem stores complex rows as pairs of floats)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0, eps: float = 1e-10, *,
                 maximize: bool = False) -> None:
        super().__init__(params, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                         initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize)
        if any(p.is_complex() for group in self.param_groups for p in group["params"]):
            raise ValueError("adagrad takes real parameters only, not complex ones")

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:  # a parameter added after construction, as torch creates its state
                    state["step"] = torch.tensor(0.0)
                    state["sum"] = torch.full_like(p, group["initial_accumulator_value"])
                state["step"] += 1
                lr = float(group["lr"]) / (1 + (float(state["step"]) - 1) * group["lr_decay"])
                grad = -p.grad if group["maximize"] else p.grad
                _adagrad_step(p, grad, state["sum"], lr, group["weight_decay"], group["eps"])
        return loss


def _adagrad_step(p: torch.Tensor, grad: torch.Tensor, total: torch.Tensor, lr: float, weight_decay: float,
                  eps: float) -> None:
    """``p -= lr * g / (sqrt(total + g^2) + eps)`` and ``total += g^2``, the divisor computed on a private copy
    before the add into the shared ``total``, as ``row_step`` does and for its reason: read back, a sum whose add
    another worker's stale write undid lacks this ``g^2`` (0 at first), and the step ``lr * g / 1e-10`` threw an
    element 5e6 away in a two-worker run. This way an element moves at most ``lr`` per step."""
    if weight_decay:
        if grad.is_sparse:
            raise RuntimeError("weight_decay option is not compatible with sparse gradients")  # torch's words
        grad = grad.add(p, alpha=weight_decay)
    if grad.is_sparse:
        grad = _coalesced(grad)  # the update is not linear: duplicate entries add up first
        values = grad._values()
        square = values * values
        divisor = total.sparse_mask(grad)._values().add_(square).sqrt_().add_(eps)
        total.add_(torch.sparse_coo_tensor(grad._indices(), square, grad.shape, check_invariants=False))
        p.add_(torch.sparse_coo_tensor(grad._indices(), values / divisor, grad.shape, check_invariants=False),
               alpha=-lr)
    else:
        divisor = torch.addcmul(total, grad, grad).sqrt_().add_(eps)
        total.addcmul_(grad, grad)
        p.addcdiv_(grad, divisor, value=-lr)


def _coalesced(grad: torch.Tensor) -> torch.Tensor:
    """``grad.coalesce()``, skipping its sort when the rows are already strictly increasing (a lookup of distinct
    sorted ids, as ``Model.candidates`` makes: autograd drops the tensor's own coalesced flag)."""
    if grad.is_coalesced() or grad.sparse_dim() != 1:
        return grad.coalesce()
    ids = grad._indices()[0]
    if bool((ids[1:] > ids[:-1]).all()):
        return torch.sparse_coo_tensor(grad._indices(), grad._values(), grad.shape, is_coalesced=True,
                                       check_invariants=False)
    return grad.coalesce()


def _mean_square(values: torch.Tensor) -> torch.Tensor:
    """Each row's mean of squares, without a squared copy of the rows."""
    return torch.linalg.vector_norm(values, dim=1).square_().div_(values.shape[1])


OPTIMIZERS: dict[str, Any] = {
    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adagrad": Adagrad,
    "sgd": torch.optim.SGD, "sparseadam": SparseAdam, "rowadagrad": RowAdagrad,
}
SPARSE_OPTIMIZERS = {"sparseadam", "adagrad", "sgd", "rowadagrad"}
FUSED = {"adam", "adamw"}  # one kernel per step instead of ~10 passes over every table; same arithmetic


def build_optimizer(name: str, params: Iterable[torch.Tensor], lr: float, **kwargs: Any) -> torch.optim.Optimizer:
    """``adam``, ``adamw``, ``adagrad``, ``rowadagrad``, ``sgd`` (``momentum=...``) or ``sparseadam``, with
    keyword arguments.

    Adam and AdamW use torch's fused implementation where this torch has one for the parameters' device (CPU:
    torch >= 2.4) unless ``fused`` or ``foreach`` is given."""
    cls = OPTIMIZERS.get(name.lower())
    if cls is None:
        raise ConfigError(f"unknown optimizer {name!r}; known: {', '.join(sorted(OPTIMIZERS))}")
    trainable = [p for p in params if p.requires_grad]
    check_lr(name, lr, trainable)
    if name.lower() in FUSED and not {"fused", "foreach"} & set(kwargs):
        try:
            return cls(trainable, lr=lr, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            pass  # no fused kernel here: the default implementation below
    try:
        return cls(trainable, lr=lr, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"optimizer {name}: {e}") from e


def check_lr(name: str, lr: float, params: list[torch.Tensor]) -> None:
    """A ConfigError unless ``lr`` is positive and the parameters' floating-point type holds it: torch converts it
    to that type in every step, so 1e39 (a float64) would fail there, for float32 tables, as an overflow."""
    largest = min((torch.finfo(p.dtype).max for p in params if p.dtype.is_floating_point),
                  default=torch.finfo(torch.float64).max)
    if isinstance(lr, bool) or not isinstance(lr, Real) or not 0 < lr <= largest:
        raise ConfigError(f"optimizer {name}: lr must be a positive number the parameters' type holds (at most "
                          f"{largest:.4g}), got {lr!r}")


def clip_grad_norm(parameters: Iterable[torch.Tensor], max_norm: float) -> float:
    """Scale the gradients so that their joint L2 norm is at most ``max_norm``, as ``torch.nn.utils.clip_grad_norm_``
    does for dense gradients only; returns the norm before clipping.

    A sparse gradient (``sparse=True`` lookups, for ``sparseadam`` and ``rowadagrad``) is coalesced first, so a row
    looked up twice counts once, with its summed gradient: the norm is that of the dense gradient it stands for, and
    clipping it scales the update exactly as clipping the dense gradient would."""
    if not max_norm > 0:
        raise ConfigError(f"clip_grad_norm must be positive, got {max_norm!r}")
    grads: list[torch.Tensor] = []
    for p in parameters:
        if p.grad is not None and p.grad.is_sparse:
            p.grad = _coalesced(p.grad)
        if p.grad is not None:
            grads.append(p.grad._values() if p.grad.is_sparse else p.grad)
    if not grads:
        return 0.0
    total = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach()) for g in grads])))
    if total > max_norm:  # to the bound itself (torch adds 1e-6 to the norm, which shrinks small gradients more)
        for g in grads:
            g.mul_(max_norm / total)
    return total
