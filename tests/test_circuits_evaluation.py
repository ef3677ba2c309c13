"""Circuit evaluation against brute force: ranks through the library's evaluator equal ranks counted by hand from the
full conditional table of a one-logit-per-triple circuit; the average log-likelihood equals the mean of log_prob."""

from __future__ import annotations

import math

import pytest
import torch

from circuit_table import TableCircuit
from kgem.circuits.evaluation import average_log_likelihood, uniform_log_likelihood
from kgem.circuits.model import CircuitModel
from kgem.data.known import KnownTriples
from kgem.errors import EvaluationError
from kgem.evaluation import DEFAULT_MEMORY_BUDGET, evaluate

E, R = 6, 2


def every_triple() -> torch.Tensor:
    h, r, t = torch.meshgrid(torch.arange(E), torch.arange(R), torch.arange(E), indexing="ij")
    return torch.stack([h, r, t], -1).reshape(-1, 3)


def split() -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint random (train, test) triples of the tiny graph, so queries share known answers."""
    order = torch.randperm(E * E * R, generator=torch.Generator().manual_seed(1))
    triples = every_triple()[order]
    return triples[:30], triples[30:42]


def hand_ranks(circuit: TableCircuit, test: torch.Tensor, known: torch.Tensor | None) -> torch.Tensor:
    """Head ranks then tail ranks: 1 + the candidates scored above the answer, other known answers left out."""
    table = circuit.logits.detach()
    tails, heads = torch.log_softmax(table, 2), torch.log_softmax(table, 0)  # p(t | h, r), p(h | r, t)
    truth = set() if known is None else {tuple(x) for x in known.tolist()}
    head_ranks, tail_ranks = [], []
    for h, r, t in test.tolist():
        head_ranks.append(1 + sum(heads[c, r, t] > heads[h, r, t] for c in range(E) if (c, r, t) not in truth))
        tail_ranks.append(1 + sum(tails[h, r, c] > tails[h, r, t] for c in range(E) if (h, r, c) not in truth))
    return torch.tensor(head_ranks + tail_ranks, dtype=torch.float64)


@pytest.mark.parametrize("filtered", [True, False], ids=["filtered", "raw"])
@pytest.mark.parametrize("budget", [None, 32], ids=["one-block", "two-wide-blocks"])
def test_evaluator_ranks_equal_hand_ranks(filtered: bool, budget: int | None) -> None:
    """The small budget makes the scan ask for candidate subsets two entities wide, through score_t/score_h ids."""
    circuit, (train, test) = TableCircuit(E, R, seed=3), split()
    known = torch.cat([train, test]) if filtered else None
    index = None if known is None else KnownTriples(known, E, R)
    result = evaluate(CircuitModel(circuit), test, known=index, memory_budget_bytes=budget or DEFAULT_MEMORY_BUDGET,
                      batch_size=None if budget is None else 4)
    expected = hand_ranks(circuit, test, known)
    for rank_type in ("optimistic", "pessimistic", "realistic"):  # no ties among random float64 logits
        assert torch.equal(result.ranks.get(rank_type), expected)
    assert result.filtered == filtered
    assert result.mrr == pytest.approx(float((1 / expected).mean()))
    assert result.hits_at(1) == pytest.approx(float((expected == 1).double().mean()))


def test_filtered_ranks_differ_from_raw_ones() -> None:
    """The fixture is not degenerate: filtering moves some answers up."""
    circuit, (train, test) = TableCircuit(E, R, seed=3), split()
    assert (hand_ranks(circuit, test, torch.cat([train, test])) < hand_ranks(circuit, test, None)).any()


def test_candidate_subsets_are_columns_of_the_conditionals() -> None:
    circuit, ranker = TableCircuit(E, R, seed=2), CircuitModel(TableCircuit(E, R, seed=2))
    h, r, t = torch.tensor([0, 5, 3]), torch.tensor([1, 0, 1]), torch.tensor([2, 2, 4])
    ids = torch.tensor([4, 0, 3])
    tails, heads = circuit.log_tails(h, r), circuit.log_heads(r, t)
    assert torch.equal(ranker.score_t(h, r), tails)
    assert torch.equal(ranker.score_h(r, t), heads)
    assert torch.equal(ranker.score_t(h, r, tails=ids), tails[:, ids])
    assert torch.equal(ranker.score_h(r, t, heads=ids), heads[:, ids])
    per_query = torch.tensor([[1, 2], [0, 5], [3, 3]])
    assert torch.equal(ranker.score_t_sampled(h, r, per_query), tails.gather(1, per_query))
    assert torch.equal(ranker.score_h_sampled(r, t, per_query), heads.gather(1, per_query))
    assert torch.allclose(ranker.score_t(h, r).exp().sum(1), torch.ones(3, dtype=torch.float64))
    with pytest.raises(EvaluationError, match="score_t_sampled"):
        ranker.score_t(h, r, tails=per_query)


def test_ranker_follows_the_circuit() -> None:
    circuit = TableCircuit(E, R)
    ranker = CircuitModel(circuit)
    assert (ranker.num_entities, ranker.num_relations) == (E, R)
    assert list(ranker.parameters()) == [circuit.logits]
    ranker.eval()
    assert not circuit.training
    with pytest.raises(TypeError, match="Circuit"):
        CircuitModel(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def test_all_mass_on_the_test_triples_gives_mrr_one() -> None:
    """Every test triple outscores every other candidate, and filtering removes the other test answers of a query."""
    _, test = split()
    circuit = TableCircuit(E, R)
    with torch.no_grad():
        circuit.logits.fill_(-30.0)
        circuit.logits[test[:, 0], test[:, 1], test[:, 2]] = 0.0
    result = evaluate(CircuitModel(circuit), test, known=KnownTriples(test, E, R), rank_type="pessimistic")
    assert result.mrr == 1.0
    assert result.hits_at(1) == 1.0


def test_average_log_likelihood_is_the_mean_of_log_prob() -> None:
    circuit, (_, test) = TableCircuit(E, R, seed=4, scale=2.0), split()
    expected = float(torch.log_softmax(circuit.logits.detach().flatten(), 0)[
        (test[:, 0] * R + test[:, 1]) * E + test[:, 2]].mean())
    assert expected == pytest.approx(float(circuit.log_prob(test).detach().mean()), abs=1e-12)
    for batch_size in (1, 5, len(test), 10**6):
        assert average_log_likelihood(circuit, test, batch_size=batch_size) == pytest.approx(expected, abs=1e-12)
    circuit.train()
    average_log_likelihood(circuit, test)
    assert circuit.training  # mode restored


def test_uniform_circuit_meets_the_uniform_bar() -> None:
    circuit = TableCircuit(E, R)
    with torch.no_grad():
        circuit.logits.zero_()
    assert average_log_likelihood(circuit, every_triple()) == pytest.approx(uniform_log_likelihood(E, R), abs=1e-12)
    assert uniform_log_likelihood(E, R) == pytest.approx(-math.log(E * E * R))


def test_uniform_bar_of_fb15k237_sizes() -> None:
    assert round(uniform_log_likelihood(14541, 237), 2) == -24.64


@pytest.mark.parametrize(("hrt", "message"), [
    (torch.zeros(0, 3, dtype=torch.long), "empty"),
    (torch.zeros(4, 2, dtype=torch.long), "shape"),
    (torch.tensor([[0, R, 0]]), "relations"),
    (torch.tensor([[E, 0, 0]]), "entities"),
    (torch.tensor([[0, 0, -1]]), "entities"),
])
def test_average_log_likelihood_refuses_bad_triples(hrt: torch.Tensor, message: str) -> None:
    with pytest.raises(EvaluationError, match=message):
        average_log_likelihood(TableCircuit(E, R), hrt)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        average_log_likelihood(TableCircuit(E, R), torch.tensor([[0, 0, 0]]), batch_size=0)
    with pytest.raises(ValueError, match="num_relations"):
        uniform_log_likelihood(10, 0)
