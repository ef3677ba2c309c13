"""Evaluating a generative circuit: link prediction through the library's evaluator, and the average log-likelihood.

Link prediction ranks a query's candidates by their conditional probability: ``log p(t | h, r)`` for a hidden tail,
``log p(h | r, t)`` for a hidden head. ``CircuitModel`` (``kgem.circuits.model``) wraps a circuit as a scoring
model, so ``kgem.evaluation.evaluate(CircuitModel(circuit), test, known=known)`` yields filtered (or raw) ranks,
MRR and Hits@k exactly as for any model, every rank type included (``rank_type="pessimistic"`` counts every tie
against the true answer). A circuit models the triples as given: no reciprocal relations are added, so each head
query is answered by the circuit's own head conditional (the result records ``reciprocal=False``).

The density itself is judged by ``average_log_likelihood``: the mean of ``log p(h, r, t)`` over a split's triples,
reported next to MRR, against the bar of the uniform distribution over every triple, ``uniform_log_likelihood``.
"""

from __future__ import annotations

import math

import torch

from kgem.checks import positive_int
from kgem.circuits.base import Circuit
from kgem.errors import EvaluationError

DEFAULT_LIKELIHOOD_BATCH = 65536  # triples scored at once by average_log_likelihood


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
