"""Speed tricks compute what the plain path computes: the sparse sampled product, the hand-written normalisation,
the one-call negative scoring and the fused optimizer, each against the straightforward autograd version."""

from __future__ import annotations

import pytest
import torch

from kgem.models import build_model
from kgem.ops.rows import unit_rows
from kgem.ops.sampled import rows_sparse_grad, sampled_dot, sampled_square_distance
from kgem.training import build_optimizer
from kgem.training.negatives import score_sampled
from references import bilinear, composed, merged, neural, translational

REFERENCE = merged(bilinear.REFERENCE, translational.REFERENCE, neural.REFERENCE, composed.REFERENCE)
E, R, D = 40, 3, 6


def grads(out: torch.Tensor, inputs: list[torch.Tensor], weight: torch.Tensor) -> list[torch.Tensor]:
    found = torch.autograd.grad((out * weight).sum(), inputs, allow_unused=True)  # UM has no relation rows in use
    return [torch.zeros_like(x) if d is None else d for x, d in zip(inputs, found, strict=True)]


SAMPLED = [(sampled_dot, lambda q, rows: (q.unsqueeze(1) * rows).sum(-1)),
           (sampled_square_distance, lambda q, rows: (q.unsqueeze(1) - rows).pow(2).sum(-1))]


@pytest.mark.parametrize(("fast_fn", "plain_fn"), SAMPLED)
@pytest.mark.parametrize(("rows", "k", "n"), [(9, 5, 30), (3, 30, 30), (4, 12, 5), (1, 1, 1)])
def test_sampled_products_equal_gather_values_and_gradients(fast_fn, plain_fn, rows, k, n) -> None:
    g = torch.Generator().manual_seed(rows * k)
    q = torch.randn(rows, 7, generator=g, dtype=torch.float64, requires_grad=True)
    table = torch.randn(n, 7, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(n, (rows, k), generator=g)
    ids[0, -1] = ids[0, 0]  # a duplicate in a row: its gradient adds up
    fast, plain = fast_fn(q, table, ids), plain_fn(q, table[ids])
    assert torch.allclose(fast, plain)
    weight = torch.randn(rows, k, generator=g, dtype=torch.float64)
    for a, b in zip(grads(fast, [q, table], weight), grads(plain, [q, table], weight), strict=True):
        assert torch.allclose(a, b)


def test_rows_with_sparse_gradient_add_into_the_dense_one() -> None:
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(12, 4, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([3, 7, 3, 0])  # a repeated row: its gradients add up
    outer = torch.randn(4, 4, generator=g, dtype=torch.float64)
    grad_sparse, = torch.autograd.grad((rows_sparse_grad(weight * 2, ids) * outer).sum() + weight.sum(), weight)
    grad_dense, = torch.autograd.grad(((weight * 2)[ids] * outer).sum() + weight.sum(), weight)
    assert grad_sparse.layout == torch.strided and torch.allclose(grad_sparse, grad_dense)


def test_sampled_dot_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="sampled_dot"):
        sampled_dot(torch.zeros(2, 3), torch.zeros(5, 4), torch.zeros(2, 1, dtype=torch.long))


def test_unit_rows_equals_autograd_normalisation() -> None:
    x = torch.randn(30, 8, dtype=torch.float64)
    x[4] *= 1e-14  # below the clamp: x / EPS, linear
    x.requires_grad_(True)
    weight = torch.randn(30, 8, dtype=torch.float64)
    plain = x / x.pow(2).sum(-1, keepdim=True).sqrt().clamp_min(1e-12)
    assert torch.allclose(unit_rows(x), plain)
    assert torch.allclose(grads(unit_rows(x), [x], weight)[0], grads(plain, [x], weight)[0])
    zero = torch.zeros(2, 3, requires_grad=True)
    assert torch.isfinite(grads(unit_rows(zero), [zero], torch.ones(2, 3))[0]).all()


def score_sampled_plain(model, hrt, ids, corrupt_head):
    """The reference: per-triple scores of every positive and every corrupted triple."""
    rows = len(hrt)
    ids = ids.expand(rows, -1)
    neg = hrt.unsqueeze(1).repeat(1, ids.shape[1], 1)
    neg[:, :, 0] = torch.where(corrupt_head.unsqueeze(1), ids, neg[:, :, 0])
    neg[:, :, 2] = torch.where(corrupt_head.unsqueeze(1), neg[:, :, 2], ids)
    pos = model.score_hrt(hrt)
    if model.inverse:  # head corruptions are scored as tail queries of the reciprocal relation
        flipped = torch.stack([neg[:, :, 2], neg[:, :, 1] + model.num_relations, neg[:, :, 0]], -1)
        neg = torch.where(corrupt_head.view(-1, 1, 1), flipped, neg)
        own = torch.stack([hrt[:, 2], hrt[:, 1] + model.num_relations, hrt[:, 0]], 1)
        pos = torch.where(corrupt_head, model.score_hrt(own), pos)
    return pos, model.score_hrt(neg.view(-1, 3)).view(rows, -1)


@pytest.mark.parametrize("batch", [12, 5])  # 5 rows of 40: gathers of few rows take the sparse-gradient path
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize(("name", "args"), [(name, args) for name, rows in REFERENCE.items() for args, _ in rows])
def test_score_sampled_equals_per_triple_scores_and_gradients(name, args, inverse, shared, batch) -> None:
    torch.manual_seed(0)
    model = build_model(name, E, R, D, inverse=inverse, **args).double().eval()
    g = torch.Generator().manual_seed(3)
    hrt = torch.stack([torch.randint(E, (batch,), generator=g), torch.randint(R, (batch,), generator=g),
                       torch.randint(E, (batch,), generator=g)], 1)
    ids = torch.randint(E, (1 if shared else batch, 9), generator=g)
    corrupt_head = torch.rand(batch, generator=g) < 0.5
    pos, neg, _ = score_sampled(model, hrt, ids, corrupt_head)
    pos_ref, neg_ref = score_sampled_plain(model, hrt, ids, corrupt_head)
    scores, scores_ref = torch.cat([pos.unsqueeze(1), neg], 1), torch.cat([pos_ref.unsqueeze(1), neg_ref], 1)
    assert torch.allclose(scores, scores_ref, atol=1e-8)
    params = [p for p in model.parameters() if p.requires_grad]
    weight = torch.randn(scores.shape, generator=g, dtype=torch.float64)
    for a, b in zip(grads(scores, params, weight), grads(scores_ref, params, weight), strict=True):
        assert torch.allclose(a, b, atol=1e-8)


def test_adam_is_fused_where_torch_has_it_and_steps_like_the_plain_one() -> None:
    def run(**kwargs):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(20, 4))
        opt = build_optimizer("adam", [p], lr=0.1, **kwargs)
        for _ in range(5):
            opt.zero_grad()
            (p.sin() * torch.arange(4.0)).sum().backward()
            opt.step()
        return p.detach(), opt

    fast, opt = run()
    plain, _ = run(foreach=False)
    assert torch.allclose(fast, plain, atol=1e-6)
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    if "fused" in opt.defaults and (major, minor) >= (2, 4):  # CPU fused Adam since torch 2.4
        assert opt.defaults["fused"]


