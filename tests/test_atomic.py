"""``kgem.atomic.atomic_dir``: the one way checkpoints, downloads and saved models publish a folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kgem.atomic import atomic_dir, old_copies


def test_a_filled_folder_replaces_the_target_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_dir(target) as staging:
        (staging / "new.txt").write_text("new")
        assert not (target / "new.txt").exists()  # nothing is published before the block ends
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_an_error_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="crash"), atomic_dir(target) as staging:
        (staging / "new.txt").write_text("half")
        raise RuntimeError("crash")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_failed_rename_puts_the_old_folder_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model"
    target.mkdir()
    real, calls = os.rename, []

    def rename_once(src: object, dst: object) -> None:
        calls.append(dst)
        if len(calls) == 2:  # the new folder's rename into place
            raise OSError("disk full")
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", rename_once)
    with pytest.raises(OSError, match="disk full"), atomic_dir(target) as staging:
        (staging / "new.txt").write_text("new")
    monkeypatch.undo()
    assert target.is_dir() and not list(target.iterdir()) and old_copies(target) == []


def test_old_copies_finds_a_folder_a_crash_left_aside(tmp_path: Path) -> None:
    (tmp_path / ".model.abcd1234.old").mkdir()
    assert old_copies(tmp_path / "model") == [tmp_path / ".model.abcd1234.old"]
