"""Run folders: a crash after the early stop resumes to the same end, one run at a time holds a folder, files
honour the umask, and a checkpoint that no longer fits the edited config is one clear error."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from kgem.cli import main
from kgem.config import load_config, save_config
from kgem.configs import PipelineConfig
from kgem.errors import ConfigError
from kgem.lock import FolderLock, FolderLockedError
from kgem.ops import native, process
from kgem.pipeline import PipelineResult, pipeline, resume
from kgem.training import CheckpointError
from kgem.version import __version__

# stops at epoch 2: the first validation is the best, no later one can beat it by min_delta
STOPS_EARLY = ["model.dim=8", "training.epochs=10", "training.frequency=1", "training.patience=1",
               "training.min_delta=1.0"]


def crash(*args: object, **kwargs: object) -> None:
    raise SystemExit("killed")  # stands in for kill -9 between the last checkpoint and model/


def test_a_crash_after_the_early_stop_resumes_to_the_uninterrupted_end(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    reference = pipeline(overrides=STOPS_EARLY, output=tmp_path / "ref", progress=False)
    assert reference.history.stopped_early and len(reference.history.losses) == 2
    with monkeypatch.context() as patch:
        patch.setattr(PipelineResult, "save", crash)
        with pytest.raises(SystemExit, match="killed"):
            pipeline(overrides=STOPS_EARLY, output=tmp_path / "cut", progress=False)
    assert not (tmp_path / "cut" / "model").exists() and not (tmp_path / "cut" / "metrics.csv").exists()
    resumed = resume(tmp_path / "cut", progress=False)
    assert resumed.history.losses == reference.history.losses
    assert resumed.history.validation == reference.history.validation
    assert resumed.history.best_epoch == reference.history.best_epoch and resumed.history.stopped_early
    for (name, a), (_, b) in zip(resumed.model.state_dict().items(), reference.model.state_dict().items()):
        assert torch.equal(a, b), name
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cut" / "metrics.csv"),
                                  pd.read_csv(tmp_path / "ref" / "metrics.csv"))


def test_a_second_lock_on_a_held_folder_fails_at_once(tmp_path: Path) -> None:
    with FolderLock(tmp_path):
        start = time.perf_counter()
        with pytest.raises(FolderLockedError, match=f"{tmp_path} is in use by another kgem run"):
            FolderLock(tmp_path)  # its own file descriptor: flock refuses it even in this process
        assert time.perf_counter() - start < 1
    with FolderLock(tmp_path):  # released on exit
        pass


def test_a_run_folder_in_use_is_refused_and_left_alone(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with FolderLock(run), pytest.raises(FolderLockedError, match="in use by another kgem run"):
        pipeline(overrides=STOPS_EARLY, output=run, progress=False)
    assert list(run.iterdir()) == []  # not even config.yaml was written
    pipeline(overrides=STOPS_EARLY, output=run, progress=False)  # free again
    with pytest.raises(FolderLockedError), FolderLock(run):
        resume(run, progress=False)


def test_a_failed_run_releases_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(PipelineResult, "save", crash)
        with pytest.raises(SystemExit):
            pipeline(overrides=STOPS_EARLY, output=tmp_path, progress=False)
    with FolderLock(tmp_path):
        pass


def test_the_folder_is_locked_before_the_data_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second run fails at once, not after loading a large dataset and building its model."""
    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data was read before the folder was locked")

    monkeypatch.setattr(sys.modules["kgem.pipeline"], "load_data", no_load)  # the module, not kgem.pipeline()
    with FolderLock(tmp_path), pytest.raises(FolderLockedError):
        pipeline(overrides=STOPS_EARLY, output=tmp_path, progress=False)


