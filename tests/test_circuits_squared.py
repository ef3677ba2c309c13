"""Squared circuits against brute force over every triple of a tiny graph, in float64."""

from __future__ import annotations

import math

import pytest
import torch

from circuit_table import randomised
from kgem.circuits.squared import CP2, ComplEx2, SquaredCircuit

E, R, D = 6, 3, 4



def all_triples(model: SquaredCircuit) -> torch.Tensor:
    """Every (h, r, t), ordered so that ``.view(E, R, E)`` indexes ``[h, r, t]``."""
    h, r, t = torch.meshgrid(torch.arange(model.num_entities), torch.arange(model.num_relations),
                             torch.arange(model.num_entities), indexing="ij")
    return torch.stack([h, r, t], -1).reshape(-1, 3)


def cube(model: SquaredCircuit, values: torch.Tensor) -> torch.Tensor:
    return values.view(model.num_entities, model.num_relations, model.num_entities)


MODELS = [lambda: CP2(E, R, D), lambda: ComplEx2(E + 1, R, D - 1)]


@pytest.fixture(params=MODELS, ids=["cp2", "complex2"])
def model(request: pytest.FixtureRequest) -> SquaredCircuit:
    return randomised(request.param())


def test_log_prob_sums_to_one_over_every_triple(model: SquaredCircuit) -> None:
    with torch.no_grad():
        total = model.log_prob(all_triples(model)).logsumexp(0)
    assert total.item() == pytest.approx(0.0, abs=1e-10)


def test_partition_is_the_brute_force_sum_with_and_without_epsilon(model: SquaredCircuit) -> None:
    with torch.no_grad():
        triples = all_triples(model)
        phi2 = model.phi(triples).square()
        z = model.squared_partition()
        assert z.item() == pytest.approx(phi2.sum().item(), rel=1e-10)
        assert (phi2 + model.epsilon).sum().item() == pytest.approx(z.item() + 1, rel=1e-10)
        assert model.log_partition().item() == pytest.approx(math.log(phi2.sum().item() + 1), rel=1e-10)
        assert torch.allclose(model.log_score(triples).exp(), phi2 + model.epsilon, rtol=1e-12)


def test_conditionals_are_the_renormalised_joint(model: SquaredCircuit) -> None:
    with torch.no_grad():
        triples = all_triples(model)
        joint = cube(model, model.log_prob(triples))
        tails = cube(model, model.log_tail(triples))
        heads = cube(model, model.log_head(triples))
        relations = cube(model, model.log_relation(triples))
    assert torch.allclose(tails, joint - joint.logsumexp(2, keepdim=True), atol=1e-10)
    assert torch.allclose(heads, joint - joint.logsumexp(0, keepdim=True), atol=1e-10)
    assert torch.allclose(relations, joint - joint.logsumexp(1, keepdim=True), atol=1e-10)
    for values, slot in ((tails, 2), (heads, 0), (relations, 1)):
        assert torch.allclose(values.logsumexp(slot), torch.zeros(()).double(), atol=1e-10)


def test_one_vs_all_tables_match_pointwise_conditionals(model: SquaredCircuit) -> None:
    with torch.no_grad():
        triples = all_triples(model)
        h, r, t = triples.unbind(-1)
        grams = model.grams()
        tails = model.log_tails(h, r, grams).gather(1, t[:, None]).squeeze(1)
        heads = model.log_heads(r, t, grams).gather(1, h[:, None]).squeeze(1)
        relations = model.log_relations(h, t, grams).gather(1, r[:, None]).squeeze(1)
        assert torch.allclose(tails, model.log_tail(triples), atol=1e-12)
        assert torch.allclose(heads, model.log_head(triples), atol=1e-12)
        assert torch.allclose(relations, model.log_relation(triples), atol=1e-12)


def test_head_marginal_and_relation_given_head_follow_the_chain_rule(model: SquaredCircuit) -> None:
    with torch.no_grad():
        triples = all_triples(model)
        joint = cube(model, model.log_prob(triples))
        heads = torch.arange(model.num_entities)
        marginal = model.log_marginal_head()
        given = model.log_relation_given_head(heads)
        tails = cube(model, model.log_tail(triples))
    assert torch.allclose(marginal, joint.logsumexp((1, 2)), atol=1e-10)
    assert torch.allclose(given, joint.logsumexp(2) - marginal[:, None], atol=1e-10)
    assert torch.allclose(marginal[:, None, None] + given[:, :, None] + tails, joint, atol=1e-10)


