"""Circuit objectives and the fitting loop, against the brute-force TableCircuit (float64) and a squared circuit."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from circuit_table import TableCircuit
from kgem.circuits.fit import fit
from kgem.circuits.objectives import mle, objective, pll
from kgem.circuits.squared import CP2, ComplEx2
from kgem.errors import ConfigError, TrainingError

E, R = 5, 2
TRIPLES = torch.tensor([[0, 0, 1], [0, 0, 2], [1, 0, 2], [1, 1, 3], [2, 1, 0], [2, 0, 4],
                        [3, 1, 4], [3, 0, 0], [4, 1, 1], [4, 0, 3], [0, 1, 4], [2, 1, 3]])


def num(x: torch.Tensor | float) -> float:
    """A Python float of a scalar, detached from the graph."""
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


def brute_conditionals(circuit: TableCircuit, hrt: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``log p(t | h, r)``, ``log p(r | h, t)``, ``log p(h | r, t)`` straight from the joint table."""
    joint = circuit.logits.detach()
    h, r, t = hrt.unbind(-1)
    lt = joint[h, r, t] - torch.logsumexp(joint[h, r, :], -1)
    lr = joint[h, r, t] - torch.logsumexp(joint[h, :, t], -1)
    lh = joint[h, r, t] - torch.logsumexp(joint[:, r, t].T, -1)
    return lt, lr, lh


def test_pll_is_the_weighted_sum_of_brute_force_conditionals() -> None:
    circuit = TableCircuit(E, R, seed=1)
    lt, lr, lh = brute_conditionals(circuit, TRIPLES)
    assert num(pll(circuit, TRIPLES)) == pytest.approx(-num((lt + lr + lh).mean()), rel=1e-12)
    weighted = pll(circuit, TRIPLES, weights=(2.0, 0.5, 3.0))
    assert num(weighted) == pytest.approx(-num((2 * lt + 0.5 * lr + 3 * lh).mean()), rel=1e-12)


@pytest.mark.parametrize("slot", [0, 1, 2])
def test_a_single_pll_weight_gives_that_conditional_alone(slot: int) -> None:
    circuit = TableCircuit(E, R, seed=2)
    weights = [0.0, 0.0, 0.0]
    weights[slot] = 1.0
    expected = -num(brute_conditionals(circuit, TRIPLES)[slot].mean())
    assert num(pll(circuit, TRIPLES, weights=weights)) == pytest.approx(expected, rel=1e-12)


class NoRelationConditional(TableCircuit):
    def log_relation(self, hrt: torch.Tensor) -> torch.Tensor:
        raise AssertionError("a zero-weight term must not be computed")


def test_a_zero_weight_drops_its_term_without_computing_it() -> None:
    circuit = NoRelationConditional(E, R, seed=3)
    lt, _, lh = brute_conditionals(circuit, TRIPLES)
    assert num(pll(circuit, TRIPLES, weights=(1, 0, 1))) == pytest.approx(-num((lt + lh).mean()), rel=1e-12)


@pytest.mark.parametrize("weights", [(1, 1), (1, -1, 1), (0, 0, 0), (1, math.nan, 1)])
def test_bad_pll_weights_are_refused(weights: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="w_|weights"):
        pll(TableCircuit(E, R), TRIPLES, weights=weights)


def test_mle_is_the_mean_negative_log_prob_of_the_joint() -> None:
    circuit = TableCircuit(E, R, seed=4)
    joint = circuit.logits.detach()
    h, r, t = TRIPLES.unbind(-1)
    expected = -num((joint[h, r, t] - torch.logsumexp(joint.flatten(), 0)).mean())
    assert num(mle(circuit, TRIPLES)) == pytest.approx(expected, rel=1e-12)
    assert num(mle(circuit, TRIPLES)) == pytest.approx(-num(circuit.log_prob(TRIPLES).mean()), rel=1e-12)


def test_objectives_refuse_a_malformed_batch() -> None:
    with pytest.raises(ValueError, match=r"\(B, 3\) integer"):
        mle(TableCircuit(E, R), TRIPLES.double())
    with pytest.raises(ValueError, match=r"\(B, 3\) integer"):
        pll(TableCircuit(E, R), TRIPLES[:, :2])


def test_objectives_by_name_and_an_unknown_name_is_one_clear_line() -> None:
    assert objective("pll") is pll and objective("MLE") is mle
    with pytest.raises(ConfigError, match=r"unknown circuit objective 'nll'; known: mle, pll") as info:
        objective("nll")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="unknown circuit objective"):
        fit(TableCircuit(E, R), TRIPLES, objective="nll", epochs=1, batch_size=4, lr=0.1, seed=0)
    with pytest.raises(ConfigError, match="unknown circuit optimizer 'adamw'"):
        fit(TableCircuit(E, R), TRIPLES, optimizer="adamw", epochs=1, batch_size=4, lr=0.1, seed=0)


