"""The allocator setting is opt-in (the config, ``--retain-memory`` or ``KGEM_RETAIN_MEMORY=1``) and made once; glibc's
``mallopt`` is replaced by a recorder, so the tests neither depend on nor change this process's allocator."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from kgem.cli import build_parser
from kgem.cli.train import overrides_from_flags
from kgem.errors import ConfigError
from kgem.ops import native, process
from kgem.pipeline import pipeline, resolve_config

ON_LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
TUNED = [(-4, 0), (-1, 1 << 30), (-2, 64 << 20)]  # no mmap, trim above 1 GiB, 64 MiB top pad


@pytest.fixture
def mallopt(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The (option, value) calls to a stand-in mallopt, in a process not tuned yet, without the variable set."""
    calls: list[tuple[int, int]] = []

    def record(option: int, value: int) -> int:
        calls.append((option, value))
        return 1

    monkeypatch.setattr(process, "_done", False)
    monkeypatch.setattr(process, "_mallopt", lambda: record)
    monkeypatch.delenv("KGEM_RETAIN_MEMORY", raising=False)
    return calls


def test_off_by_default(mallopt) -> None:
    assert process.retain_freed_memory() is False
    assert mallopt == [] and not process.memory_retained()


@pytest.mark.parametrize("value", ["0", ""])
def test_zero_or_empty_variable_keeps_it_off(mallopt, monkeypatch, value) -> None:
    monkeypatch.setenv("KGEM_RETAIN_MEMORY", value)
    assert process.retain_freed_memory() is False and mallopt == []


@ON_LINUX
def test_the_variable_turns_it_on_once(mallopt, monkeypatch) -> None:
    monkeypatch.setenv("KGEM_RETAIN_MEMORY", "1")
    assert process.retain_freed_memory() is True and process.memory_retained()
    assert process.retain_freed_memory() is True  # a second call changes nothing
    assert mallopt == TUNED


@ON_LINUX
def test_a_request_turns_it_on(mallopt) -> None:
    assert process.retain_freed_memory(requested=True) is True and mallopt == TUNED


def test_a_bad_variable_is_one_clear_error(mallopt, monkeypatch) -> None:
    monkeypatch.setenv("KGEM_RETAIN_MEMORY", "yes")
    with pytest.raises(ConfigError, match="KGEM_RETAIN_MEMORY must be 0 or 1"):
        process.retain_freed_memory()


def test_the_flag_sets_the_config_field() -> None:
    assert resolve_config(None).training.retain_memory is False
    args = build_parser().parse_args(["train", "--retain-memory"])
    assert resolve_config(None, overrides_from_flags(args)).training.retain_memory is True


TINY = ["model.dim=8", "training.epochs=1", "training.early_stopping=false", "training.batch_size=1024"]


@ON_LINUX
@pytest.mark.parametrize("retain", [False, True])
def test_the_config_reaches_the_process_and_the_run_folder_records_it(mallopt, tmp_path, retain) -> None:
    pipeline(overrides=[*TINY, f"training.retain_memory={str(retain).lower()}"], output=tmp_path, progress=False)
    assert mallopt == (TUNED if retain else [])
    assert json.loads((tmp_path / "environment.json").read_text())["retain_freed_memory"] is retain


@pytest.mark.parametrize(("dtype", "used"), [(torch.float32, True), (torch.float64, False)])
def test_settings_say_the_kernels_are_used_only_for_float32_on_the_cpu(dtype, used) -> None:
    recorded = process.settings(torch.zeros(2, dtype=dtype))
    loaded = native.library() is not None
    assert recorded["native_kernels"] == {"loaded": loaded, "used": loaded and used}
    assert recorded["device"] == "cpu" and recorded["torch_threads"] == torch.get_num_threads()
