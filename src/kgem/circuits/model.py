"""A generative circuit as a kgem model: trained by the library's ``Trainer``, ranked by its evaluator, saved, loaded
and queried like any other model, its scores being exact log-probabilities.

``CircuitModel(circuit, name, args)`` answers the scoring calls of ``kgem.models.Model`` with the circuit's
conditionals: ``score_t(h, r)`` is ``log p(t | h, r)``, ``score_h(r, t)`` is ``log p(h | r, t)``, ``score_r(h, t)``
is ``log p(r | h, t)``, and ``score_hrt`` the joint ``log p(h, r, t)``. So link prediction ranks candidates by their
conditional probability, and a prediction's ``exp(score)`` is a probability (``log_probabilities`` says so to the
inference functions, which add it as a ``probability`` column). A circuit models the triples as given: it never
adds reciprocal relations (``inverse`` is False), each head query being answered by the circuit's own head
conditional. ``name`` and ``args`` rebuild the circuit (``build_circuit``) when it is saved and loaded.

A candidate subset costs the full row (its normaliser sums over every entity anyway). Scores keep the circuit's
dtype: float64 stays float64, so no ties appear by rounding.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from kgem.circuits.base import Circuit
from kgem.errors import EvaluationError
from kgem.models.model import Model


class CircuitModel(nn.Module):
    """The circuit (a submodule: its parameters are this model's) behind the scoring interface of a kgem model."""

    inverse = False
    log_probabilities = True  # scores are log-probabilities: exp(score) is a probability

    def __init__(self, circuit: Circuit, name: str = "", args: dict[str, Any] | None = None) -> None:
        if not isinstance(circuit, Circuit):
            raise TypeError(f"CircuitModel wraps a kgem.circuits.Circuit, got {type(circuit).__name__}")
        super().__init__()
        self.circuit = circuit
        self.name = name
        self.args = dict(args or {})

    @property
    def num_entities(self) -> int:
        return self.circuit.num_entities

    @property
    def num_relations(self) -> int:
        return self.circuit.num_relations

    @property
    def device(self) -> torch.device:
        """Where the circuit's tensors are (the CPU for none)."""
        tensor = next(itertools.chain(self.parameters(), self.buffers()), None)
        return torch.device("cpu") if tensor is None else tensor.device

    def constrain_(self) -> None:
        """Nothing to re-impose: a circuit's parameterisation keeps it valid (logits, squares)."""

    def invalidate_cache(self) -> None:
        """Nothing cached: a circuit recomputes its normaliser from the current tensors each call."""

    @contextmanager
    def private_tables(self, enabled: bool = True) -> Iterator[None]:
        """Circuits do not train HOGWILD (the factory refuses workers > 1): nothing to make private."""
        yield

    def score_hrt(self, hrt: torch.Tensor) -> torch.Tensor:
        """``log p(h, r, t)`` of given triples: ``(B, 3) -> (B,)``."""
        return self.circuit.log_prob(hrt)

    def score_t(self, h: torch.Tensor, r: torch.Tensor, tails: torch.Tensor | None = None) -> torch.Tensor:
        """``log p(t | h, r)``: ``(B, E)``, or ``(B, C)`` at the candidate ``tails (C,)``."""
        return _columns(self.circuit.log_tails(h, r), tails)

    def score_h(self, r: torch.Tensor, t: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        """``log p(h | r, t)``: ``(B, E)``, or ``(B, C)`` at the candidate ``heads (C,)``."""
        return _columns(self.circuit.log_heads(r, t), heads)

    def score_r(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``log p(r | h, t)`` for every relation: ``(B, num_relations)``."""
        return self.circuit.log_relations(h, t)

    def score_t_sampled(self, h: torch.Tensor, r: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
        """``log p(t | h, r)`` at one candidate set per query, ``tails (B, C) -> (B, C)``."""
        return self.circuit.log_tails(h, r).gather(1, tails)

    def score_h_sampled(self, r: torch.Tensor, t: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
        """``log p(h | r, t)`` at one candidate set per query, ``heads (B, C) -> (B, C)``."""
        return self.circuit.log_heads(r, t).gather(1, heads)

    def factors(self, hrt: torch.Tensor) -> list[torch.Tensor]:
        """No factors for a regularizer: a circuit trains on its own objective alone."""
        return []

    def spec_args(self) -> dict[str, Any]:
        return {}


AnyModel = Model | CircuitModel  # what training, evaluation and inference take


def _columns(table: torch.Tensor, ids: torch.Tensor | None) -> torch.Tensor:
    """The whole ``(B, E)`` table, or its columns at ``ids (C,)``."""
    if ids is None:
        return table
    if ids.ndim != 1:
        raise EvaluationError(f"candidate ids must be (C,) here, got shape {tuple(ids.shape)}; (B, C) candidates "
                              f"go to score_t_sampled/score_h_sampled")
    return table[:, ids.to(table.device)]