@pytest.mark.parametrize("name", ["pll", "mle"])
def test_fit_lowers_the_objective(name: str) -> None:
    circuit = TableCircuit(E, R, seed=5)
    before = num(objective(name)(circuit, TRIPLES))
    losses = fit(circuit, TRIPLES, objective=name, epochs=10, batch_size=6, lr=0.1, seed=0)
    assert len(losses) == 10 and losses[-1] < losses[0]
    assert num(objective(name)(circuit, TRIPLES)) < before - 0.5


def test_mle_fit_beats_the_uniform_log_likelihood() -> None:
    circuit = TableCircuit(E, R, scale=0.0)  # exactly uniform: starts at the bar
    bar = -math.log(E * E * R)
    assert num(circuit.log_prob(TRIPLES).mean()) == pytest.approx(bar, rel=1e-12)
    fit(circuit, TRIPLES, objective="mle", epochs=30, batch_size=4, lr=0.1, seed=0)
    assert num(circuit.log_prob(TRIPLES).mean()) > bar + 1.0


def test_seeded_fits_give_identical_losses_and_other_seeds_differ() -> None:
    def run(seed: int) -> list[float]:
        return fit(TableCircuit(E, R, seed=6), TRIPLES, objective="pll", epochs=2, batch_size=5, lr=0.1, seed=seed)

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_fit_takes_an_objective_callable_and_other_optimizers() -> None:
    tail_only = functools.partial(pll, weights=(1, 0, 0))
    for optimizer in ["adagrad", "sgd"]:
        circuit = TableCircuit(E, R, seed=7)
        losses = fit(circuit, TRIPLES, objective=tail_only, epochs=5, batch_size=12, lr=0.5, seed=0,
                     optimizer=optimizer)
        assert losses[-1] < losses[0]


def test_epoch_loss_is_the_mean_per_triple_over_uneven_batches() -> None:
    circuit = TableCircuit(E, R, seed=8)
    expected = num(mle(circuit, TRIPLES))  # with lr ~ 0 the parameters do not move within the epoch
    (loss,) = fit(circuit, TRIPLES, objective="mle", epochs=1, batch_size=5, lr=1e-300, seed=0, optimizer="sgd")
    assert loss == pytest.approx(expected, rel=1e-12)


def test_a_nan_loss_raises_training_error_naming_epoch_and_batch() -> None:
    circuit = TableCircuit(E, R, seed=9)
    with torch.no_grad():
        circuit.logits[0, 0, 0] = math.nan
    with pytest.raises(TrainingError, match=r"became nan at epoch 1, batch 0") as info:
        fit(circuit, TRIPLES, objective="mle", epochs=2, batch_size=4, lr=0.1, seed=0)
    assert "\n" not in str(info.value)


def test_fit_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="ids must lie in"):
        fit(TableCircuit(E, R), TRIPLES + 4, epochs=1, batch_size=4, lr=0.1, seed=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        fit(TableCircuit(E, R), TRIPLES, epochs=1, batch_size=0, lr=0.1, seed=0)
    with pytest.raises(ValueError, match="lr must be a positive"):
        fit(TableCircuit(E, R), TRIPLES, epochs=1, batch_size=4, lr=-1.0, seed=0)


def counting_grams(circuit: CP2 | ComplEx2) -> list[int]:
    """Replace the circuit's ``grams`` by a spy that counts its calls (and still returns the real Grams)."""
    calls = [0]
    real = circuit.grams

    def spy() -> object:
        calls[0] += 1
        return real()

    circuit.grams = spy  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("make", [lambda: CP2(E, R, 3), lambda: ComplEx2(E, R, 3)], ids=["cp2", "complex2"])
def test_each_objective_call_and_each_fit_step_builds_the_grams_once(make) -> None:  # type: ignore[no-untyped-def]
    circuit = make().double()
    lt, lr, lh = circuit.log_tail(TRIPLES), circuit.log_relation(TRIPLES), circuit.log_head(TRIPLES)
    lp = circuit.log_prob(TRIPLES)
    calls = counting_grams(circuit)
    assert num(pll(circuit, TRIPLES)) == pytest.approx(-num((lt + lr + lh).mean()), rel=1e-12)
    assert calls[0] == 1
    assert num(mle(circuit, TRIPLES)) == pytest.approx(-num(lp.mean()), rel=1e-12)
    assert calls[0] == 2
    calls[0] = 0
    fit(circuit, TRIPLES, objective="pll", epochs=2, batch_size=5, lr=1e-2, seed=0)  # 3 batches an epoch
    assert calls[0] == 2 * 3