def test_complex2_phi_is_complex_trilinear_product() -> None:
    model = randomised(ComplEx2(E, R, D), seed=3)
    d = model.dim
    ent = torch.complex(model.entities[:, :d], model.entities[:, d:]).detach()
    rel = torch.complex(model.relations[:, :d], model.relations[:, d:]).detach()
    triples = all_triples(model)
    h, r, t = triples.unbind(-1)
    expected = (ent[h] * rel[r] * ent[t].conj()).sum(-1).real
    with torch.no_grad():
        assert torch.allclose(model.phi(triples), expected, atol=1e-12)


def test_complex2_partition_block_form_equals_trace_form() -> None:
    model = randomised(ComplEx2(E, R, D), seed=4)
    d = model.dim
    with torch.no_grad():
        g = model.entities.T @ model.entities
        trace = torch.zeros((), dtype=torch.float64)
        for row in model.relations:
            al, be = row.split(d)
            m = torch.cat([torch.cat([al.diag(), be.diag()], 1), torch.cat([-be.diag(), al.diag()], 1)], 0)
            trace = trace + torch.trace(m @ g @ m.T @ g)
        assert model.squared_partition().item() == pytest.approx(trace.item(), rel=1e-10)


def test_cp2_phi_uses_subject_role_then_object_role() -> None:
    model = randomised(CP2(E, R, D), seed=5)
    s, o = model.entities[:, :D], model.entities[:, D:]
    triples = torch.tensor([[0, 1, 2], [2, 1, 0], [3, 0, 3]])
    expected = torch.stack([(s[h] * model.relations[r] * o[t]).sum() for h, r, t in triples.tolist()])
    with torch.no_grad():
        assert torch.allclose(model.phi(triples), expected.detach(), atol=1e-12)


@pytest.mark.parametrize("make", MODELS, ids=["cp2", "complex2"])
def test_initialisation_is_uniform(make) -> None:
    torch.manual_seed(0)
    model = make().double()
    triples = all_triples(model)
    with torch.no_grad():
        assert torch.allclose(model.phi(triples), torch.ones(len(triples), dtype=torch.float64), atol=1e-2)
        sample = triples[torch.randint(len(triples), (50,))]
        mean = model.log_prob(sample).mean().item()
    assert mean == pytest.approx(-math.log(model.num_entities**2 * model.num_relations), abs=1e-2)


def test_ranking_follows_absolute_score(model: SquaredCircuit) -> None:
    pairs = all_triples(model).view(model.num_entities, model.num_relations, model.num_entities, 3)[:, :, 0, :2]
    h, r = pairs.reshape(-1, 2).unbind(-1)
    with torch.no_grad():
        table = model.log_tails(h, r)
        phi = model.phi(all_triples(model)).view(-1, model.num_entities)  # rows (h, r) in the same order
    by_abs = phi.abs().argsort(-1, descending=True)
    assert torch.equal(table.argsort(-1, descending=True), by_abs)
    assert not torch.equal(phi.argsort(-1, descending=True), by_abs)  # signed scores would rank differently


@pytest.mark.parametrize("table", ["entities", "relations"])
def test_partition_gradient_matches_finite_differences(model: SquaredCircuit, table: str) -> None:
    weight = getattr(model, table)
    (grad,) = torch.autograd.grad(model.log_partition(), weight)
    step, numeric = 1e-6, torch.empty_like(grad)
    with torch.no_grad():
        for index in range(weight.numel()):
            entry = weight.view(-1)[index]
            entry += step
            up = model.log_partition()
            entry -= 2 * step
            down = model.log_partition()
            entry += step
            numeric.view(-1)[index] = (up - down) / (2 * step)
    assert torch.allclose(grad, numeric, atol=1e-7, rtol=1e-6)


def test_bad_input_is_a_clear_error() -> None:
    model = CP2(E, R, D)
    with pytest.raises(ValueError, match="hrt must be a"):
        model.log_prob(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="dim"):
        CP2(E, R, 0)
