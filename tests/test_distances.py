"""Distances have finite gradients everywhere: at an exact fit (distance 0, where d sqrt(x) / dx is infinite) and
where the expanded square ``|q|^2 - 2 q.c + |c|^2`` of the fast paths rounds to a tiny negative number. One
harness over every distance-based interaction of the registry and every scoring path (issue 13, item C1s)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from kgem.models import INTERACTIONS, build_model
from kgem.models.translational import neg_distance, neg_norm
from kgem.training.negatives import score_sampled
from references import bilinear, composed, merged, neural, translational

REFERENCE = merged(bilinear.REFERENCE, translational.REFERENCE, neural.REFERENCE, composed.REFERENCE)
DISTANCE_MODULES = ("kgem.models.translational", "kgem.models.geometric", "kgem.models.probabilistic",
                    "kgem.models.lineare", "kgem.models.triplere")
DISTANCE = sorted(n for n in INTERACTIONS.names() if INTERACTIONS.get(n).__module__ in DISTANCE_MODULES)
E, R, D = 12, 3, 4

Fit = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], None]


def _zero_relations(inter: torch.nn.Module, entity: torch.Tensor, relation: torch.Tensor) -> None:
    relation.zero_()  # no translation (rotation by angle 0; on the torus, no shift): h = t fits exactly


def _transh(inter, entity, relation) -> None:
    relation[:, inter.dim :] = 0  # any normal w_r, no translation


def _transr(inter, entity, relation) -> None:
    relation[:, : inter.relation_dim] = 0  # any M_r, no translation


def _transd(inter, entity, relation) -> None:
    relation[:, : inter.relation_dim] = 0  # any projection r_p, no translation


def _pairre(inter, entity, relation) -> None:
    relation[:, inter.dim :] = relation[:, : inter.dim]  # r_h = r_t


def _mure(inter, entity, relation) -> None:
    relation[:, : inter.dim], relation[:, inter.dim :] = 1, 0  # R = I, r = 0


def _se(inter, entity, relation) -> None:
    half = inter.dim * inter.dim
    relation[:, half:] = relation[:, :half]  # M_r,h = M_r,t


def _boxe(inter, entity, relation) -> None:
    entity.zero_()  # every point at 0 ...
    for box in relation.view(len(relation), 2, -1).unbind(1):
        box[:, : inter.dim] = 0  # ... the centre of boxes symmetric about 0 (before and after the tanh map)


def _lineare(inter, entity, relation) -> None:
    relation[:, 2 * inter.dim :] = relation[:, : inter.dim]  # r_t = r_h (TripleRE: plus the same u) ...
    relation[:, inter.dim : 2 * inter.dim] = 0  # ... and no translation


def _ignore_relations(inter, entity, relation) -> None:
    pass  # UM ignores r; KG2E has no square root, only its relation-free terms matter here


FITS: dict[str, Fit] = {"transe": _zero_relations, "rotate": _zero_relations, "toruse": _zero_relations,
                        "transh": _transh, "transr": _transr, "transd": _transd, "pairre": _pairre, "mure": _mure,
                        "se": _se, "boxe": _boxe, "um": _ignore_relations, "kg2e": _ignore_relations,
                        "lineare": _lineare, "triplere": _lineare}
VARIANTS = [pytest.param(name, args, id=f"{name}{args or ''}") for name in DISTANCE for args, _ in REFERENCE[name]]


def test_every_distance_interaction_has_an_exact_fit() -> None:
    assert set(FITS) == set(DISTANCE)


def fitted(name: str, args: dict, noise: float, inverse: bool) -> torch.nn.Module:
    """A float32 model whose entity rows are all (nearly, with ``noise``) one row of norm about 5, with relations
    that map it onto itself: every triple, every candidate, is an exact (or near) fit."""
    torch.manual_seed(0)
    model = build_model(name, E, R, D, inverse=inverse, **args).eval()
    with torch.no_grad():
        entity, relation = model.entity.weight, model.relation.weight
        row = torch.randn(entity.shape[1]) * 5 / entity.shape[1] ** 0.5
        entity.copy_(row + noise * torch.randn(entity.shape) * row.abs())
        FITS[name](model.interaction, entity, relation)
        model.constrain_()
    return model


def score_every_path(model: torch.nn.Module) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    h, r, t = (torch.randint(n, (6,), generator=g) for n in (E, R, E))
    ids = torch.randint(E, (6, 5), generator=g)
    ids[:, 0] = torch.where(torch.arange(6) % 2 == 0, h, t)  # a row's own entity among its negatives
    corrupt_head = torch.arange(6) % 2 == 0
    hrt = torch.stack([h, r, t], 1)
    outputs = [model.score_hrt(hrt), model.score_t(h, r), model.score_h(r, t), model.score_t(h, r, ids[0]),
               model.score_t_sampled(h, r, ids), model.score_h_sampled(r, t, ids)]
    for negatives in (ids, ids[:1]):  # per-row and shared negatives
        pos, neg, _ = score_sampled(model, hrt, negatives, corrupt_head)
        outputs += [pos, neg]
    return outputs


@pytest.mark.parametrize("noise", [0.0, 1e-7], ids=["exact", "near"])
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize(("name", "args"), VARIANTS)
def test_gradients_are_finite_at_an_exact_fit_in_every_scoring_path(name, args, inverse, noise) -> None:
    model = fitted(name, args, noise, inverse)
    params = [p for p in model.parameters() if p.requires_grad]
    for index, out in enumerate(score_every_path(model)):
        assert torch.isfinite(out).all(), f"scoring path {index}"
        found = torch.autograd.grad(out.sum(), params, allow_unused=True, retain_graph=True)
        for param, grad in zip(params, found, strict=True):
            assert grad is None or torch.isfinite(grad).all(), f"scoring path {index}, {tuple(param.shape)}"


def negative_square() -> tuple[torch.Tensor, torch.Tensor]:
    """A query and a candidate table whose float32 expanded squares include tiny negative numbers."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 16, generator=g) * 10
    c = q + 1e-6 * torch.randn(64, 16, generator=g)
    square = torch.addmm(q.pow(2).sum(-1, keepdim=True), q, c.T, alpha=-2) + c.pow(2).sum(-1)
    assert (square < 0).any()  # the case under test exists
    return q, c


