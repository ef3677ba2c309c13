"""A generative circuit's evaluation in one call: link prediction ranked by conditional probability, the average
test log-likelihood, and the bar of the uniform distribution over every triple, together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from kgem.circuits.base import Circuit
from kgem.circuits.evaluation import average_log_likelihood, uniform_log_likelihood
from kgem.circuits.model import CircuitModel
from kgem.data.known import KnownTriples
from kgem.evaluation.evaluator import evaluate
from kgem.evaluation.result import EvaluationResult


@dataclass(frozen=True)
class CircuitEvaluation:
    """``ranking``: the usual rank metrics (candidates ranked by ``log p(t | h, r)`` / ``log p(h | r, t)``);
    ``log_likelihood``: the mean ``log p(h, r, t)`` of the triples; ``uniform``: ``-log(E^2 R)``, what the uniform
    distribution scores; ``reciprocal``: always False (a circuit answers head queries with its own conditional)."""

    ranking: EvaluationResult
    log_likelihood: float
    uniform: float
    reciprocal: bool = False

    def to_frame(self) -> pd.DataFrame:
        """One row: MRR, Hits@1/3/10, the log-likelihood, the uniform bar and the reciprocal setting."""
        return pd.DataFrame([{"mrr": self.ranking.mrr, **{f"hits@{k}": self.ranking.hits_at(k) for k in (1, 3, 10)},
                              "log_likelihood": self.log_likelihood, "uniform_log_likelihood": self.uniform,
                              "reciprocal": self.reciprocal}])


def evaluate_circuit(circuit: Circuit, triples: torch.Tensor, *, known: KnownTriples | None = None,
                     **options: Any) -> CircuitEvaluation:
    """Rank ``triples`` (filtered by ``known`` if given; ``options`` as ``kgem.evaluation.evaluate`` takes them) and
    score their average log-likelihood."""
    ranking = evaluate(CircuitModel(circuit), triples, known=known, **options)
    return CircuitEvaluation(ranking, average_log_likelihood(circuit, triples),
                             uniform_log_likelihood(circuit.num_entities, circuit.num_relations))
