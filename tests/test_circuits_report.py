"""evaluate_circuit: the ranking, the log-likelihood and the uniform bar of a circuit, checked by brute force."""

from __future__ import annotations

import math

import torch

from circuit_table import TableCircuit
from kgem.circuits.model import CircuitModel
from kgem.data import KnownTriples
from kgem.evaluation import evaluate
from kgem.evaluation.circuits import evaluate_circuit


def test_evaluate_circuit_reports_ranks_likelihood_and_the_uniform_bar() -> None:
    circuit = TableCircuit(6, 2, seed=3)
    test = torch.tensor([[0, 0, 1], [2, 1, 3], [4, 0, 5], [5, 1, 0]])
    known = KnownTriples(test, 6, 2)
    report = evaluate_circuit(circuit, test, known=known)
    assert report.ranking.mrr == evaluate(CircuitModel(circuit), test, known=known).mrr
    with torch.no_grad():
        brute = float(circuit.log_prob(test).mean())
    assert math.isclose(report.log_likelihood, brute, rel_tol=1e-12)
    assert math.isclose(report.uniform, -math.log(6 * 6 * 2))
    row = report.to_frame().iloc[0]
    assert (row["mrr"] == report.ranking.mrr and row["reciprocal"] is False) or not row["reciprocal"]
    assert math.isclose(row["log_likelihood"], brute, rel_tol=1e-12)
