"""Squared circuits copied from CP and ComplEx models: the same score on every triple, |score| ranking, a normalised
density, clear refusals, and no storage shared with the model. Tiny float64 models, brute force over all triples."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import torch

from kgem.circuits.distill import squared_from_model
from kgem.circuits.squared import CP2, ComplEx2, SquaredCircuit
from kgem.errors import ConfigError
from kgem.models import Model, build_model
from kgem.models.bilinear import ComplEx
from kgem.models.factorization import CP
from kgem.models.representation import Embedding

E, R, D = 7, 3, 4


def trained_like(name: str, *, seed: int = 0, **kwargs: Any) -> Model:
    """A float64 model with random signed N(0, 1) tables, as if trained (the 1e-3 init would hide layout bugs)."""
    torch.manual_seed(seed)
    model = build_model(name, E, R, D, **kwargs).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for weight in weights(model):
            weight.copy_(torch.randn(weight.shape, generator=gen, dtype=torch.float64))
    return model


def weights(model: Model) -> tuple[torch.Tensor, torch.Tensor]:
    """The stored entity and relation tables."""
    assert isinstance(model.entity, Embedding) and isinstance(model.relation, Embedding)
    return model.entity.weight, model.relation.weight


def all_triples() -> torch.Tensor:
    h, r, t = torch.meshgrid(torch.arange(E), torch.arange(R), torch.arange(E), indexing="ij")
    return torch.stack([h, r, t], -1).reshape(-1, 3)


CASES: dict[str, tuple[str, dict[str, Any], type[SquaredCircuit]]] = {
    "cp": ("cp", {}, CP2), "complex": ("complex", {}, ComplEx2),
    "cp-forward": ("cp", {"normalize": "forward"}, CP2),  # the copy is of the normalised rows the model scores
    "complex-forward": ("complex", {"normalize": "forward"}, ComplEx2)}


@pytest.mark.parametrize("case", CASES)
def test_phi_equals_the_model_score_on_every_triple(case: str) -> None:
    name, kwargs, expected = CASES[case]
    model = trained_like(name, **kwargs)
    circuit = squared_from_model(model)
    assert type(circuit) is expected
    assert (circuit.num_entities, circuit.num_relations, circuit.dim) == (E, R, D)
    assert circuit.entities.dtype == torch.float64
    with torch.no_grad():
        triples = all_triples()
        score = model.score_hrt(triples)
        assert score.abs().max() > 0.5  # a real signal, not tables near zero
        assert torch.allclose(circuit.phi(triples), score, rtol=1e-12, atol=1e-12)


def test_complex_rows_are_split_into_real_then_imaginary_parts() -> None:
    """Storage is interleaved (re, im) in the model, [re..., im...] in the circuit: entity 2, number 1 by hand."""
    model = trained_like("complex")
    circuit = squared_from_model(model)
    entities, relations = weights(model)
    assert circuit.entities[2, 1].item() == entities[2, 2].item()  # re of complex number 1
    assert circuit.entities[2, D + 1].item() == entities[2, 3].item()  # its im
    assert circuit.relations[1, D - 1].item() == relations[1, 2 * D - 2].item()


def tail_key_columns(model: Model) -> slice:
    """Where a tail's key lives in a stored entity row: CP's tail-role half; ComplEx's whole interleaved row."""
    return slice(D, 2 * D) if isinstance(model.interaction, CP) else slice(0, 2 * D)


@pytest.mark.parametrize("name", ["cp", "complex"])
def test_tails_rank_by_absolute_score_so_a_strongly_negative_tail_comes_first(name: str) -> None:
    model = trained_like(name)
    h, r = torch.tensor([1]), torch.tensor([0])
    with torch.no_grad():  # make tail 0 of (1, 0, ?) the most negative score by far: key -10 max|score| along q
        interaction = model.interaction
        assert isinstance(interaction, (CP, ComplEx))
        q = interaction.tail_query(model.entity(h), model.relation(r))[0]
        target = -10 * model.score_t(h, r).abs().max()
        weights(model)[0][0, tail_key_columns(model)] = target * q / q.dot(q)
    circuit = squared_from_model(model)
    with torch.no_grad():
        heads, relations = torch.arange(E).repeat_interleave(R), torch.arange(R).repeat(E)
        scores = model.score_t(heads, relations)
        log_tails = circuit.log_tails(heads, relations)
        query = model.score_t(h, r)[0]
        assert query[0].item() == pytest.approx(target.item())
        assert torch.equal(log_tails.argsort(-1, descending=True), scores.abs().argsort(-1, descending=True))
        assert circuit.log_tails(h, r)[0].argmax().item() == 0  # the circuit's top tail ...
        assert query.argmin().item() == 0 and query.argmax().item() != 0  # ... is the KGE's bottom one
        assert not torch.equal(log_tails.argsort(-1, descending=True), scores.argsort(-1, descending=True))


@pytest.mark.parametrize("name", ["cp", "complex"])
def test_the_copy_is_a_normalised_density(name: str) -> None:
    circuit = squared_from_model(trained_like(name))
    with torch.no_grad():
        triples = all_triples()
        assert circuit.log_prob(triples).logsumexp(0).item() == pytest.approx(0.0, abs=1e-10)
        h, r = triples[:, 0], triples[:, 1]
        assert torch.allclose(circuit.log_tails(h, r).logsumexp(-1), torch.zeros(len(h)).double(), atol=1e-10)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: build_model("cp", E, R, D, inverse=True), "reciprocal relations"),
    (lambda: build_model("complex", E, R, D, inverse=True), "reciprocal relations"),
    (lambda: build_model("distmult", E, R, D), "only CP and ComplEx models have a squared circuit, got DistMult"),
    (lambda: build_model("rgcn", E, R, D, decoder="cp"), "entity representation is RGCN"),
    (lambda: CP2(E, R, D), "needs a kgem Model (CP or ComplEx), got CP2"),
], ids=["cp-inverse", "complex-inverse", "distmult", "rgcn-cp", "circuit"])
def test_refused_models_get_one_line_config_errors(build: Callable[[], Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        squared_from_model(build())
    assert "\n" not in str(error.value)


def step(module: torch.nn.Module, loss: torch.Tensor) -> None:
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize("name", ["cp", "complex"])
def test_training_either_leaves_the_other_unchanged(name: str) -> None:
    model = trained_like(name)
    circuit: SquaredCircuit = squared_from_model(model)
    triples = all_triples()[::5]
    with torch.no_grad():
        score, phi = model.score_hrt(triples).clone(), circuit.phi(triples).clone()
    circuit_rows = [p.detach().clone() for p in circuit.parameters()]

    step(model, model.score_hrt(triples).square().sum())
    assert not torch.allclose(model.score_hrt(triples), score)  # the model moved ...
    assert all(torch.equal(a, b) for a, b in zip(circuit.parameters(), circuit_rows, strict=True))
    assert torch.equal(circuit.phi(triples), phi)  # ... the circuit did not

    model_rows = [p.detach().clone() for p in model.parameters()]
    step(circuit, -circuit.log_prob(triples).mean())
    assert not torch.allclose(circuit.phi(triples), phi)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model_rows, strict=True))
