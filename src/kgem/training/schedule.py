"""Learning rate per epoch: an optional linear warm-up, then one rule or reductions on a validation plateau.

Every rule is a closed form of the epoch number (torch's argument names, computed here rather than by torch's
schedulers), so a schedule's whole state is the epochs it has seen plus, for ``plateau``, the validation record:
a resumed run sets exactly the learning rates of an uninterrupted one, and warm-up composes with any rule.
"""

from __future__ import annotations

import bisect
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from kgem.checks import positive_int
from kgem.errors import ConfigError

Rule = Callable[[float, int], float]  # (base learning rate, epochs since warm-up) -> learning rate


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not (value > 0 and math.isfinite(value)):  # inf epochs: an inf/inf rate
        raise ValueError(f"{name} must be positive and finite, got {value!r}")


def step_rule(step_size: int, gamma: float = 0.1) -> Rule:
    """Multiply by ``gamma`` every ``step_size`` epochs."""
    positive_int("step_size", step_size)
    _positive("gamma", gamma)
    return lambda base, k: base * gamma ** (k // step_size)


def multistep_rule(milestones: Sequence[int], gamma: float = 0.1) -> Rule:
    """Multiply by ``gamma`` at each of the ``milestones`` (epochs since warm-up)."""
    _positive("gamma", gamma)
    marks = sorted(int(m) for m in milestones)
    return lambda base, k: base * gamma ** bisect.bisect_right(marks, k)


def exponential_rule(gamma: float) -> Rule:
    """Multiply by ``gamma`` every epoch."""
    _positive("gamma", gamma)
    return lambda base, k: base * gamma**k


def cosine_rule(T_max: int, eta_min: float = 0.0) -> Rule:  # T_max: torch's name
    """Half a cosine from the base rate down to ``eta_min`` over ``T_max`` epochs, then ``eta_min``."""
    positive_int("T_max", T_max)
    return lambda base, k: eta_min + (base - eta_min) * (1 + math.cos(math.pi * min(k, T_max) / T_max)) / 2


def linear_rule(total_iters: int, end_factor: float = 0.0) -> Rule:
    """A straight line from the base rate to ``base * end_factor`` over ``total_iters`` epochs, then flat."""
    positive_int("total_iters", total_iters)
    if not 0 <= end_factor < math.inf:  # NaN fails too
        raise ValueError(f"end_factor must not be negative, got {end_factor!r}")
    return lambda base, k: base * (1 + (end_factor - 1) * min(k, total_iters) / total_iters)


RULES: dict[str, Callable[..., Rule]] = {"step": step_rule, "multistep": multistep_rule,
                                         "exponential": exponential_rule, "cosine": cosine_rule,
                                         "linear": linear_rule}
SCHEDULERS = (*RULES, "plateau")


@dataclass
class Plateau:
    """Multiply the rate by ``factor`` after ``patience`` validations in a row without the metric (higher is better)
    rising more than ``threshold`` above its best; never below ``min_lr``."""

    factor: float = 0.1
    patience: int = 1
    threshold: float = 0.0
    min_lr: float = 0.0
    best: float = float("-inf")
    bad: int = 0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.factor < 1:
            raise ValueError(f"factor must lie in (0, 1), got {self.factor!r}")
        positive_int("patience", self.patience)

    def update(self, metric: float) -> None:
        if metric > self.best + self.threshold:
            self.best, self.bad = metric, 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            self.scale, self.bad = self.scale * self.factor, 0


class EpochSchedule:
    """Sets each parameter group's learning rate for the coming epoch: in warm-up epoch ``e <= warmup_epochs``
    (1-based) the base rate times ``e / (warmup_epochs + 1)``, then ``rule(base, k)`` in the ``k``-th epoch after
    warm-up (k from 0), or the base rate scaled by ``plateau``'s reductions. The Trainer calls ``step(metric)``
    after every epoch, with the epoch's validation metric or None."""

    def __init__(self, optimizer: torch.optim.Optimizer, rule: Rule | None = None, *, warmup_epochs: int = 0,
                 plateau: Plateau | None = None) -> None:
        if warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs must not be negative, got {warmup_epochs}")
        self.optimizer, self.rule, self.warmup_epochs, self.plateau = optimizer, rule, warmup_epochs, plateau
        self.base_lrs = [float(group.setdefault("initial_lr", group["lr"])) for group in optimizer.param_groups]
        self.epoch = 0  # epochs completed
        self._apply()

    @property
    def needs_metric(self) -> bool:
        return self.plateau is not None

    def lr(self, base: float, epoch: int) -> float:
        """The learning rate of (1-based) ``epoch`` for a group whose base rate is ``base``."""
        if epoch <= self.warmup_epochs:
            return base * epoch / (self.warmup_epochs + 1)
        if self.plateau is not None:
            return max(base * self.plateau.scale, self.plateau.min_lr)
        return self.rule(base, epoch - self.warmup_epochs - 1) if self.rule is not None else base

    def step(self, metric: float | None = None) -> None:
        """One epoch is done; ``metric``: its validation value (only ``plateau`` reads it, after warm-up)."""
        self.epoch += 1
        if self.plateau is not None and metric is not None and self.epoch > self.warmup_epochs:
            self.plateau.update(metric)
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def _apply(self) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr(base, self.epoch + 1)

    def state_dict(self) -> dict[str, Any]:
        plateau = None if self.plateau is None else {k: v for k, v in asdict(self.plateau).items()
                                                     if k in ("best", "bad", "scale")}
        return {"epoch": self.epoch, "base_lrs": list(self.base_lrs), "plateau": plateau}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.base_lrs = int(state["epoch"]), [float(lr) for lr in state["base_lrs"]]
        if self.plateau is not None and state.get("plateau") is not None:
            for key, value in state["plateau"].items():
                setattr(self.plateau, key, value)
        self._apply()


def build_scheduler(name: str | None, optimizer: torch.optim.Optimizer, *, warmup_epochs: int = 0,
                    epochs: int | None = None, **kwargs: Any) -> EpochSchedule:
    """An ``EpochSchedule`` by name, with torch's argument names: ``step`` (step_size, gamma=0.1), ``multistep``
    (milestones, gamma=0.1), ``exponential`` (gamma), ``cosine`` (T_max, eta_min=0), ``linear`` (total_iters,
    end_factor=0), ``plateau`` (factor=0.1, patience=1, threshold=0, min_lr=0; counts validations), or None (only
    the warm-up). ``epochs``, the length of training, is the default ``T_max`` / ``total_iters``: the epochs after
    warm-up."""
    key = None if name is None else name.lower()
    if key is not None and key not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler {name!r}; known: {', '.join(sorted(SCHEDULERS))}")
    if key in ("cosine", "linear") and epochs is not None:
        kwargs.setdefault("T_max" if key == "cosine" else "total_iters", max(1, epochs - warmup_epochs))
    _check_arguments(key, kwargs)
    try:
        if key == "plateau":
            return EpochSchedule(optimizer, warmup_epochs=warmup_epochs, plateau=Plateau(**kwargs))
        rule = RULES[key](**kwargs) if key is not None else None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"scheduler {name}: {e}") from e
    return EpochSchedule(optimizer, rule, warmup_epochs=warmup_epochs)


def _check_arguments(key: str | None, kwargs: dict[str, Any]) -> None:
    """Unknown and missing arguments, named (rather than as a Python call's TypeError)."""
    if key is None:
        params: dict[str, bool] = {}
    elif key == "plateau":
        params = {name: False for name in ("factor", "patience", "threshold", "min_lr")}
    else:
        signature = inspect.signature(RULES[key]).parameters.values()
        params = {p.name: p.default is inspect.Parameter.empty for p in signature}
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ConfigError(f"scheduler {key} takes no argument {unknown[0]!r}; known: {', '.join(params) or 'none'}")
    missing = [name for name, required in params.items() if required and name not in kwargs]
    if missing:
        raise ConfigError(f"scheduler {key} needs {', '.join(missing)}")
