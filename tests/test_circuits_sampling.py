"""Ancestral sampling against the exact distribution of tiny float64 circuits, with fixed seeds.

The bound on the total-variation (TV) distance between the empirical distribution of ``n`` samples and the exact
``p``: for each cell, ``n p_hat`` is Binomial(n, p), whose mean absolute deviation is about ``sqrt(2 p (1 - p) /
(pi n))`` times ``n`` (normal approximation), so ``E[TV] ~= 0.5 * sum sqrt(2 p (1 - p) / (pi n))``. TV is a sum of
many weakly dependent deviations, so its spread is a small fraction of its mean (for 40 cells and n = 20000, the
mean is about 0.018 and the standard deviation about 0.002): three times the mean is many standard deviations away
for a correct sampler, while a sampler of a different distribution lands far above it (checked below).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import torch

from circuit_table import TableCircuit, randomised
from kgem.circuits import sampling
from kgem.circuits.base import Circuit
from kgem.circuits.nonneg import ComplExPlus, CPPlus, RESCALPlus, TuckERPlus
from kgem.circuits.sampling import sample, sample_labels
from kgem.circuits.squared import CP2, ComplEx2
from kgem.data.vocab import Vocabulary

N = 20_000



MAKERS: dict[str, Callable[[], Circuit]] = {
    "cp+": lambda: CPPlus(4, 2, 3),
    "complex+": lambda: ComplExPlus(5, 2, 2),
    "rescal+": lambda: RESCALPlus(4, 2, 2),
    "tucker+": lambda: TuckERPlus(4, 2, 2, relation_dim=2),
    "cp2": lambda: CP2(4, 2, 3),
    "complex2": lambda: ComplEx2(5, 2, 2),
}


def make(name: str, seed: int = 0) -> Circuit:
    torch.manual_seed(seed)
    return randomised(MAKERS[name](), seed, 1.0 if name.endswith("2") else 1.5)


def exact(model: Circuit) -> torch.Tensor:
    """``p(h, r, t)`` of every triple, brute force through ``log_prob``, as an ``(E, R, E)`` table."""
    e, r = model.num_entities, model.num_relations
    triples = torch.cartesian_prod(torch.arange(e), torch.arange(r), torch.arange(e))
    with torch.no_grad():
        return model.log_prob(triples).exp().reshape(e, r, e)


def empirical(model: Circuit, hrt: torch.Tensor) -> torch.Tensor:
    e, r = model.num_entities, model.num_relations
    cells = (hrt[:, 0] * r + hrt[:, 1]) * e + hrt[:, 2]
    return (torch.bincount(cells, minlength=e * r * e).double() / len(hrt)).reshape(e, r, e)


def tv(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * (p - q).abs().sum().item()


def tv_bound(p: torch.Tensor, n: int) -> float:
    """Three times the expected TV of an n-sample multinomial from ``p`` (module docstring)."""
    p = p.flatten()
    return 3 * 0.5 * torch.sqrt(2 * p * (1 - p) / (math.pi * n)).sum().item()


@pytest.mark.parametrize("name", list(MAKERS))
def test_samples_follow_the_exact_joint_distribution(name: str) -> None:
    model = make(name)
    p = exact(model)
    assert p.sum().item() == pytest.approx(1.0, abs=1e-10)
    hrt = sample(model, N, seed=1)
    found = empirical(model, hrt)
    assert tv(found, p) < tv_bound(p, N)
    # The bound has power: the same samples against another draw of the same architecture fail it, and so do the
    # samples with their tails shuffled among them (t drawn from p(t), independent of h and r: a subtle bug).
    assert tv(found, exact(make(name, seed=5))) > 2 * tv_bound(p, N)
    shuffled = hrt.clone()
    shuffled[:, 2] = hrt[torch.randperm(N, generator=torch.Generator().manual_seed(0)), 2]
    assert tv(empirical(model, shuffled), p) > tv_bound(p, N)


@pytest.mark.parametrize("name", list(MAKERS))
def test_head_marginal_of_samples_matches_the_exact_marginal(name: str) -> None:
    model = make(name)
    p_head = exact(model).sum(dim=(1, 2))
    with torch.no_grad():
        assert torch.allclose(model.log_marginal_head().exp(), p_head, atol=1e-12)  # type: ignore[operator]
    hrt = sample(model, N, seed=2)
    found = torch.bincount(hrt[:, 0], minlength=model.num_entities).double() / N
    assert tv(found, p_head) < tv_bound(p_head, N)


def test_same_seed_gives_the_same_draws_and_another_seed_differs() -> None:
    model = make("complex2")
    first = sample(model, 500, seed=3)
    assert torch.equal(first, sample(model, 500, seed=3))
    assert not torch.equal(first, sample(model, 500, seed=4))


def test_batch_size_does_not_change_the_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Uniforms are drawn per fixed chunk, not per batch, so every batch size gives the same triples (a different
    result only if a uniform fell within rounding of a CDF step: probability about 1e-16 per draw). A small chunk
    makes batches straddle chunk ends too."""
    model = make("cp+")
    reference = sample(model, 300, seed=6)
    for batch_size in (1, 7, 10_000):
        assert torch.equal(sample(model, 300, seed=6, batch_size=batch_size), reference)
    monkeypatch.setattr(sampling, "CHUNK", 8)
    chunked = sample(model, 300, seed=6, batch_size=3)
    assert torch.equal(chunked, sample(model, 300, seed=6, batch_size=1))
    assert torch.equal(chunked, sample(model, 300, seed=6))


