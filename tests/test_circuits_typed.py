"""Domain-constrained squared circuits against brute force over every triple of a tiny graph, in float64."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from circuit_table import randomised
from kgem.circuits.sampling import sample
from kgem.circuits.squared import CP2, ComplEx2, SquaredCircuit
from kgem.circuits.typed import TypedSquared, typed_complex2, typed_cp2
from kgem.data.types import DomainConstraints

E, R, D = 6, 3, 3
NEG_INF = float("-inf")
Case = tuple[TypedSquared, DomainConstraints]


def typed_constraints() -> DomainConstraints:
    """Three types and one untyped entity (allowed nowhere); relation 1 takes heads of two types, and relations 0 and
    2 share a signature (one domain of two relations)."""
    entity_types = torch.tensor([0, 0, 1, 1, 2, -1])
    head_types = torch.tensor([[1, 0, 0], [1, 0, 1], [1, 0, 0]], dtype=torch.bool)
    tail_types = torch.tensor([[0, 1, 0], [0, 0, 1], [0, 1, 0]], dtype=torch.bool)
    return DomainConstraints.from_types(entity_types, head_types, tail_types)


def ragged_constraints() -> DomainConstraints:
    """Masks with no type structure, as ``derive_types`` gives; relation 2 has an empty range (it allows nothing)."""
    heads = torch.tensor([[1, 1, 0, 1, 0, 0], [0, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 1]], dtype=torch.bool)
    tails = torch.tensor([[0, 1, 1, 0, 0, 1], [1, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    return DomainConstraints(heads, tails)


def everything() -> DomainConstraints:
    ones = torch.ones(R, E, dtype=torch.bool)
    return DomainConstraints(ones, ones.clone())



BASES: dict[str, Callable[[], SquaredCircuit]] = {"cp2": lambda: CP2(E, R, D), "complex2": lambda: ComplEx2(E, R, D)}
CONSTRAINTS = {"typed": typed_constraints, "ragged": ragged_constraints}


@pytest.fixture(params=[(b, c) for b in BASES for c in CONSTRAINTS], ids=lambda p: f"{p[0]}-{p[1]}")
def case(request: pytest.FixtureRequest) -> Case:
    base, kind = request.param
    constraints = CONSTRAINTS[kind]()
    return TypedSquared(randomised(BASES[base]()), constraints), constraints


def all_triples() -> torch.Tensor:
    """Every (h, r, t), ordered so that ``.view(E, R, E)`` indexes ``[h, r, t]``."""
    h, r, t = torch.meshgrid(torch.arange(E), torch.arange(R), torch.arange(E), indexing="ij")
    return torch.stack([h, r, t], -1).reshape(-1, 3)


def joint(model: TypedSquared) -> torch.Tensor:
    """``p[h, r, t]`` by pointwise scoring of every triple."""
    with torch.no_grad():
        return model.log_prob(all_triples()).exp().view(E, R, E)


def allowed_cube(constraints: DomainConstraints) -> torch.Tensor:
    return constraints.check(all_triples()).view(E, R, E)


def ratio_or_neg_inf(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(num > 0, torch.log(num) - torch.log(den), torch.full_like(num, NEG_INF))


def test_sums_to_one_zero_exactly_on_violations_and_positive_elsewhere(case: Case) -> None:
    model, constraints = case
    with torch.no_grad():
        log_p = model.log_prob(all_triples()).view(E, R, E)
    allowed = allowed_cube(constraints)
    assert torch.all(log_p[~allowed] == NEG_INF)
    assert torch.all(torch.isfinite(log_p[allowed]))
    assert log_p.logsumexp((0, 1, 2)).item() == pytest.approx(0.0, abs=1e-12)
    assert (allowed.sum() * model.epsilon).item() == pytest.approx(1.0)


def test_partition_is_the_brute_force_masked_sum(case: Case) -> None:
    model, constraints = case
    with torch.no_grad():
        phi2 = model.base.phi(all_triples()).square()
        brute = phi2[constraints.check(all_triples())].sum()
        assert model.squared_partition().item() == pytest.approx(brute.item(), rel=1e-10)
        assert model.squared_partition().item() < phi2.sum().item()


def test_tail_and_head_tables_are_brute_force_ratios_with_neg_inf_exactly_where_disallowed(case: Case) -> None:
    model, constraints = case
    p = joint(model)
    h, r = torch.meshgrid(torch.arange(E), torch.arange(R), indexing="ij")
    h, r = h.reshape(-1), r.reshape(-1)
    with torch.no_grad():
        tails, heads = model.log_tails(h, r), model.log_heads(r, h)  # second: (?, r, t = h)
    assert torch.equal(tails == NEG_INF, ~constraints.allowed_tails[r])
    assert torch.equal(heads == NEG_INF, ~constraints.allowed_heads[r])
    live = p[h, r].sum(-1) > 0  # contexts of positive probability
    brute = ratio_or_neg_inf(p[h, r], p[h, r].sum(-1, keepdim=True))
    assert torch.allclose(tails[live], brute[live], rtol=1e-10)
    assert torch.allclose(tails[live].logsumexp(-1), torch.zeros(int(live.sum()), dtype=torch.float64))
    column = p[:, r, h].T  # (B, E): p(s, r, t = h) over s
    live = column.sum(-1) > 0
    brute = ratio_or_neg_inf(column, column.sum(-1, keepdim=True))
    assert torch.allclose(heads[live], brute[live], rtol=1e-10)


def test_pointwise_conditionals_match_the_tables_and_brute_force(case: Case) -> None:
    model, constraints = case
    p = joint(model)
    triples = all_triples()
    live = constraints.check(triples)
    hrt = triples[live]
    h, r, t = hrt.unbind(-1)
    with torch.no_grad():
        assert torch.allclose(model.log_tail(hrt), model.log_tails(h, r).gather(1, t[:, None]).squeeze(1))
        assert torch.allclose(model.log_head(hrt), model.log_heads(r, t).gather(1, h[:, None]).squeeze(1))
        relation = model.log_relation(hrt)
        every_h, every_r, every_t = triples.unbind(-1)
        assert torch.equal(model.log_tail(triples) == NEG_INF, ~constraints.allowed_tails[every_r, every_t])
        assert torch.equal(model.log_head(triples) == NEG_INF, ~constraints.allowed_heads[every_r, every_h])
    assert torch.allclose(relation, torch.log(p[h, r, t] / p[h, :, t].sum(-1)), rtol=1e-10)


def test_relation_table_sums_to_one_and_is_neg_inf_exactly_where_no_domain_fits(case: Case) -> None:
    model, constraints = case
    h, t = torch.meshgrid(torch.arange(E), torch.arange(E), indexing="ij")
    h, t = h.reshape(-1), t.reshape(-1)
    with torch.no_grad():
        table = model.log_relations(h, t)
    fits = (constraints.allowed_heads[:, h] & constraints.allowed_tails[:, t]).T
    assert torch.equal(table == NEG_INF, ~fits)
    some = fits.any(-1)
    assert torch.allclose(table[some].logsumexp(-1), torch.zeros(int(some.sum()), dtype=torch.float64))


def test_marginals_are_brute_force_sums_and_chain_to_the_joint(case: Case) -> None:
    model, _ = case
    p = joint(model)
    heads = torch.arange(E)
    with torch.no_grad():
        log_h = model.log_marginal_head()
        log_rh = model.log_relation_given_head(heads)
    assert torch.allclose(log_h, ratio_or_neg_inf(p.sum((1, 2)), torch.ones(())), rtol=1e-10)
    p_hr = p.sum(2)
    brute = ratio_or_neg_inf(p_hr, p_hr.sum(1, keepdim=True))
    assert torch.equal(log_rh == NEG_INF, brute == NEG_INF)
    assert torch.allclose(log_rh[p_hr > 0], brute[p_hr > 0], rtol=1e-10)


def test_everything_allowed_equals_the_untyped_circuit() -> None:
    for make in BASES.values():
        base = randomised(make())
        model = TypedSquared(base, everything())
        triples = all_triples()
        h, r, t = triples.unbind(-1)
        with torch.no_grad():
            assert model.epsilon == base.epsilon
            assert torch.allclose(model.log_prob(triples), base.log_prob(triples), rtol=1e-12)
            assert torch.allclose(model.log_tails(h, r), base.log_tails(h, r), rtol=1e-12)
            assert torch.allclose(model.log_heads(r, t), base.log_heads(r, t), rtol=1e-12)
            assert torch.allclose(model.log_relation(triples), base.log_relation(triples), rtol=1e-12)
            assert torch.allclose(model.log_marginal_head(), base.log_marginal_head(), rtol=1e-12)
            assert torch.allclose(model.log_relation_given_head(h), base.log_relation_given_head(h), rtol=1e-12)


def test_log_partition_gradient_matches_finite_differences(case: Case) -> None:
    model, _ = case
    params = [model.base.entities, model.base.relations]
    grads = torch.autograd.grad(model.log_partition(), params)
    step = 1e-6
    for param, grad in zip(params, grads, strict=True):
        flat, numeric = param.data.view(-1), torch.empty(param.numel(), dtype=torch.float64)
        for i in range(param.numel()):
            keep = flat[i].item()
            flat[i] = keep + step
            up = model.log_partition().item()
            flat[i] = keep - step
            down = model.log_partition().item()
            flat[i] = keep
            numeric[i] = (up - down) / (2 * step)
        assert torch.isfinite(grad).all()
        assert torch.allclose(grad.view(-1), numeric, rtol=1e-6, atol=1e-8)


def test_log_prob_gradient_is_finite_through_the_masks(case: Case) -> None:
    model, constraints = case
    hrt = all_triples()[constraints.check(all_triples())]
    h, r, t = hrt.unbind(-1)
    loss = -(model.log_prob(hrt).sum() + model.log_tail(hrt).sum() + model.log_head(hrt).sum()
             + model.log_relation(hrt).sum() + model.log_tails(h, r).gather(1, t[:, None]).sum())
    loss.backward()
    assert torch.isfinite(model.base.entities.grad).all() and torch.isfinite(model.base.relations.grad).all()


def test_samples_never_break_the_constraints_and_follow_the_joint(case: Case) -> None:
    model, constraints = case
    n = 40_000
    triples = sample(model, n, seed=3)
    assert constraints.check(triples).all()
    counts = torch.bincount((triples[:, 0] * R + triples[:, 1]) * E + triples[:, 2], minlength=E * R * E)
    tv = 0.5 * (counts.double() / n - joint(model).reshape(-1)).abs().sum()
    assert tv.item() < 0.05  # about 4 standard deviations for the at most 36 allowed triples


def test_factories_size_the_base_from_the_constraints() -> None:
    constraints = typed_constraints()
    for model, kind in ((typed_cp2(constraints, 2), CP2), (typed_complex2(constraints, 2), ComplEx2)):
        assert isinstance(model.base, kind)
        assert (model.num_entities, model.num_relations, model.dim) == (E, R, 2)
        # phi starts near 1 on every triple, so Z is about the number of allowed ones: the model starts uniform
        assert model.log_partition().item() == pytest.approx(math.log(1 + model.num_allowed), abs=1e-2)
        assert model.num_allowed == int(constraints.check(all_triples()).sum())


def test_bad_inputs_are_refused_in_one_line() -> None:
    with pytest.raises(TypeError, match="SquaredCircuit"):
        TypedSquared(torch.nn.Linear(2, 2), typed_constraints())
    with pytest.raises(TypeError, match="DomainConstraints"):
        TypedSquared(CP2(E, R, D), torch.ones(R, E, dtype=torch.bool))
    with pytest.raises(ValueError, match="constraints cover 3 relations and 6 entities"):
        TypedSquared(CP2(E + 1, R, D), typed_constraints())
    nothing = torch.zeros(R, E, dtype=torch.bool)
    with pytest.raises(ValueError, match="allow no triple"):
        TypedSquared(CP2(E, R, D), DomainConstraints(nothing, nothing.clone()))


def test_sampling_builds_the_typed_grams_once_per_draw() -> None:
    model = TypedSquared(randomised(CP2(6, 3, 3, init_sigma=0.1).double()), typed_constraints()).double()
    calls = []
    grams = model.grams
    model.grams = lambda: calls.append(1) or grams()  # type: ignore[method-assign]
    draws = sample(model, 200, seed=0, batch_size=7)
    assert len(calls) == 1 and bool(typed_constraints().check(draws).all())
