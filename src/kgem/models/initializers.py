"""Initializers by name: each factory returns a function that fills a parameter tensor in place."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import nn

from kgem.registry import Registry

Initializer = Callable[[torch.Tensor], object]
INITIALIZERS: Registry[Callable[..., Initializer]] = Registry("initializer")


@INITIALIZERS.register("normal")
def normal(std: float = 1.0) -> Initializer:
    return functools.partial(nn.init.normal_, std=std)


@INITIALIZERS.register("uniform")
def uniform(a: float = -1.0, b: float = 1.0) -> Initializer:
    return functools.partial(nn.init.uniform_, a=a, b=b)


@INITIALIZERS.register("xavier_uniform")
def xavier_uniform(gain: float = 1.0) -> Initializer:
    return functools.partial(nn.init.xavier_uniform_, gain=gain)


@INITIALIZERS.register("xavier_normal")
def xavier_normal(gain: float = 1.0) -> Initializer:
    return functools.partial(nn.init.xavier_normal_, gain=gain)


@INITIALIZERS.register("constant")
def constant(value: float = 0.0) -> Initializer:
    return functools.partial(nn.init.constant_, val=value)


@INITIALIZERS.register("phase")
def phase() -> Initializer:
    """Uniform phases in [-pi, pi] for rotations (RotatE)."""
    return functools.partial(nn.init.uniform_, a=-math.pi, b=math.pi)


def from_tensor(values: torch.Tensor) -> Initializer:
    """Copy given values (e.g. pretrained embeddings); the shape must match."""
    def init(w: torch.Tensor) -> None:
        if w.shape != values.shape:
            raise ValueError(f"initial values have shape {tuple(values.shape)}, expected {tuple(w.shape)}")
        with torch.no_grad():
            w.copy_(values)
    return init


def copy_rows(target: torch.Tensor, source: torch.Tensor, source_rows: torch.Tensor) -> int:
    """Warm start: ``target[i] = source[source_rows[i]]`` wherever ``source_rows[i] >= 0`` (rows matched by label;
    -1 keeps the row's fresh initialisation). Returns the number of rows copied."""
    if target.shape[1:] != source.shape[1:]:
        raise ValueError(f"rows of shape {tuple(source.shape[1:])} cannot fill rows of shape {tuple(target.shape[1:])}")
    found = torch.nonzero(source_rows >= 0).squeeze(1)
    with torch.no_grad():
        target[found.to(target.device)] = source[source_rows[found].to(source.device)].to(target)
    return len(found)
