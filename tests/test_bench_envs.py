"""``python bench/compare/envs.py``, the documented call (bench/README.md), without network or installs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "compare" / "envs.py"


@pytest.fixture
def envs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The script as a module, its environments under tmp_path, and any install an error."""
    spec = importlib.util.spec_from_file_location("bench_envs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ENVS", tmp_path / ".envs")

    def no_install(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the test must not create environments or install packages")

    monkeypatch.setattr(module, "pip", no_install)
    monkeypatch.setattr(module.venv, "EnvBuilder", no_install)
    return module


def make_ready(envs: ModuleType, peer: str) -> None:
    python = envs.python_of(peer)
    python.parent.mkdir(parents=True)
    python.write_text("")
    (envs.ENVS / peer / envs.MARKER).write_text(json.dumps({"specs": [envs.TORCH_SPEC, *envs.PEERS[peer]]}))


def test_no_arguments_sets_up_every_peer_and_reuses_ready_ones(envs: ModuleType, capsys) -> None:
    for peer in envs.PEERS:
        make_ready(envs, peer)
    envs.main([])
    err = capsys.readouterr().err
    assert all(f"{peer}: ready {envs.python_of(peer)}" in err for peer in envs.PEERS)


def test_no_arguments_creates_what_is_missing(envs: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    make_ready(envs, "pykeen")
    created: list[str] = []
    monkeypatch.setattr(envs, "build", lambda peer, force=False: created.append(peer) or envs.python_of(peer))
    envs.main([])
    assert created == ["pbg"]


def test_status_installs_nothing(envs: ModuleType, capsys) -> None:
    make_ready(envs, "pbg")
    envs.main(["--status"])
    err = capsys.readouterr().err
    assert "pykeen: missing" in err and "pbg: ready" in err


def test_an_unknown_peer_is_a_usage_error(envs: ModuleType, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        envs.main(["pykeeen"])
    assert stop.value.code == 2 and "unknown peer 'pykeeen'" in capsys.readouterr().err
