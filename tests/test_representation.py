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
    unit = Embedding(3, 5, normalize=True)
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
