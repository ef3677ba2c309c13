"""Evaluating a generative circuit: link prediction through the library's evaluator, and the average log-likelihood.

Link prediction ranks a query's candidates by their conditional probability: ``log p(t | h, r)`` for a hidden tail,
``log p(h | r, t)`` for a hidden head. ``Ranker`` wraps a circuit as a scoring model (``kgem.models.scan``), so
``kgem.evaluation.evaluate(Ranker(circuit), test, known=known)`` yields filtered (or raw) ranks, MRR and Hits@k
exactly as for any model, every rank type included (``rank_type="pessimistic"`` counts every tie against the true
answer). A circuit models the triples as given: no reciprocal relations are added, so each head query is answered
by the circuit's own head conditional. ``EvaluationResult`` has no field for that setting; a report comparing a
circuit with a baseline trained with reciprocal relations should say so.

The density itself is judged by ``average_log_likelihood``: the mean of ``log p(h, r, t)`` over a split's triples,
reported next to MRR, against the bar of the uniform distribution over every triple, ``uniform_log_likelihood``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kgem.checks import positive_int
from kgem.circuits.base import Circuit
from kgem.errors import EvaluationError

DEFAULT_LIKELIHOOD_BATCH = 65536  # triples scored at once by average_log_likelihood


class Ranker(nn.Module):
    """A circuit as a scoring model: the score of a candidate is its log conditional probability given the query.

    ``score_t(h, r)`` is ``circuit.log_tails(h, r)`` (``(B, E)``); with ``tails`` ids ``(C,)`` it is those columns.
    A subset costs the full row, since its normaliser sums over every entity anyway. Scores keep the circuit's dtype
    (float64 stays float64, so no ties appear by rounding; the evaluator's memory budget assumes float32 blocks).
    The circuit is a submodule: its parameters give the device, ``train``/``eval`` reach it.
    """

    def __init__(self, circuit: Circuit) -> None:
        if not isinstance(circuit, Circuit):
            raise TypeError(f"Ranker wraps a kgem.circuits.Circuit, got {type(circuit).__name__}")
        super().__init__()
        self.circuit = circuit

    @property
    def num_entities(self) -> int:
        return self.circuit.num_entities

    @property
    def num_relations(self) -> int:
        return self.circuit.num_relations

    def score_t(self, h: torch.Tensor, r: torch.Tensor, tails: torch.Tensor | None = None) -> torch.Tensor:
        """``log p(t | h, r)``: ``(B, E)``, or ``(B, C)`` at the candidate ``tails (C,)``."""
        return _columns(self.circuit.log_tails(h, r), tails)

    def score_h(self, r: torch.Tensor, t: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        """``log p(h | r, t)``: ``(B, E)``, or ``(B, C)`` at the candidate ``heads (C,)``."""
        return _columns(self.circuit.log_heads(r, t), heads)

    def score_t_sampled(self, h: torch.Tensor, r: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
        """``log p(t | h, r)`` at one candidate set per query, ``tails (B, C) -> (B, C)``."""
        return self.circuit.log_tails(h, r).gather(1, tails)

    def score_h_sampled(self, r: torch.Tensor, t: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
        """``log p(h | r, t)`` at one candidate set per query, ``heads (B, C) -> (B, C)``."""
        return self.circuit.log_heads(r, t).gather(1, heads)


def _columns(table: torch.Tensor, ids: torch.Tensor | None) -> torch.Tensor:
    """The whole ``(B, E)`` table, or its columns at ``ids (C,)``."""
    if ids is None:
        return table
    if ids.ndim != 1:
        raise EvaluationError(f"candidate ids must be (C,) here, got shape {tuple(ids.shape)}; (B, C) candidates "
                              f"go to score_t_sampled/score_h_sampled")
    return table[:, ids.to(table.device)]


def average_log_likelihood(circuit: Circuit, hrt: torch.Tensor, batch_size: int = DEFAULT_LIKELIHOOD_BATCH) -> float:
    """The mean of ``log p(h, r, t)`` over the triples ``hrt (n, 3)``, in nats.

    ``log Z`` is computed once and the scores ``batch_size`` triples at a time; the sum is kept in float64. Runs
    under ``eval()`` and ``torch.no_grad()``, the circuit's train/eval mode restored afterwards.
    """
    batch_size = positive_int("batch_size", batch_size)
    hrt = _check_triples(circuit, hrt)
    was_training = circuit.training
    circuit.train(False)
    try:
        with torch.no_grad():
            device = next(iter(circuit.parameters()), torch.empty(0)).device
            log_z = circuit.log_partition().double()
            total = torch.zeros((), dtype=torch.float64, device=device)
            for start in range(0, len(hrt), batch_size):
                total += circuit.log_score(hrt[start : start + batch_size].to(device)).double().sum()
    finally:
        circuit.train(was_training)
    return float(total / len(hrt) - log_z)


def _check_triples(circuit: Circuit, hrt: torch.Tensor) -> torch.Tensor:
    """``hrt`` as int64 ``(n, 3)`` ids within the circuit's vocabulary, at least one triple."""
    if hrt.ndim != 2 or hrt.shape[1] != 3:
        raise EvaluationError(f"expected triples of shape (n, 3), got {tuple(hrt.shape)}")
    if not len(hrt):
        raise EvaluationError("the average log-likelihood of no triples is undefined; got an empty (0, 3) tensor")
    hrt = hrt.long()
    sizes = torch.tensor([circuit.num_entities, circuit.num_relations, circuit.num_entities], device=hrt.device)
    if bool((hrt < 0).any()) or bool((hrt >= sizes).any()):
        raise EvaluationError(f"triple ids must lie in [0, {circuit.num_entities}) for entities and "
                              f"[0, {circuit.num_relations}) for relations")
    return hrt


def uniform_log_likelihood(num_entities: int, num_relations: int) -> float:
    """``log p`` of every triple under the uniform distribution over all of them, ``-log(E^2 R)``: the bar an
    average log-likelihood must beat (about -24.64 nats for 14541 entities and 237 relations)."""
    num_entities = positive_int("num_entities", num_entities)
    num_relations = positive_int("num_relations", num_relations)
    return -(2 * math.log(num_entities) + math.log(num_relations))