def test_sampled_modulus_distance_equals_gather_values_and_gradients() -> None:
    from kgem.ops.sampled import ROWS_PER_CHUNK, sampled_modulus_distance

    g = torch.Generator().manual_seed(0)
    rows = ROWS_PER_CHUNK + 5  # two chunks, the second partial
    q = torch.randn(rows, 5, dtype=torch.complex128, generator=g)
    table = torch.randn(9, 5, dtype=torch.complex128, generator=g)
    ids = torch.randint(9, (rows, 12), generator=g)
    ids[0, 1] = ids[0, 0]
    q[1] = table[ids[1, 0]]  # a zero difference: abs's gradient there is 0
    q.requires_grad_(True)
    table.requires_grad_(True)
    fast, plain = sampled_modulus_distance(q, table, ids), (q.unsqueeze(1) - table[ids]).abs().sum(-1)
    assert torch.allclose(fast, plain)
    weight = torch.randn(rows, 12, generator=g, dtype=torch.float64)
    for a, b in zip(grads(fast, [q, table], weight), grads(plain, [q, table], weight), strict=True):
        assert torch.allclose(a, b)


@pytest.mark.parametrize(("name", "args"), [("bce", {}), ("bce", {"label_smoothing": 0.1}), ("softplus", {}),
                                            ("cross_entropy", {"label_smoothing": 0.1})])