def test_a_run_that_fails_before_training_leaves_no_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model.args.bogus"):
        pipeline(overrides=[*STOPS_EARLY, "model.args.bogus=1"], output=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_warm_started_run_resumes_without_its_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint holds every weight: resuming neither needs nor reads the warm start's folder."""
    pipeline(overrides=["model.dim=8", "training.epochs=1"], output=tmp_path / "source", progress=False)
    warm = [*STOPS_EARLY, f"model.init_from={tmp_path / 'source' / 'model'}"]
    reference = pipeline(overrides=warm, output=tmp_path / "ref", progress=False)
    with monkeypatch.context() as patch:
        patch.setattr(PipelineResult, "save", crash)
        with pytest.raises(SystemExit):
            pipeline(overrides=warm, output=tmp_path / "cut", progress=False)
    for path in sorted((tmp_path / "source").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    resumed = resume(tmp_path / "cut", progress=False)
    assert resumed.history.losses == pytest.approx(reference.history.losses, rel=1e-6)  # two trainings: close


# another process holding the folder as FolderLock does: flock on the folder itself
HOLD = ("import fcntl, os, sys, time; os.makedirs(sys.argv[1]); fd = os.open(sys.argv[1], os.O_RDONLY); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)")


def test_kgem_train_on_a_folder_another_process_holds_exits_2_with_one_line_and_kill_9_frees_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert main(["train", "--dataset", "nations", "--dim", "8", "--epochs", "1", "-q", "--output", str(run)]) == 2
        assert capsys.readouterr().err.splitlines() == [f"kgem: error: {run} is in use by another kgem run (a train "
                                                        f"or resume still running there); wait for it to end or "
                                                        f"choose another output folder"]
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock with the process
        holder.wait()
    with FolderLock(run):
        pass


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_run_folder_and_saved_model_honour_the_umask(tmp_path: Path, umask: int, file_mode: int,
                                                     dir_mode: int) -> None:
    previous = os.umask(umask)
    try:
        pipeline(overrides=[*STOPS_EARLY, "training.epochs=1"], output=tmp_path / "run", progress=False)
    finally:
        os.umask(previous)
    found = {path.relative_to(tmp_path).as_posix(): stat.S_IMODE(path.stat().st_mode)
             for path in (tmp_path / "run").rglob("*")}
    assert {"config.yaml", "metrics.csv", "environment.json", "model/weights.safetensors", "model/entities.tsv",
            "checkpoints/epoch-000001/state.json"} <= {name.removeprefix("run/") for name in found}
    for name, mode in found.items():
        assert mode == (dir_mode if (tmp_path / name).is_dir() else file_mode), f"{name}: {oct(mode)}"
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == dir_mode


def test_the_run_folder_records_the_process_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """environment.json says how the process computed: settings that change the speed, read as the run ends."""
    threads = torch.get_num_threads()
    monkeypatch.setenv("KGEM_NATIVE", "0")
    monkeypatch.setattr(process, "_done", False)
    native.reset()
    try:
        torch.set_num_threads(1)
        pipeline(overrides=[*STOPS_EARLY, "training.epochs=1"], output=tmp_path, progress=False)
    finally:
        torch.set_num_threads(threads)
        native.reset()  # the kernels load again for the tests after this one
    assert json.loads((tmp_path / "environment.json").read_text()) == {
        "kgem_version": __version__, "torch_version": torch.__version__, "torch_threads": 1, "device": "cpu",
        "native_kernels": {"loaded": False, "used": False}, "retain_freed_memory": False}


@pytest.mark.parametrize(("edit", "problem"), [
    ({"dim": 12}, "entity.weight has shape (14, 16), expected (14, 24)"),
    ({"name": "distmult"}, "entity.weight has shape (14, 16), expected (14, 8)"),
    ({"inverse": False}, "relation.weight has shape (110, 16), expected (55, 16)"),
])
def test_resume_after_editing_the_model_config_names_the_checkpoint_and_tensor(
        tmp_path: Path, edit: dict[str, object], problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline(overrides=[*STOPS_EARLY, "training.epochs=1"], output=tmp_path, progress=False)
    cfg = load_config(PipelineConfig, tmp_path / "config.yaml")
    save_config(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **edit)), tmp_path / "config.yaml")
    checkpoint = tmp_path / "checkpoints" / "epoch-000001"
    with pytest.raises(CheckpointError, match=re.escape(f"checkpoint {checkpoint} does not fit the model: {problem}")):
        resume(tmp_path, progress=False)
    assert main(["resume", str(tmp_path), "-q"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(checkpoint) in err and "Traceback" not in err


def test_resume_after_changing_the_optimizer_names_the_checkpoint_and_both_optimizers(tmp_path: Path) -> None:
    pipeline(overrides=[*STOPS_EARLY, "training.epochs=1"], output=tmp_path, progress=False)
    cfg = load_config(PipelineConfig, tmp_path / "config.yaml")
    save_config(dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, optimizer="adam")),
                tmp_path / "config.yaml")
    checkpoint = tmp_path / "checkpoints" / "epoch-000001"
    with pytest.raises(CheckpointError, match=re.escape(f"checkpoint {checkpoint} holds Adagrad optimizer "
                                                        f"state, this run uses Adam")):
        resume(tmp_path, progress=False)


def test_relative_paths_are_saved_absolute_so_the_run_works_from_anywhere(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A dataset folder given relative to the working directory is found again by resume and by kgem evaluate
    started elsewhere."""
    import shutil

    shutil.copytree(Path(__file__).parent / "data" / "toy", tmp_path / "work" / "toy")
    monkeypatch.chdir(tmp_path / "work")
    pipeline(overrides=["data.dataset=toy", "model.dim=4", "training.epochs=1"], output="run", progress=False)
    saved = load_config(PipelineConfig, tmp_path / "work" / "run" / "config.yaml")
    assert saved.data.dataset == str(tmp_path / "work" / "toy")
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(tmp_path / "work" / "run" / "model"), "-q"]) == 0
    resume(tmp_path / "work" / "run", progress=False)
