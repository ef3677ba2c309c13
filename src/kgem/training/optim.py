"""Optimizers and learning-rate schedulers from torch, by name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from kgem.errors import ConfigError

OPTIMIZERS: dict[str, Any] = {
    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adagrad": torch.optim.Adagrad,
    "sgd": torch.optim.SGD, "sparseadam": torch.optim.SparseAdam,
}
SPARSE_OPTIMIZERS = {"sparseadam", "adagrad", "sgd"}
FUSED = {"adam", "adamw"}  # one kernel per step instead of ~10 passes over every table; same arithmetic
SCHEDULERS: dict[str, type[Any]] = {
    "step": torch.optim.lr_scheduler.StepLR, "exponential": torch.optim.lr_scheduler.ExponentialLR,
    "cosine": torch.optim.lr_scheduler.CosineAnnealingLR, "multistep": torch.optim.lr_scheduler.MultiStepLR,
}


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float, **kwargs: Any) -> torch.optim.Optimizer:
    """``adam``, ``adamw``, ``adagrad``, ``sgd`` (``momentum=...``) or ``sparseadam``, with keyword arguments.

    Adam and AdamW use torch's fused implementation where this torch has one for the parameters' device (CPU:
    torch >= 2.4) unless ``fused`` or ``foreach`` is given."""
    cls = OPTIMIZERS.get(name.lower())
    if cls is None:
        raise ConfigError(f"unknown optimizer {name!r}; known: {', '.join(sorted(OPTIMIZERS))}")
    trainable = [p for p in params if p.requires_grad]
    if name.lower() in FUSED and not {"fused", "foreach"} & set(kwargs):
        try:
            return cls(trainable, lr=lr, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            pass  # no fused kernel here: the default implementation below
    try:
        return cls(trainable, lr=lr, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"optimizer {name}: {e}") from e


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, **kwargs: Any) -> Any:
    """``step`` (step_size, gamma), ``exponential`` (gamma), ``cosine`` (T_max) or ``multistep`` (milestones)."""
    cls = SCHEDULERS.get(name.lower())
    if cls is None:
        raise ConfigError(f"unknown scheduler {name!r}; known: {', '.join(sorted(SCHEDULERS))}")
    try:
        return cls(optimizer, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"scheduler {name}: {e}") from e