def test_multi_label_loss_equals_the_dense_label_loss(name, args) -> None:
    from kgem.training import LOSSES

    loss = LOSSES.get(name)(**args)
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 11, generator=g, dtype=torch.float64, requires_grad=True)
    rows, cols = torch.tensor([0, 0, 2, 3, 5, 5, 5]), torch.tensor([1, 4, 0, 10, 2, 3, 9])
    labels = torch.zeros(6, 11, dtype=torch.float64)
    labels[rows, cols] = 1
    fast, plain = loss.multi_label(scores, rows, cols), loss.full(scores, labels)
    assert torch.allclose(fast, plain)
    assert torch.allclose(*(torch.autograd.grad(v, scores)[0] for v in (fast, plain)))


def test_row_adagrad_sparse_equals_dense_and_the_formula() -> None:
    batches = ([0, 2, 2], [5, 0], [1, 3, 4])  # duplicates, unsorted, strictly increasing (no sort needed)

    def run(sparse: bool):
        torch.manual_seed(0)
        table = torch.nn.Embedding(6, 3, sparse=sparse)
        opt = build_optimizer("rowadagrad", table.parameters(), lr=0.5)
        for ids in batches:
            opt.zero_grad()
            (table(torch.tensor(ids)).sin() * torch.arange(3.0)).sum().backward()
            opt.step()
        return table.weight.detach()

    torch.manual_seed(0)
    w = torch.nn.Embedding(6, 3).weight.detach().clone()
    total = torch.zeros(6)
    for ids in batches:  # by hand: per-row accumulator of mean squared gradients
        g = torch.zeros(6, 3)
        g.index_add_(0, torch.tensor(ids), w[ids].cos() * torch.arange(3.0))
        touched = g.abs().sum(1) > 0
        total += g.square().mean(1)
        w[touched] -= 0.5 * g[touched] / (total[touched].sqrt() + 1e-10).unsqueeze(1)
    assert torch.allclose(run(sparse=True), w, atol=1e-6)
    assert torch.allclose(run(sparse=False), w, atol=1e-6)


def test_sparse_row_gradients_are_added_into_the_dense_one_in_place() -> None:
    """The sampled product's dense table gradient arrives last and takes the gathers' sparse ones in place: no
    table-sized copy in the backward (``dense_gradient_last``)."""
    from torch.profiler import profile

    torch.manual_seed(0)
    model = build_model("transe", E, R, D, normalize="none")
    g = torch.Generator().manual_seed(3)
    hrt = torch.stack([torch.randint(E, (5,), generator=g), torch.randint(R, (5,), generator=g),
                       torch.randint(E, (5,), generator=g)], 1)
    pos, neg, _ = score_sampled(model, hrt, torch.randint(E, (5, 9), generator=g), torch.rand(5, generator=g) < 0.5)
    with profile(record_shapes=True) as backward:
        (pos.sum() - neg.sum()).backward()
    copies = [e.input_shapes for e in backward.events() if e.name in ("aten::copy_", "aten::clone")]
    assert model.entity.weight.grad is not None and not model.entity.weight.grad.is_sparse
    assert [E, D] not in [shape[0] for shape in copies if shape]
