"""A small training loop for generative circuits: seeded shuffled mini-batches, one objective, one optimiser.

Each step evaluates the objective on a batch (which computes the circuit's shared Grams once, see ``objectives``),
backpropagates and steps; the returned list holds each epoch's mean loss per triple. A non-finite loss stops the run
with a ``TrainingError`` naming the epoch and the batch, before it can reach the parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from kgem.checks import positive, positive_int
from kgem.circuits.base import Circuit
from kgem.circuits.objectives import OBJECTIVES, Objective, check_batch
from kgem.errors import TrainingError
from kgem.registry import Registry

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("circuit optimizer")
OPTIMIZERS.register("adam")(torch.optim.Adam)
OPTIMIZERS.register("adagrad")(torch.optim.Adagrad)
OPTIMIZERS.register("sgd")(torch.optim.SGD)


def check_ids(circuit: Circuit, hrt: torch.Tensor) -> torch.Tensor:
    """The training triples as a non-empty ``(N, 3)`` integer tensor whose ids fit the circuit's vocabulary."""
    hrt = check_batch(hrt)
    sizes = torch.tensor([circuit.num_entities, circuit.num_relations, circuit.num_entities], device=hrt.device)
    if bool((hrt < 0).any()) or bool((hrt >= sizes).any()):
        raise ValueError(f"hrt ids must lie in [0, {circuit.num_entities}) for entities and "
                         f"[0, {circuit.num_relations}) for relations, got ids from {int(hrt.min())} "
                         f"to {int(hrt.max())}")
    return hrt


def fit(circuit: Circuit, hrt: torch.Tensor, *, objective: str | Objective = "pll", epochs: int, batch_size: int,
        lr: float, seed: int, optimizer: str = "adam", progress: bool = False) -> list[float]:
    """Train ``circuit`` in place on the triples ``hrt (N, 3)``; returns each epoch's mean loss per triple.

    ``objective`` is a registered name (``"pll"``, ``"mle"``) or any ``(circuit, hrt) -> scalar`` callable (e.g. a
    ``functools.partial`` of ``pll`` with other weights). The order of the triples is drawn each epoch from a
    generator seeded with ``seed``, so equal seeds on equal circuits give equal losses; the last batch of an epoch
    may be smaller. ``optimizer`` names ``adam`` (default), ``adagrad`` or ``sgd``, built with ``lr`` only. Epochs
    are counted from 1 and batches within an epoch from 0 in the ``TrainingError`` of a non-finite loss."""
    loss_of = objective_fn(objective)
    epochs, batch_size = positive_int("epochs", epochs), positive_int("batch_size", batch_size)
    params = list(circuit.parameters())
    if not params:
        raise ValueError(f"{type(circuit).__name__} has no parameters to fit")
    device = params[0].device
    triples = check_ids(circuit, hrt.to(device))
    opt = OPTIMIZERS.get(optimizer)(params, lr=positive("lr", lr))
    generator = torch.Generator().manual_seed(seed)
    circuit.train()
    losses = []
    with tqdm(range(1, epochs + 1), desc="fitting", unit="epoch", disable=not progress) as bar:
        for epoch in bar:
            order = torch.randperm(len(triples), generator=generator).to(device)
            losses.append(fit_epoch(circuit, triples[order].split(batch_size), loss_of, opt, epoch))
            bar.set_postfix(loss=f"{losses[-1]:.4g}")
    return losses


def objective_fn(name_or_fn: str | Objective) -> Objective:
    """A registered objective by name, or the callable itself."""
    return OBJECTIVES.get(name_or_fn) if isinstance(name_or_fn, str) else name_or_fn


def fit_epoch(circuit: Circuit, batches: tuple[torch.Tensor, ...], loss_of: Objective,
              opt: torch.optim.Optimizer, epoch: int) -> float:
    """One pass: a step per batch; returns the mean loss per triple. A non-finite loss raises before its step."""
    total, count = 0.0, 0
    for index, batch in enumerate(batches):
        opt.zero_grad(set_to_none=True)
        loss = loss_of(circuit, batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingError(f"the circuit's loss became {value} at epoch {epoch}, batch {index}; "
                                f"try a lower learning rate or check the circuit's parameters for nan/inf")
        loss.backward()
        opt.step()
        total += value * len(batch)
        count += len(batch)
    return total / count
