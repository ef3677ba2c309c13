"""The allocator setting is opt-out and idempotent."""

from __future__ import annotations

import sys

import pytest

from kgem.ops import process


def test_retain_freed_memory_can_be_turned_off(monkeypatch) -> None:
    monkeypatch.setattr(process, "_done", False)
    monkeypatch.setenv("KGEM_RETAIN_MEMORY", "0")
    assert process.retain_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_retain_freed_memory_tunes_glibc_once(monkeypatch) -> None:
    monkeypatch.setattr(process, "_done", False)
    monkeypatch.delenv("KGEM_RETAIN_MEMORY", raising=False)
    first = process.retain_freed_memory()
    assert process.retain_freed_memory() is first  # a second call changes nothing
