"""Non-negative circuits against brute force over every triple of a tiny graph, in float64."""

from __future__ import annotations

import functools

import pytest
import torch

from circuit_table import randomised as redrawn
from kgem.circuits.base import Circuit
from kgem.circuits.nonneg import ComplExPlus, CPPlus, RESCALPlus, TuckERPlus, log_bilinear, log_matmul_exp

randomised = functools.partial(redrawn, scale=1.5)  # logits far from the near-uniform start

E, R, D = 6, 3, 4



def make(name: str, seed: int = 0) -> Circuit:
    torch.manual_seed(seed)
    if name == "tucker":
        return TuckERPlus(E, R, D, relation_dim=2)
    return {"cp": CPPlus, "complex": ComplExPlus, "rescal": RESCALPlus}[name](E, R, D)


def all_triples() -> torch.Tensor:
    return torch.cartesian_prod(torch.arange(E), torch.arange(R), torch.arange(E))


def brute_table(model: Circuit) -> torch.Tensor:
    """``log phi`` of every triple as an ``(E, R, E)`` table, one triple at a time through ``log_score``."""
    return model.log_score(all_triples()).reshape(E, R, E)


MODELS = ["cp", "complex", "rescal", "tucker"]


@pytest.mark.parametrize("name", MODELS)
def test_log_prob_sums_to_one_and_partition_is_brute_force(name: str) -> None:
    model = randomised(make(name))
    triples = all_triples()
    with torch.no_grad():
        total = torch.logsumexp(model.log_prob(triples), dim=0)
        assert abs(total.item()) < 1e-10
        assert torch.allclose(model.log_partition(), torch.logsumexp(model.log_score(triples), dim=0), atol=1e-10)


@pytest.mark.parametrize("name", MODELS)
def test_conditionals_equal_brute_force_ratios(name: str) -> None:
    model = randomised(make(name), seed=1)
    triples = all_triples()
    with torch.no_grad():
        table = brute_table(model)
        h, r, t = triples.unbind(1)
        tail = table - torch.logsumexp(table, dim=2, keepdim=True)
        head = table - torch.logsumexp(table, dim=0, keepdim=True)
        rel = table - torch.logsumexp(table, dim=1, keepdim=True)
        assert torch.allclose(model.log_tail(triples), tail[h, r, t], atol=1e-10)
        assert torch.allclose(model.log_head(triples), head[h, r, t], atol=1e-10)
        assert torch.allclose(model.log_relation(triples), rel[h, r, t], atol=1e-10)
        for cond, dim in ((model.log_tail, 2), (model.log_head, 0), (model.log_relation, 1)):
            sums = torch.logsumexp(cond(triples).reshape(E, R, E), dim=dim)
            assert torch.allclose(sums, torch.zeros_like(sums), atol=1e-10)


@pytest.mark.parametrize("name", MODELS)
def test_ranking_tables_match_pointwise_conditionals(name: str) -> None:
    model = randomised(make(name), seed=2)
    with torch.no_grad():
        hr = torch.cartesian_prod(torch.arange(E), torch.arange(R))
        tails = model.log_tails(hr[:, 0], hr[:, 1])
        assert tails.shape == (E * R, E)
        for o in range(E):
            hrt = torch.cat([hr, torch.full((E * R, 1), o)], dim=1)
            assert torch.allclose(tails[:, o], model.log_tail(hrt), atol=1e-10)
        heads = model.log_heads(hr[:, 1], hr[:, 0])  # reuse the pairs as (r, t)
        for s in range(E):
            hrt = torch.stack([torch.full((E * R,), s), hr[:, 1], hr[:, 0]], dim=1)
            assert torch.allclose(heads[:, s], model.log_head(hrt), atol=1e-10)


@pytest.mark.parametrize("name", MODELS)
def test_marginals_match_brute_force_and_chain_rule(name: str) -> None:
    model = randomised(make(name), seed=3)
    with torch.no_grad():
        joint = brute_table(model) - model.log_partition()
        p_s = torch.logsumexp(joint, dim=(1, 2))
        assert torch.allclose(model.log_marginal_head(), p_s, atol=1e-10)
        p_sr = torch.logsumexp(joint, dim=2)
        rel = model.log_relation_given_head(torch.arange(E))
        assert torch.allclose(rel, p_sr - p_s[:, None], atol=1e-10)
        hr = torch.cartesian_prod(torch.arange(E), torch.arange(R))
        chain = p_s[:, None, None] + rel[:, :, None] + model.log_tails(hr[:, 0], hr[:, 1]).reshape(E, R, E)
        assert torch.allclose(chain, joint, atol=1e-10)


def test_complex_plus_is_the_complex_score_and_non_negative() -> None:
    for scale in (1.5, 6.0):
        model = randomised(make("complex"), scale=scale, seed=4)
        assert isinstance(model, ComplExPlus)
        a = model.entity_logits.exp()
        b = a * torch.sigmoid(model.entity_imag_logits)
        alpha = model.relation_logits.exp()
        beta = alpha * torch.sigmoid(model.relation_imag_logits)
        e, w = torch.complex(a, b), torch.complex(alpha, beta)
        h, r, t = all_triples().unbind(1)
        plain = (e[h] * w[r] * e[t].conj()).sum(dim=-1).real
        assert (plain >= 0).all()
        with torch.no_grad():
            assert torch.allclose(model.log_score(all_triples()).exp(), plain, rtol=1e-10, atol=0)


