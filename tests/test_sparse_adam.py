"""``sparseadam`` trains every model: lazy Adam on the sparse gradients of sparse lookups, Adam on the dense ones
(layers, tables scored in full), and a resume from its checkpoint is exact."""

from __future__ import annotations

import pytest
import torch

from kgem.cli import main
from kgem.data import load_dataset
from kgem.models import build_model
from kgem.training import LOSSES, SLCWA, Checkpoints, NegativeSampler, OneVsAll, Trainer, build_optimizer

STEPS = 5
HRT = load_dataset("nations").train.hrt[:300]  # a few batches: seconds, even for ConvE


def steps(optimizer: torch.optim.Optimizer, p: torch.nn.Parameter, grads: list[torch.Tensor]) -> torch.Tensor:
    for grad in grads:
        p.grad = grad.clone()
        optimizer.step()
    return p.detach().clone()


def gradients(sparse: bool) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    grads = []
    for _ in range(STEPS):
        ids = torch.randint(0, 6, (4,), generator=generator)  # repeated rows: their gradients add up
        values = torch.randn(4, 3, generator=generator)
        grad = torch.sparse_coo_tensor(ids.unsqueeze(0), values, (6, 3), check_invariants=True)
        grads.append(grad if sparse else grad.to_dense())
    return grads


def test_dense_gradients_take_torchs_adam_step() -> None:
    start = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    a = steps(build_optimizer("sparseadam", [ours], lr=0.1), ours, gradients(sparse=False))
    b = steps(torch.optim.Adam([theirs], lr=0.1, foreach=False, fused=False), theirs, gradients(sparse=False))
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_sparse_gradients_take_torchs_sparse_adam_step() -> None:
    start = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    a = steps(build_optimizer("sparseadam", [ours], lr=0.1), ours, gradients(sparse=True))
    b = steps(torch.optim.SparseAdam([theirs], lr=0.1), theirs, gradients(sparse=True))
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    untouched = torch.ones(6, dtype=torch.bool)
    for grad in gradients(sparse=True):
        untouched[grad.coalesce().indices()[0]] = False
    assert torch.equal(a[untouched], start[untouched])  # lazy: rows no gradient named keep their values


def trainer(name: str, approach: str) -> Trainer:
    torch.manual_seed(0)
    ds = load_dataset("nations")
    model = build_model(name, ds.num_entities, ds.num_relations, 8, sparse=True)
    if approach == "slcwa":
        return Trainer(model, SLCWA(NegativeSampler(4)), LOSSES.get("margin_ranking")(),
                       build_optimizer("sparseadam", model.parameters(), lr=0.01), batch_size=64, progress=False)
    return Trainer(model, OneVsAll(), LOSSES.get("cross_entropy")(),
                   build_optimizer("sparseadam", model.parameters(), lr=0.01), batch_size=64, progress=False)


@pytest.mark.parametrize(("name", "approach"), [("transe", "slcwa"), ("conve", "1vsall"), ("distmult", "1vsall")])
def test_sparseadam_trains_models_with_dense_gradients_too(name, approach) -> None:
    history = trainer(name, approach).fit(HRT, 3)
    assert history.losses[-1] < history.losses[0]


@pytest.mark.parametrize(("name", "approach"), [("transe", "slcwa"), ("conve", "1vsall")])
def test_sparseadam_resume_is_exact(name, approach, tmp_path) -> None:
    """Bit-exact: every run in this process (see tests/test_checkpoint.py ``assert_same``)."""
    reference = trainer(name, approach)
    ref_losses = reference.fit(HRT, 3).losses
    trainer(name, approach).fit(HRT, 1, checkpoints=Checkpoints(tmp_path))
    resumed = trainer(name, approach)
    losses = resumed.fit(HRT, 3, checkpoints=Checkpoints(tmp_path), resume=True).losses
    assert losses == ref_losses
    for (key, x), y in zip(reference.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(x, y), key
    state = resumed.optimizer.state_dict()["state"]
    assert state and all(s["step"] == reference.optimizer.state_dict()["state"][i]["step"] for i, s in state.items())


@pytest.mark.parametrize("model", ["complex", "conve", "rgcn"])  # rgcn: dense lookups, Adam steps
def test_cli_trains_with_sparseadam(model, tmp_path) -> None:
    assert main(["train", "--dataset", "nations", "--dim", "8", "--epochs", "1", "-q", "--optimizer", "sparseadam",
                 "--model", model, "--output", str(tmp_path / "run")]) == 0