def test_gradient_is_finite_where_the_expanded_square_rounds_below_zero() -> None:
    from kgem.ops.compare import sqrt_distance
    from kgem.ops.sampled import sampled_square_distance

    q, c = negative_square()
    ids = torch.arange(len(c)).unsqueeze(0)
    compare = build_model("transe", 2, 1, 16, normalize="none").interaction.comparator("tail")
    for fn in (lambda q, c: compare.all(q, c), lambda q, c: compare.sampled(q, c, ids),
               lambda q, c: neg_distance(q, c, 2), lambda q, c: -sqrt_distance(sampled_square_distance(q, c, ids))):
        q_, c_ = q.clone().requires_grad_(), c.clone().requires_grad_()
        out = fn(q_, c_)
        assert torch.isfinite(out).all()
        out.sum().backward()
        assert torch.isfinite(q_.grad).all() and torch.isfinite(c_.grad).all()


def test_sqrt_distance_keeps_the_value_and_has_a_finite_gradient() -> None:
    from kgem.ops.compare import sqrt_distance

    square = torch.tensor([-1e-7, 0.0, 1e-35, 4.0], requires_grad=True)
    out = sqrt_distance(square)
    assert torch.allclose(out, torch.tensor([0.0, 0.0, 0.0, 2.0]), atol=1e-14, rtol=0)
    out.sum().backward()
    assert torch.equal(square.grad, torch.tensor([0.0, 0.0, 0.0, 0.25]))  # 0 where clamped, 1 / (2 sqrt(x)) else


@pytest.mark.parametrize("p", [0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("power_norm", [False, True])
def test_norms_of_zero_coordinates_have_finite_gradients(p, power_norm) -> None:
    x = torch.tensor([[0.0, 1.0, -2.0], [0.0, 0.0, 0.0]], requires_grad=True)
    neg_norm(x, p, power_norm).sum().backward()
    assert torch.isfinite(x.grad).all()
    q = x.detach().clone().requires_grad_()
    neg_distance(q, torch.zeros(2, 3), p, power_norm).sum().backward()
    assert torch.isfinite(q.grad).all()


def symmetric_pairs(num_entities: int) -> torch.Tensor:
    """One symmetric relation over disjoint pairs, both directions: TransE drives ``r`` to 0 and each pair together,
    so the expanded squares of the shared negatives (the row's own tail, its own head) sink into rounding."""
    pairs = torch.arange(num_entities).view(-1, 2)
    zeros = torch.zeros(len(pairs), dtype=torch.long)
    forward, backward = (torch.stack([pairs[:, a], zeros, pairs[:, 1 - a]], 1) for a in (0, 1))
    return torch.cat([forward, backward])


def pbg_style(hrt: torch.Tensor):
    """bench/compare's C1s: TransE L2, unconstrained entities, 64 shared negatives, margin ranking (1), row-wise
    Adagrad 0.1, sparse gradients."""
    from kgem.training import LOSSES, SLCWA, NegativeSampler, build_optimizer

    torch.manual_seed(0)
    model = build_model("transe", int(hrt.max()) + 1, 1, 8, normalize="none", sparse=True)
    approach = SLCWA(NegativeSampler(64, shared=True))
    approach.prepare(hrt, model)
    optimizer = build_optimizer("rowadagrad", model.parameters(), lr=0.1)
    return model, approach, LOSSES.get("margin_ranking")(margin=1.0), optimizer


def test_pbg_style_transe_trains_past_exact_fits() -> None:
    """Before the safe square root the loss became NaN at batch 127 (a negative's expanded square hit 0); HOGWILD
    workers at about batch 70."""
    from kgem.training import train_epoch

    hrt = symmetric_pairs(40)
    model, approach, loss, optimizer = pbg_style(hrt)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 1 ms a step on one thread; tiny steps on two threads only wait for each other
    try:
        mean = train_epoch(model, approach, (hrt for _ in range(200)), loss, optimizer, None,
                           torch.Generator().manual_seed(0))  # raises TrainingError on a non-finite loss
    finally:
        torch.set_num_threads(threads)
    assert mean < 0.2 and all(torch.isfinite(p).all() for p in model.parameters())


def test_pbg_style_transe_trains_past_exact_fits_in_hogwild_workers() -> None:
    from kgem.training import train_epoch
    from kgem.training.hogwild import run_workers, share

    hrt = symmetric_pairs(40)
    model, approach, loss, optimizer = pbg_style(hrt)
    share(model, optimizer)

    def work(rank: int) -> float:
        generator = torch.Generator().manual_seed(rank)
        return train_epoch(model, approach, (hrt[torch.randperm(len(hrt), generator=generator)] for _ in range(200)),
                           loss, optimizer, None, generator)

    assert all(mean < 0.2 for mean in run_workers(2, work))  # a worker's TrainingError (NaN loss) is raised here
    assert all(torch.isfinite(p).all() for p in model.parameters())
