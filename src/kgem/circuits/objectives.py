"""Training objectives of generative circuits on a batch ``hrt (B, 3)``: lower is better, both are means over the batch.

``pll`` is the pseudo-log-likelihood: the negated, weighted sum of the three conditionals ``log p(t | h, r)``,
``log p(r | h, t)`` and ``log p(h | r, t)`` (1-vs-all cross-entropy on every slot, relation included). ``mle`` is the
negated exact log-likelihood ``log p(h, r, t)``, whose normaliser is recomputed from every embedding each step, so
every parameter gets a gradient.

A circuit that normalises through shared per-slot statistics (a squared circuit's Grams) exposes ``grams()`` and
takes ``grams=`` in its methods: an objective computes them once per call and hands them to every term, so one
training step pays for them once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from kgem.checks import non_negative
from kgem.circuits.base import Circuit
from kgem.errors import ConfigError
from kgem.registry import Registry

Objective = Callable[[Circuit, torch.Tensor], torch.Tensor]
OBJECTIVES: Registry[Objective] = Registry("circuit objective")
WEIGHT_NAMES = ("w_tail", "w_relation", "w_head")


def shared(circuit: Circuit) -> dict[str, Any]:
    """The keyword arguments every term of one objective call shares: ``grams=`` computed once where the circuit has
    ``grams()`` (its methods then take ``grams=``), nothing otherwise."""
    grams = getattr(circuit, "grams", None)
    return {"grams": grams()} if callable(grams) else {}


def check_batch(hrt: torch.Tensor) -> torch.Tensor:
    """A non-empty ``(B, 3)`` integer tensor of ids; anything else is refused in one line."""
    if hrt.dim() != 2 or hrt.shape[1] != 3 or hrt.shape[0] == 0 or hrt.is_floating_point() or hrt.is_complex():
        raise ValueError(f"hrt must be a non-empty (B, 3) integer tensor of (h, r, t) ids, "
                         f"got {tuple(hrt.shape)} {hrt.dtype}")
    return hrt


def check_weights(weights: Sequence[float]) -> tuple[float, float, float]:
    """Three finite, non-negative weights (tail, relation, head), at least one positive."""
    if len(weights) != 3:
        raise ConfigError(f"pll weights must be three numbers (w_tail, w_relation, w_head), got {tuple(weights)}")
    tail, relation, head = (non_negative(name, w) for name, w in zip(WEIGHT_NAMES, weights, strict=True))
    if not (tail or relation or head):
        raise ConfigError("pll weights must not all be 0: at least one conditional has to be trained")
    return tail, relation, head


def pll(circuit: Circuit, hrt: torch.Tensor, weights: Sequence[float] = (1.0, 1.0, 1.0)) -> torch.Tensor:
    """``-mean(w_t log p(t | h, r) + w_r log p(r | h, t) + w_h log p(h | r, t))``: a scalar.

    ``weights`` is ``(w_tail, w_relation, w_head)``; a term of weight 0 is not computed at all, so it costs nothing
    and cannot carry a non-finite value into the sum."""
    hrt = check_batch(hrt)
    terms = zip(check_weights(weights), (circuit.log_tail, circuit.log_relation, circuit.log_head), strict=True)
    kwargs = shared(circuit)
    total = sum(w * method(hrt, **kwargs).mean() for w, method in terms if w > 0)
    return -torch.as_tensor(total)


def mle(circuit: Circuit, hrt: torch.Tensor) -> torch.Tensor:
    """``-mean log p(h, r, t)``: the exact negative log-likelihood per triple, a scalar."""
    return -circuit.log_prob(check_batch(hrt), **shared(circuit)).mean()


OBJECTIVES.register("pll")(pll)
OBJECTIVES.register("mle")(mle)


def objective(name: str) -> Objective:
    """The objective registered as ``name`` (``"pll"`` or ``"mle"``); an unknown name lists the known ones."""
    return OBJECTIVES.get(name)
