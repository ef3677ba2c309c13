"""Mixed CPU-GPU training (training.mixed): the entity table and its row-wise Adagrad sums stay in CPU memory, rows go
to the compute device per batch and their gradient comes back. With the CPU as the device (how CI runs it) a mixed
run must equal the plain sparse rowadagrad run bit for bit, save as a plain model, and resume exactly."""

from __future__ import annotations

import pytest
import torch

import kgem
from kgem.configs import ModelConfig, TrainingConfig
from kgem.data import load_dataset
from kgem.errors import ConfigError
from kgem.factory import mixed_from_config, model_from_config, trainer_from_config
from kgem.pipeline import pipeline
from kgem.training import Checkpoints
from kgem.training.mixed import HostTable

BASE = {"data": {"dataset": "nations"}, "model": {"name": "transe", "dim": 8},
        "training": {"approach": "slcwa", "loss": "margin_ranking", "num_negatives": 8, "optimizer": "rowadagrad",
                     "lr": 0.1, "epochs": 3, "early_stopping": False, "batch_size": 128}}


def with_training(**changes: object) -> dict:
    return {**BASE, "training": {**BASE["training"], **changes}}


@pytest.mark.parametrize("changes", [{}, {"shared_negatives": True, "filtered": True}],
                         ids=["per-row-negatives", "shared-filtered"])
@pytest.mark.parametrize("model", [{"name": "transe", "dim": 8, "args": {"normalize": "step"}},
                                   {"name": "complex", "dim": 8, "inverse": False}], ids=["transe-step", "complex"])
def test_a_mixed_run_equals_the_plain_sparse_run(changes, model) -> None:
    plain = pipeline({**with_training(**changes), "model": model}, progress=False)
    mixed = pipeline({**with_training(mixed=True, **changes), "model": model}, progress=False)
    assert isinstance(mixed.model.entity, HostTable) and mixed.model.entity.weight.device.type == "cpu"
    assert mixed.history.losses == plain.history.losses
    assert torch.equal(mixed.model.entity.weight.detach(), plain.model.entity.weight.detach())
    assert torch.equal(mixed.model.relation.weight, plain.model.relation.weight)
    assert mixed.metrics()["mrr"].tolist() == plain.metrics()["mrr"].tolist()


def test_a_mixed_run_saves_a_plain_model(tmp_path) -> None:
    result = pipeline(with_training(mixed=True), progress=False, output=tmp_path / "run")
    loaded = kgem.load(tmp_path / "run" / "model")
    assert not isinstance(loaded.model.entity, HostTable)
    hrt = result.dataset.test.hrt
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.score_hrt(hrt), result.model.eval().score_hrt(hrt))


def test_a_mixed_run_resumes_exactly_from_a_checkpoint(tmp_path) -> None:
    """The row sums are optimizer state: checkpointed with it, so 2 + 2 epochs equal 4."""
    ds = load_dataset("nations")

    def trainer(epochs: int):  # type: ignore[no-untyped-def]
        torch.manual_seed(0)
        cfg = TrainingConfig(**{**BASE["training"], "mixed": True, "epochs": epochs})
        model = model_from_config(ModelConfig(name="transe", dim=8), ds.num_entities, ds.num_relations, sparse=True)
        model = mixed_from_config(cfg, model, torch.device("cpu"))
        return model, trainer_from_config(cfg, model, progress=False)

    whole_model, whole = trainer(4)
    whole.fit(ds.train.hrt, 4)
    _, first = trainer(2)
    first.fit(ds.train.hrt, 2, checkpoints=Checkpoints(tmp_path / "ck"))
    again_model, again = trainer(4)
    history = again.fit(ds.train.hrt, 4, checkpoints=Checkpoints(tmp_path / "ck"), resume=True)
    assert len(history.losses) == 4
    assert torch.equal(again_model.entity.weight.detach(), whole_model.entity.weight.detach())


@pytest.mark.parametrize(("changes", "model", "message"), [
    ({"approach": "1vsall", "loss": "cross_entropy"}, None, "approach slcwa"),
    ({"optimizer": "adam"}, None, "optimizer rowadagrad"),
    ({"workers": 2}, None, "workers 1"),
    ({"optimizer": "adam", "objective": "pll"}, {"name": "complex2", "dim": 4}, "plain embedding table"),
])
def test_mixed_training_refuses_what_it_was_not_built_for(changes, model, message) -> None:
    config = with_training(mixed=True, **changes)
    if model is not None:
        config["model"] = model
    with pytest.raises(ConfigError, match=f"^training.mixed needs .*{message}"):
        pipeline(config, progress=False)


def test_asynchronous_row_updates_train_as_well_as_synchronous_ones() -> None:
    """Not bit-exact (a batch may read a row its predecessor is still updating): close losses and MRR."""
    changes = {"epochs": 6, "batch_size": 64}
    plain = pipeline(with_training(mixed=True, **changes), progress=False)
    fast = pipeline(with_training(mixed=True, async_update=True, **changes), progress=False)
    assert isinstance(fast.model.entity, HostTable) and fast.model.entity.updates is not None
    assert fast.model.entity.updates.pending is None  # the last update was waited for
    assert fast.history.losses == pytest.approx(plain.history.losses, rel=0.1)
    assert float(fast.metrics()["mrr"].iloc[-1]) == pytest.approx(float(plain.metrics()["mrr"].iloc[-1]), abs=0.05)


@pytest.mark.parametrize(("changes", "message"), [({"async_update": True}, "set training.mixed too"),
                                                  ({"async_update": True, "mixed": True, "clip_grad_norm": 1.0},
                                                   "clip_grad_norm to null")])
def test_asynchronous_updates_need_a_mixed_table_and_no_clipping(changes, message) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainingConfig(**{**BASE["training"], **changes})