@pytest.mark.parametrize("name", ["cp", "rescal", "tucker"])
def test_scores_equal_the_plain_formula(name: str) -> None:
    model = randomised(make(name), seed=10)
    h, r, t = all_triples().unbind(1)
    if isinstance(model, CPPlus):
        plain = (model.subject_logits[h].exp() * model.relation_logits[r].exp() * model.object_logits[t].exp()).sum(-1)
    elif isinstance(model, RESCALPlus):
        e, w = model.entity_logits.exp(), model.relation_logits.exp()
        plain = torch.einsum("bi,bij,bj->b", e[h], w[r], e[t])
    else:
        assert isinstance(model, TuckERPlus)
        e, w, core = model.entity_logits.exp(), model.relation_logits.exp(), model.core_logits.exp()
        plain = torch.einsum("bi,bk,bj,ikj->b", e[h], w[r], e[t], core)
    with torch.no_grad():
        assert torch.allclose(model.log_score(all_triples()).exp(), plain, rtol=1e-10, atol=0)


def test_complex_plus_partition_is_the_closed_form() -> None:
    model = randomised(make("complex"), seed=5)
    assert isinstance(model, ComplExPlus)
    a = model.entity_logits.exp()
    b = a * torch.sigmoid(model.entity_imag_logits)
    alpha = model.relation_logits.exp()
    z = (alpha.sum(0) * (a.sum(0) ** 2 + b.sum(0) ** 2)).sum()
    with torch.no_grad():
        assert torch.allclose(model.log_partition(), z.log(), atol=1e-10)


@pytest.mark.parametrize("name", MODELS)
def test_extreme_logits_stay_finite_and_normalised(name: str) -> None:
    model = make(name).double()
    gen = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(80.0 * torch.randint(-1, 2, p.shape, generator=gen, dtype=torch.float64))
        triples = all_triples()
        outputs = [model.log_prob(triples), model.log_tail(triples), model.log_head(triples),
                   model.log_relation(triples), model.log_tails(triples[:, 0], triples[:, 1]),
                   model.log_heads(triples[:, 1], triples[:, 2]), model.log_marginal_head()]
        assert all(torch.isfinite(x).all() for x in outputs)
        assert abs(torch.logsumexp(outputs[0], dim=0).item()) < 1e-9


@pytest.mark.parametrize("name", MODELS)
def test_initial_column_sums_are_one(name: str) -> None:
    model = make(name).double()
    if isinstance(model, CPPlus):
        tables = [model.subject_logits, model.relation_logits, model.object_logits]
    elif isinstance(model, RESCALPlus):
        tables = [model.entity_logits, model.relation_logits.flatten(1)]
    elif isinstance(model, TuckERPlus):
        tables = [model.entity_logits, model.relation_logits, model.core_logits.reshape(-1, 1)]
        assert abs(model.log_partition().item()) < 1e-5
    else:
        assert isinstance(model, ComplExPlus)
        tables = [model.entity_logits, model.relation_logits]
        assert model.entity_imag_logits.abs().max() < 0.1
    for table in tables:
        sums = table.detach().exp().sum(0)
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
        assert table.detach().exp().std(0).max() < 0.1 / table.shape[0]


def test_log_partition_gradient_matches_finite_differences() -> None:
    torch.manual_seed(7)
    model = randomised(ComplExPlus(3, 2, 2), seed=7)
    params = tuple(model.parameters())
    assert torch.autograd.gradcheck(lambda *_: model.log_partition(), params, fast_mode=True)


def test_log_matmul_exp_is_logsumexp_of_pairwise_sums() -> None:
    gen = torch.Generator().manual_seed(8)
    x = 50 * torch.randn(4, 5, generator=gen, dtype=torch.float64)
    y = 50 * torch.randn(3, 5, generator=gen, dtype=torch.float64)
    expect = torch.logsumexp(x[:, None, :] + y[None, :, :], dim=-1)
    assert torch.allclose(log_matmul_exp(x, y), expect, atol=1e-10)


def test_log_bilinear_is_logsumexp_of_the_contraction() -> None:
    gen = torch.Generator().manual_seed(9)
    x = 50 * torch.randn(4, 3, generator=gen, dtype=torch.float64)
    y = 50 * torch.randn(4, 2, generator=gen, dtype=torch.float64)
    core = 50 * torch.randn(3, 2, 5, generator=gen, dtype=torch.float64)
    expect = torch.logsumexp((x[:, :, None, None] + y[:, None, :, None] + core).flatten(1, 2), dim=1)
    assert torch.allclose(log_bilinear(x, y, core, "bi,bk,ikj->bj"), expect, atol=1e-10)


@pytest.mark.parametrize("cls", [CPPlus, ComplExPlus, RESCALPlus, TuckERPlus])
def test_bad_arguments_are_refused(cls: type) -> None:
    with pytest.raises(ValueError, match="num_entities must be a positive integer"):
        cls(0, R, D)
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        cls(E, R, 2.5)
    with pytest.raises(ValueError, match="init_scale must be a positive"):
        cls(E, R, D, init_scale=0.0)
    with pytest.raises(ValueError, match=r"hrt must be a \(B, 3\) integer tensor"):
        cls(E, R, D).log_score(torch.zeros(4, 2, dtype=torch.long))
