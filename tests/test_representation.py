from __future__ import annotations

import math

import pytest
import torch

from kgem.models import INITIALIZERS, Embedding, from_tensor


def test_real_complex_and_phase_views() -> None:
    real = Embedding(4, 3, initializer=from_tensor(torch.arange(12.0).view(4, 3)))
    assert real(torch.tensor([[1, 2]])).shape == (1, 2, 3)
    assert torch.equal(real(), torch.arange(12.0).view(4, 3))
    cplx = Embedding(2, 2, kind="complex", initializer=from_tensor(torch.tensor([[1.0, 2, 3, 4], [5, 6, 7, 8]])))
    assert torch.equal(cplx(torch.tensor([1])), torch.tensor([[5 + 6j, 7 + 8j]], dtype=torch.complex64))
    phase = Embedding(1, 2, kind="phase", initializer=from_tensor(torch.tensor([[0.0, math.pi / 2]])))
    assert torch.allclose(phase(), torch.tensor([[1 + 0j, 0 + 1j]], dtype=torch.complex64), atol=1e-6)
    unit = Embedding(3, 5, normalize="forward")
    assert torch.allclose(unit().norm(dim=-1), torch.ones(3))


def test_initializers_by_name() -> None:
    torch.manual_seed(0)
    assert torch.all(Embedding(50, 4, initializer=INITIALIZERS.get("constant")(value=0.5)).weight == 0.5)
    w = Embedding(2000, 8, initializer=INITIALIZERS.get("normal")(std=0.1)).weight
    assert w.std().item() == pytest.approx(0.1, rel=0.05)
    w = Embedding(2000, 8, initializer=INITIALIZERS.get("uniform")(a=-0.2, b=0.2)).weight
    assert w.min() >= -0.2 and w.max() <= 0.2
    w = Embedding(100, 300, initializer=INITIALIZERS.get("xavier_uniform")()).weight
    assert w.abs().max() <= math.sqrt(6 / 400) + 1e-6
    assert Embedding(10, 3, kind="phase", initializer=INITIALIZERS.get("phase")()).weight.abs().max() <= math.pi
    assert INITIALIZERS.get("xavier_normal")() is not None
    with pytest.raises(ValueError, match="shape"):
        Embedding(2, 2, initializer=from_tensor(torch.zeros(3, 2)))


def test_normalize_modes_constrain_rows_at_lookup_or_in_storage() -> None:
    torch.manual_seed(0)
    raw = torch.randn(6, 4) * 3
    forward, step, free = (Embedding(6, 4, normalize=mode, initializer=from_tensor(raw))
                           for mode in ("forward", "step", "none"))
    assert torch.equal(forward.weight, raw) and torch.allclose(forward().norm(dim=-1), torch.ones(6))
    assert torch.allclose(step.weight.norm(dim=-1), torch.ones(6))  # projected at construction
    assert torch.equal(step(), step.weight) and torch.equal(free(), raw)  # lookups return the stored rows
    step.weight.data.mul_(2)
    step.constrain_()
    assert torch.allclose(step.weight.norm(dim=-1), torch.ones(6))
    cplx = Embedding(3, 2, kind="complex", normalize="step", initializer=from_tensor(torch.randn(3, 4)))
    assert torch.allclose(cplx().abs().pow(2).sum(-1), torch.ones(3))


@pytest.mark.parametrize("kind", ["real", "complex"])
def test_normalize_forward_of_an_all_zero_row_has_a_finite_gradient(kind: str) -> None:
    """A zero row is left at zero (its norm is clamped), and its gradient is finite, not sqrt(0)'s NaN."""
    raw = torch.randn(3, 4)
    raw[1] = 0
    table = Embedding(3, 2 if kind == "complex" else 4, kind=kind, normalize="forward", initializer=from_tensor(raw))
    out = table()
    (out.real.sum() + (out.imag.sum() if out.is_complex() else 0)).backward()
    assert table.weight.grad is not None and torch.isfinite(table.weight.grad).all()


def test_normalize_rejects_unknown_modes_and_phase_rows() -> None:
    with pytest.raises(ValueError, match="normalize must be one of"):
        Embedding(2, 2, normalize="always")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="phase"):
        Embedding(2, 2, kind="phase", normalize="step")


@pytest.mark.parametrize("mode", ["forward", "step", "none"])
def test_training_keeps_the_constraint_its_mode_promises(mode: str) -> None:
    """``step``: stored rows unit after every optimizer step, gradients those of the plain formula on them;
    ``forward``: stored rows drift, lookups stay unit; ``none``: nothing is unit."""
    from kgem.models import build_model
    from kgem.training import LOSSES, SLCWA, NegativeSampler, build_optimizer, train_epoch

    torch.manual_seed(0)
    model = build_model("transe", 20, 3, 8, normalize=mode)
    hrt = torch.stack([torch.randint(20, (64,)), torch.randint(3, (64,)), torch.randint(20, (64,))], 1)
    if mode == "step":  # the gradient reaches the stored rows as the un-normalised formula's does
        weight = model.entity.weight
        score = model.score_hrt(hrt[:4]).sum()
        h, r, t = weight[hrt[:4, 0]], model.relation(hrt[:4, 1]), weight[hrt[:4, 2]]
        expected = torch.autograd.grad(-(h + r - t).norm(dim=-1).sum(), weight)[0]
        assert torch.allclose(torch.autograd.grad(score, weight)[0], expected, atol=1e-6)
    optimizer = build_optimizer("adam", model.parameters(), lr=0.1)
    approach, loss = SLCWA(NegativeSampler(4)), LOSSES.get("margin_ranking")(margin=1.0)
    rows = approach.prepare(hrt, model)
    train_epoch(model, approach, rows.split(16), loss, optimizer, None, torch.Generator().manual_seed(0))
    stored = model.entity.weight.detach().norm(dim=-1)
    looked_up = model.entity().detach().norm(dim=-1)
    ones = torch.ones(20)
    assert torch.allclose(looked_up, ones, atol=1e-5) == (mode != "none")
    assert torch.allclose(stored, ones, atol=1e-5) == (mode == "step")
