"""Gradient clipping: the gradient every optimizer step sees has a joint L2 norm within the bound, dense or sparse
(a sparse gradient is clipped as the dense gradient it stands for); the config and the command line reach it."""

from __future__ import annotations

import pytest
import torch

from kgem.cli import build_parser
from kgem.cli.train import overrides_from_flags
from kgem.configs import TrainingConfig
from kgem.errors import ConfigError
from kgem.factory import trainer_from_config
from kgem.models import build_model
from kgem.pipeline import resolve_config
from kgem.training import LOSSES, SLCWA, NegativeSampler, OneVsAll, Trainer, build_optimizer, clip_grad_norm

E, R = 20, 3
HRT = torch.tensor([[h, h % R, (7 * h + 3) % E] for h in range(E)] * 3)
BOUND = 0.002


def joint_norm(params) -> float:
    """The L2 norm of all gradients together, computed independently of kgem (sparse: as the dense gradient)."""
    norms = [p.grad.coalesce().values().norm() if p.grad.is_sparse else p.grad.norm() for p in params
             if p.grad is not None]
    return float(torch.stack(norms).norm())


def train(optimizer_name: str, *, sparse: bool, clip: float | None) -> tuple[list[float], torch.nn.Module]:
    """One epoch of 4 batches; returns the gradient norm each optimizer step saw, and the model."""
    torch.manual_seed(0)
    model = build_model("distmult", E, R, 8, sparse=sparse)
    optimizer = build_optimizer(optimizer_name, model.parameters(), lr=0.5)
    seen: list[float] = []
    optimizer.register_step_pre_hook(lambda opt, *_: seen.append(joint_norm(model.parameters())))
    Trainer(model, SLCWA(NegativeSampler(8)), LOSSES.get("softplus")(), optimizer, batch_size=15, seed=0,
            progress=False, clip_grad_norm=clip).fit(HRT, 1)
    return seen, model


@pytest.mark.parametrize(("optimizer", "sparse"), [("adam", False), ("sgd", True), ("rowadagrad", True),
                                                   ("sparseadam", True)])
def test_every_step_sees_a_gradient_within_the_bound(optimizer, sparse) -> None:
    unclipped, _ = train(optimizer, sparse=sparse, clip=None)
    assert min(unclipped) > 2 * BOUND  # so the bound is active
    clipped, _ = train(optimizer, sparse=sparse, clip=BOUND)
    assert len(clipped) == 4 and max(clipped) <= BOUND * (1 + 1e-6)
    assert min(clipped) >= BOUND * (1 - 1e-6)  # scaled down to the bound, not further


def test_a_sparse_gradient_is_clipped_as_its_dense_gradient() -> None:
    _, dense = train("sgd", sparse=False, clip=BOUND)
    _, sparse = train("sgd", sparse=True, clip=BOUND)
    for (key, a), b in zip(dense.state_dict().items(), sparse.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=key)


def test_gradients_within_the_bound_are_left_alone() -> None:
    weight = torch.nn.Parameter(torch.zeros(3))
    weight.grad = torch.tensor([0.3, 0.0, 0.4])
    assert clip_grad_norm([weight], 1.0) == pytest.approx(0.5)
    assert torch.equal(weight.grad, torch.tensor([0.3, 0.0, 0.4]))
    assert clip_grad_norm([weight], 0.25) == pytest.approx(0.5)
    torch.testing.assert_close(weight.grad, torch.tensor([0.15, 0.0, 0.2]), rtol=1e-5, atol=0)


def test_bad_bounds_are_config_errors() -> None:
    model = build_model("distmult", E, R, 8)
    with pytest.raises(ConfigError, match="clip_grad_norm must be positive"):
        Trainer(model, OneVsAll(), LOSSES.get("softplus")(), build_optimizer("adam", model.parameters(), lr=0.1),
                clip_grad_norm=0.0)
    with pytest.raises(ConfigError, match="training.clip_grad_norm must be positive or null"):
        resolve_config(None, ["training.clip_grad_norm=-1"])


def test_config_and_command_line_reach_the_trainer() -> None:
    args = build_parser().parse_args(["train", "--clip_grad_norm", "0.5"])
    cfg = resolve_config(None, overrides_from_flags(args))
    assert cfg.training.clip_grad_norm == 0.5
    trainer = trainer_from_config(cfg.training, build_model("distmult", E, R, 8), progress=False)
    assert trainer.clip_grad_norm == 0.5
    assert trainer_from_config(TrainingConfig(), build_model("distmult", E, R, 8)).clip_grad_norm is None
