"""Devices: the device option of training, its checks, resume onto another device, and (marked ``cuda``, run where a
GPU exists) training on a GPU against the same training on the CPU, for every approach and a circuit."""

from __future__ import annotations

import pytest
import torch

from kgem.configs import TrainingConfig
from kgem.errors import ConfigError
from kgem.ops.devices import resolve_device
from kgem.pipeline import pipeline, resume

QUICK = {"data": {"dataset": "nations"}, "model": {"dim": 8},
         "training": {"epochs": 2, "batch_size": 256, "early_stopping": False}}


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "cpu:0:1", "tpu", "", "CUDA"])
def test_a_device_name_that_is_no_device_is_refused_by_the_config(name) -> None:
    with pytest.raises(ConfigError, match=r"^training\.device must be cpu, cuda, cuda:N or auto"):
        TrainingConfig(device=name)


def test_auto_is_the_gpu_where_there_is_one() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_training_on_an_absent_gpu_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"^training\.device 'cuda:0' cannot hold the model: ") as error:
        pipeline({**QUICK, "training": {**QUICK["training"], "device": "cuda:0"}}, progress=False)
    assert "\n" not in str(error.value)


def test_resume_can_move_a_run_to_another_device(tmp_path) -> None:
    """The checkpoints hold CPU tensors: a run resumes on whichever device is asked for (here the CPU, or the GPU
    where there is one) and ends with the uninterrupted run's metrics."""
    first = pipeline(QUICK, progress=False, output=tmp_path / "run")
    again = resume(tmp_path / "run", progress=False, device="auto")
    assert again.config.training.device == "auto"
    assert again.metrics()["mrr"].tolist() == pytest.approx(first.metrics()["mrr"].tolist(), abs=1e-6)


def trained(device: str, training: dict, model: dict | None = None) -> list[float]:
    config = {**QUICK, "model": model or QUICK["model"], "training": {**QUICK["training"], **training,
                                                                      "device": device}}
    return pipeline(config, progress=False).history.losses


GPU_CASES = [({"approach": "slcwa", "loss": "softplus", "num_negatives": 8}, None),
             ({"approach": "slcwa", "loss": "margin_ranking", "shared_negatives": True, "filtered": True}, None),
             ({"approach": "kvsall", "loss": "bce"}, None),
             ({"approach": "1vsall"}, None),
             ({"objective": "pll", "optimizer": "adam", "lr": 0.01}, {"name": "complex2", "dim": 8})]


@pytest.mark.cuda
@pytest.mark.parametrize(("training", "model"), GPU_CASES)
def test_a_gpu_trains_as_the_cpu_does(training, model) -> None:
    """Same seed, same draws (negatives and orders come from CPU generators): the losses agree to float tolerance."""
    assert trained("cuda", training, model) == pytest.approx(trained("cpu", training, model), rel=1e-4)


@pytest.mark.cuda
def test_a_run_started_on_a_gpu_resumes_on_the_cpu(tmp_path) -> None:
    config = {**QUICK, "training": {**QUICK["training"], "device": "cuda", "epochs": 1}}
    pipeline(config, progress=False, output=tmp_path / "run")
    moved = resume(tmp_path / "run", progress=False, device="cpu")
    assert all(p.device.type == "cpu" for p in moved.model.parameters())


def test_dgl_ke_gpu_flags_are_checked(capsys) -> None:
    from kgem.cli import main

    assert main(["train", "--dataset", "nations", "--gpu", "1", "1", "--epochs", "1", "-q"]) == 2
    assert "kgem: error: --gpu names a GPU twice: 1 1" in capsys.readouterr().err
    assert main(["train", "--dataset", "nations", "--gpu", "0", "1", "--nproc", "3", "--epochs", "1", "-q"]) == 2
    assert "--gpu names 2 GPUs but --nproc asks for 3 processes" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["train", "--dataset", "nations", "--gpu", "0", "--epochs", "1", "-q"]) == 2
        assert "training.device 'cuda:0' cannot hold the model" in capsys.readouterr().err
