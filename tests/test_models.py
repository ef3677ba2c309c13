"""One harness over the model registry: every interaction against a naive per-triple reference formula, every
scoring mode against per-triple scores, and every fast path against the broadcast path."""

from __future__ import annotations

import pytest
import torch

from kgem.models import INTERACTIONS, MODELS, build_model
from kgem.models.factor import FactorInteraction
from kgem.models.literal import LITERAL_MODELS
from references import bilinear, composed, merged, neural, translational

REFERENCE = merged(bilinear.REFERENCE, translational.REFERENCE, neural.REFERENCE, composed.REFERENCE)
CASES = [(name, args, formula) for name, rows in REFERENCE.items() for args, formula in rows]
VARIANTS = [(name, args) for name, args, _ in CASES] + [("rgcn", {}), ("randombaseline", {})]
E, R, D = 7, 3, 5


def make(name: str, args: dict, inverse: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(name, E, R, D, inverse=inverse, **args).eval()  # eval: no dropout in neural models


def all_triples() -> torch.Tensor:
    grid = torch.cartesian_prod(torch.arange(E), torch.arange(R), torch.arange(E))
    return grid


def test_every_registered_interaction_has_a_reference() -> None:
    assert set(INTERACTIONS.names()) == set(REFERENCE)
    # rgcn is an encoder (tests/test_rgcn.py), the literal models combine rows with attributes (tests/test_literals.py)
    assert set(MODELS) == {*REFERENCE, "randombaseline", "rgcn", *LITERAL_MODELS}


@pytest.mark.parametrize(("name", "args", "formula"), CASES)
def test_forward_equals_reference_formula(name, args, formula) -> None:
    model = make(name, args)
    hrt = all_triples()[::5]
    with torch.no_grad():
        scores = model.score_hrt(hrt)
        h, r, t = model.entity(hrt[:, 0]), model.relation(hrt[:, 1]), model.entity(hrt[:, 2])
        inter = model.interaction
        if model.entity.normalize != "forward":
            expected = [formula(h[i], r[i], t[i], inter) for i in range(len(hrt))]
        else:  # the reference normalises itself: give it the raw rows
            raw = model.entity.weight
            expected = [formula(raw[a], r[i], raw[c], inter) for i, (a, _, c) in enumerate(hrt.tolist())]
    assert torch.allclose(scores, torch.tensor(expected, dtype=scores.dtype), atol=1e-5)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize(("name", "args"), VARIANTS)
def test_all_tails_and_heads_equal_per_triple_scores(name, args, inverse) -> None:
    model = make(name, args, inverse=inverse)
    hrt = all_triples()
    with torch.no_grad():
        per_triple = model.score_hrt(hrt).view(E, R, E)  # [h, r, t]
        h, r = torch.cartesian_prod(torch.arange(E), torch.arange(R)).unbind(1)
        tails = model.score_t(h, r).view(E, R, E)
        r2, t2 = torch.cartesian_prod(torch.arange(R), torch.arange(E)).unbind(1)
        heads = model.score_h(r2, t2).view(R, E, E).permute(2, 0, 1)  # [h, r, t]
        subset = torch.tensor([5, 1, 3])
        tails_subset = model.score_t(h, r, subset).view(E, R, 3)
        relations = model.score_r(hrt[:, 0], hrt[:, 2]).view(E, R, E, R)
    assert torch.allclose(tails, per_triple, atol=1e-5)
    assert torch.allclose(tails_subset, per_triple[:, :, subset], atol=1e-5)
    if not inverse:  # with reciprocal relations, heads are scored through r⁻¹: a different (trained) function
        assert torch.allclose(heads, per_triple, atol=1e-5)
        assert torch.allclose(relations.diagonal(dim1=1, dim2=3).permute(0, 2, 1), per_triple, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_inverse_heads_are_tails_of_reciprocal_relation(name) -> None:
    model = make(name, REFERENCE.get(name, [({}, None)])[0][0], inverse=True)
    r, t = torch.tensor([0, 2]), torch.tensor([4, 1])
    with torch.no_grad():
        assert torch.allclose(model.score_h(r, t), model.score_t(t, r + R), atol=1e-6)


@pytest.mark.parametrize(("name", "args", "formula"), CASES)
def test_fast_path_equals_broadcast_path(name, args, formula) -> None:
    model = make(name, args)
    inter = model.interaction
    with torch.no_grad():
        h, r, t = model.entity(torch.tensor([0, 3, 6])), model.relation(torch.tensor([2, 0, 1])), model.entity()
        assert torch.allclose(inter.score_t(h, r, t), inter.generic_score_t(h, r, t), atol=1e-5)
        assert torch.allclose(inter.score_h(t, r, h), inter.generic_score_h(t, r, h), atol=1e-5)
        tails, rows = model.entity(torch.tensor([1, 1, 4])), model.relation()
        assert torch.allclose(inter.score_r(h, rows, tails), inter.generic_score_r(h, rows, tails), atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_reciprocal_relation_scores_cover_every_relation_row(name) -> None:
    model = make(name, REFERENCE.get(name, [({}, None)])[0][0], inverse=True)
    h, t = torch.tensor([0, 3, 5]), torch.tensor([2, 2, 6])
    with torch.no_grad():
        scores = model.score_r(h, t, reciprocal=True)
        assert scores.shape == (3, 2 * R)
        assert torch.allclose(scores[:, :R], model.score_r(h, t), atol=1e-6)
        for rel in range(2 * R):
            hrt = torch.stack([h, torch.full_like(h, rel), t], 1)
            assert torch.allclose(scores[:, rel], model.score_hrt(hrt), atol=1e-5)


@pytest.mark.parametrize(("name", "args"), VARIANTS)
def test_sampled_scores_equal_per_triple(name, args) -> None:
    model = make(name, args)
    g = torch.Generator().manual_seed(1)
    hrt = torch.stack([torch.randint(E, (4,), generator=g), torch.randint(R, (4,), generator=g),
                       torch.randint(E, (4,), generator=g)], 1)
    ids = torch.randint(E, (4, 6), generator=g)
    with torch.no_grad():
        tails = model.score_t_sampled(hrt[:, 0], hrt[:, 1], ids)
        heads = model.score_h_sampled(hrt[:, 1], hrt[:, 2], ids)
        for k in range(6):
            as_tails = torch.stack([hrt[:, 0], hrt[:, 1], ids[:, k]], 1)
            as_heads = torch.stack([ids[:, k], hrt[:, 1], hrt[:, 2]], 1)
            assert torch.allclose(tails[:, k], model.score_hrt(as_tails), atol=1e-5)
            assert torch.allclose(heads[:, k], model.score_hrt(as_heads), atol=1e-5)


def test_chunked_broadcast_matches_single_block() -> None:
    """Bit-exact: the same tensors in this process, and RotatE's score is elementwise then a sum over each row's
    dim, so which candidates are scored together (and at what memory alignment) cannot change a bit."""
    from kgem.ops.compare import chunked

    model = make("rotate", {})
    with torch.no_grad():
        h, r, t = model.entity(torch.tensor([0, 1])), model.relation(torch.tensor([1, 2])), model.entity()
        whole = model.interaction.generic_score_t(h, r, t)
        pieces = chunked(lambda c: model.interaction(h[:, None], r[:, None], c[None]), t, h.numel(), budget=3)
    assert torch.equal(whole, pieces)


def test_rotate_relations_are_unit_rotations_and_transe_entities_unit_norm() -> None:
    rotate, transe = make("rotate", {}), make("transe", {})
    with torch.no_grad():
        assert torch.allclose(rotate.relation().abs(), torch.ones(R, D))
        assert torch.allclose(transe.entity().norm(dim=-1), torch.ones(E))


def test_random_baseline_has_nothing_to_train() -> None:
    model = build_model("randombaseline", E, R, D)
    assert not any(p.requires_grad for p in model.parameters())


def real(x: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(x) if x.is_complex() else x


FACTOR_VARIANTS = [(n, a) for n, a in VARIANTS if n in INTERACTIONS.names()
                   and issubclass(INTERACTIONS.get(n), FactorInteraction)]
STACKING_VARIANTS = [(n, a) for n, a in FACTOR_VARIANTS if INTERACTIONS.get(n).keys_are_rows]


@pytest.mark.parametrize(("name", "args"), FACTOR_VARIANTS)
def test_factors_equal_the_formula_on_both_sides(name, args) -> None:
    """The protocol's own identity, by broadcasting: compare(query, key) + biases is the paper's score, from the
    tail side and (where it factorises) from the head side; with keys_are_rows, heads are tails of reverse(r)."""
    model = make(name, args)
    inter = model.interaction
    if not inter.factorised:
        pytest.skip("this argument's score does not factorise")
    hrt = all_triples()
    h, r, t = model.entity(hrt[:, 0]), model.relation(hrt[:, 1]), model.entity(hrt[:, 2])
    expected = inter(h, r, t)
    assert torch.allclose(inter.factored_pairs(h, r, t), expected, rtol=1e-5, atol=1e-5)
    if inter.head_factors:
        assert torch.allclose(inter.factored_head_pairs(h, r, t), expected, rtol=1e-5, atol=1e-5)
    if inter.keys_are_rows:
        assert torch.allclose(inter.head_query(r, t), inter.tail_query(t, inter.reverse(r)), rtol=1e-5, atol=1e-6)
        assert torch.equal(inter.rows_of_keys(inter.keys(h, "tail")), h)
        assert inter.query_bias(h, r, "tail") is None and inter.key_bias(t, "tail") is None


def test_the_factorised_models_are_the_expected_ones() -> None:
    """The models the protocol covers (a model leaving it would silently lose its fast paths)."""
    factored = {n for n, _ in FACTOR_VARIANTS}
    assert {"distmult", "complex", "transe", "rotate", "rescal", "cp", "simple", "hole", "quate", "tucker", "conve",
            "ermlpe", "proje", "toruse", "um", "mure", "pbg", "distma", "transf", "autosf", "crosse"} <= factored
    assert {"distmult", "complex", "transe", "rotate", "rescal", "simple", "hole", "quate", "um"} <= {
        n for n, _ in STACKING_VARIANTS}


@pytest.mark.parametrize(("name", "args"), STACKING_VARIANTS)
def test_reverse_rows_equals_where_over_reverse(name, args) -> None:
    model = make(name, args)
    inter = model.interaction
    flip = torch.tensor([True, False, True, False]).unsqueeze(1)
    r = model.relation(torch.tensor([0, 1, 2, 1])).detach()
    fast, generic = r.clone().requires_grad_(), r.clone().requires_grad_()
    out, expected = inter.reverse_rows(fast, flip), torch.where(flip, inter.reverse(generic), generic)
    assert torch.equal(out, expected)  # exact: sign flips
    weights = torch.randn(real(out).shape)
    real(out).mul(weights).sum().backward()
    real(expected).mul(weights).sum().backward()
    assert torch.equal(fast.grad, generic.grad)