def test_small_chunks_still_sample_the_exact_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampling, "CHUNK", 1000)
    model = make("cp2")
    p = exact(model)
    assert tv(empirical(model, sample(model, N, seed=7, batch_size=300)), p) < tv_bound(p, N)


@pytest.mark.parametrize("name", list(MAKERS))
def test_ids_are_long_and_in_range_also_in_float32(name: str) -> None:
    torch.manual_seed(0)
    model = MAKERS[name]()  # float32, at its own near-uniform initialisation
    hrt = sample(model, 2000, seed=8, batch_size=64)
    assert hrt.shape == (2000, 3) and hrt.dtype == torch.long and hrt.device.type == "cpu"
    assert hrt.min().item() >= 0
    assert hrt[:, [0, 2]].max().item() < model.num_entities and hrt[:, 1].max().item() < model.num_relations
    assert len(torch.unique(hrt, dim=0)) > 0.9 * model.num_entities ** 2 * model.num_relations  # near uniform: most


@pytest.mark.parametrize("training", [True, False])
def test_mode_is_restored_and_no_graph_is_built(training: bool) -> None:
    model = make("complex+")
    model.train(training)
    hrt = sample(model, 100, seed=9)
    assert model.training is training and not hrt.requires_grad
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


class Watched(CPPlus):
    """CP+ that records the mode and grad state each tail table is computed under."""

    seen: list[tuple[bool, bool]]

    def log_tails(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, torch.is_grad_enabled()))
        return super().log_tails(h, r)


def test_tables_are_computed_in_eval_mode_without_grad() -> None:
    model = Watched(4, 2, 3)
    model.seen = []
    model.train()
    sample(model, 50, seed=10, batch_size=20)
    assert model.seen == [(False, False)] * 3 and model.training


def test_zero_samples_is_an_empty_table() -> None:
    hrt = sample(make("cp+"), 0)
    assert hrt.shape == (0, 3) and hrt.dtype == torch.long


@pytest.mark.parametrize("n", [-1, 1.5, True, "10", None])
def test_bad_n_is_a_one_line_error(n: object) -> None:
    with pytest.raises(ValueError, match=r"^n \(the number of samples\) must be a non-negative integer, got"):
        sample(make("cp+"), n)  # type: ignore[arg-type]


def test_bad_seed_and_batch_size_are_one_line_errors() -> None:
    model = make("cp+")
    with pytest.raises(ValueError, match="seed must be an integer"):
        sample(model, 10, seed=-1)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        sample(model, 10, batch_size=0)


def test_only_a_circuit_is_sampled() -> None:
    with pytest.raises(TypeError, match="can only sample from a kgem Circuit, got Linear"):
        sample(torch.nn.Linear(2, 2), 10)  # type: ignore[arg-type]


def test_non_finite_probabilities_are_a_clear_error() -> None:
    model = make("cp+")
    with torch.no_grad():
        model.subject_logits[0, 0] = float("nan")
    with pytest.raises(ValueError, match="not finite and positive"):
        sample(model, 10)


def vocabularies(model: Circuit) -> tuple[Vocabulary, Vocabulary]:
    return (Vocabulary([f"e{i}" for i in range(model.num_entities)], kind="entity"),
            Vocabulary([f"r{i}" for i in range(model.num_relations)], kind="relation"))


def test_sample_labels_names_the_sampled_ids() -> None:
    model = make("complex2")
    entities, relations = vocabularies(model)
    frame = sample_labels(model, 300, entities, relations, seed=11, batch_size=5)
    hrt = sample(model, 300, seed=11).numpy()
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["head", "relation", "tail"]
    expected = [[f"e{h}", f"r{r}", f"e{t}"] for h, r, t in hrt]
    assert frame.to_numpy().tolist() == expected
    assert np.array_equal(entities.ids(frame["tail"].to_numpy()), hrt[:, 2])


def test_sample_labels_refuses_vocabularies_of_the_wrong_size_or_type() -> None:
    model = make("cp+")
    entities, relations = vocabularies(model)
    with pytest.raises(ValueError, match="^entity vocabulary has 3 labels but the circuit has 4 entity ids$"):
        sample_labels(model, 5, Vocabulary(["a", "b", "c"]), relations)
    with pytest.raises(ValueError, match="^relation vocabulary has 1 labels but the circuit has 2 relation ids$"):
        sample_labels(model, 5, entities, Vocabulary(["x"]))
    with pytest.raises(TypeError, match="relation vocabulary must be a kgem Vocabulary, got list"):
        sample_labels(model, 5, entities, ["r0", "r1"])  # type: ignore[arg-type]


def test_samples_of_the_brute_force_circuit_follow_its_table() -> None:
    """Through the interface alone (no model's closed forms): the empirical distribution of 40,000 draws is within
    a total variation of 0.02 of the table's ``p(h, r, t)`` (the expected distance is about 0.008)."""
    circuit = TableCircuit(3, 2, seed=1)
    draws = sample(circuit, 40_000, seed=0)
    flat = (draws[:, 0] * 2 + draws[:, 1]) * 3 + draws[:, 2]
    empirical = torch.bincount(flat, minlength=18).double() / len(flat)
    p = torch.softmax(circuit.logits.detach().flatten(), 0)
    assert float(0.5 * (empirical - p).abs().sum()) < 0.02
