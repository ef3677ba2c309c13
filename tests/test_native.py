"""The optional native kernels: the same results as the torch ops they replace, built once, optional."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from kgem.evaluation import RankCounts
from kgem.ops import native

needs_library = pytest.mark.skipif(native.library() is None, reason="no C compiler: native kernels unavailable")


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty build cache; the loaded library is forgotten before and after the test."""
    monkeypatch.setenv("KGEM_CACHE_DIR", str(tmp_path))
    native.reset()
    yield tmp_path
    native.reset()


def counts_of(true: torch.Tensor, scores: torch.Tensor, rows: torch.Tensor | None,
              cols: torch.Tensor | None) -> tuple[list[int], ...]:
    counts = RankCounts.zeros(len(scores)).add_excluding(true, scores.clone(), rows, cols, in_place=True)
    return counts.better.tolist(), counts.equal.tolist(), counts.candidates.tolist(), [bool(counts.nan)]


def tie_heavy_block(seed: int, batch: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                  torch.Tensor]:
    """Scores from {-2..2} (many ties), true scores from the block, and distinct excluded pairs in shuffled order."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(-2, 3, (batch, width), generator=g).float()
    true = scores[torch.arange(batch), torch.randint(width, (batch,), generator=g)]
    flat = torch.randperm(batch * width, generator=g)[: batch * width // 5]
    return true, scores, flat // width, flat % width


@needs_library
@pytest.mark.parametrize(("batch", "width"), [(3, 7), (40, 4000)])  # one thread; rows split across threads
def test_count_ranks_equals_the_torch_counts(batch: int, width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    true, scores, rows, cols = tie_heavy_block(0, batch, width)
    keep = ((rows != 1) | (cols != 3)) & ((rows != 2) | (cols != 0))  # (1, 3) is excluded once, (2, 0) never
    rows, cols = torch.cat([rows[keep], torch.tensor([1])]), torch.cat([cols[keep], torch.tensor([3])])
    excluded_nan, counted_nan, nan_true = scores.clone(), scores.clone(), true.clone()
    excluded_nan[1, 3] = counted_nan[2, 0] = nan_true[1] = float("nan")

    def all_counts() -> list[object]:
        first = rows == 0
        return [counts_of(true, scores, rows, cols), counts_of(true, scores, None, None),
                counts_of(true[:1], scores[:1], rows[first], cols[first]),
                [counts_of(t, s, rows, cols)[3] for t, s in ((true, excluded_nan), (true, counted_nan),
                                                              (nan_true, scores))]]

    fast = all_counts()
    monkeypatch.setattr(native, "library", lambda: None)
    assert fast == all_counts()
    assert fast[3] == [[False], [True], [True]]  # a NaN is reported where it is counted, or in a true score


@needs_library
def test_count_ranks_by_hand() -> None:
    scores = torch.tensor([[3.0, 1.0, 3.0, 5.0, float("nan")], [0.0, 0.0, 0.0, 0.0, 0.0]])
    true = torch.tensor([3.0, 0.0])
    offsets, excluded = torch.tensor([0, 2, 3]), torch.tensor([3, 4, 1])  # row 0 leaves out 5.0 and NaN, row 1 one 0
    better, equal, removed, nan = native.count_ranks(scores, true, offsets, excluded).tolist()
    assert (better, equal, removed, nan) == ([0, 0], [2, 4], [2, 1], [0, 0])
    assert native.count_ranks(scores, torch.tensor([float("nan"), 0.0]))[3].tolist() == [2, 0]
    strided = torch.zeros(2, 10)[:, ::2]  # a non-contiguous row: copied first
    assert native.count_ranks(strided, torch.zeros(2))[1].tolist() == [5, 5]


@needs_library
def test_neg_sqrt_is_the_correctly_rounded_negative_root() -> None:
    x = torch.randn(300, 500, generator=torch.Generator().manual_seed(0)) * 1e3
    x.view(-1)[:6] = torch.tensor([-0.0, 0.0, float("nan"), float("inf"), -1e-30, 1e-40])
    finished = x.clone()
    assert native.neg_sqrt_(finished)
    exact = -np.sqrt(np.maximum(x.double().numpy(), 0.0)).astype(np.float32)  # float64 root, rounded once
    np.testing.assert_array_equal(finished.numpy(), exact)
    torch_ops = x.clone().clamp_min_(0).sqrt_().neg_()  # torch's CPU sqrt may be one unit in the last place off
    assert torch.allclose(finished, torch_ops, rtol=2**-22, atol=0, equal_nan=True)
    assert not native.neg_sqrt_(x.double()) and not native.neg_sqrt_(x.T)  # not float32 / not contiguous: untouched


@needs_library
def test_builds_once_into_the_cache_then_loads(fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert native.library() is not None
    assert list(fresh_cache.glob("kernels-*.so")) == [native.library_path()] and not list(fresh_cache.glob("*.tmp"))
    native.reset()

    def no_compiler(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached library should have been loaded")

    monkeypatch.setattr(subprocess, "run", no_compiler)
    assert native.library() is not None


@needs_library
def test_a_damaged_cached_library_is_rebuilt(fresh_cache: Path) -> None:
    built = native.library_path()
    assert built is not None and built.parent == fresh_cache
    built.write_bytes(b"not a shared library")  # e.g. left by a full disk
    assert native.library() is not None and built.stat().st_size > 1000


def test_without_a_compiler_or_when_disabled_torch_ops_are_used(fresh_cache: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    true, scores, rows, cols = tie_heavy_block(1, 5, 9)
    monkeypatch.setenv("CC", str(fresh_cache / "no-such-compiler"))
    assert native.library() is None and not native.usable(scores)
    assert not list(fresh_cache.glob("*.so")) and not list(fresh_cache.glob("*.tmp"))
    counted = counts_of(true, scores, rows, cols)
    native.reset()
    monkeypatch.setenv("CC", "false")  # a compiler that fails
    assert native.library() is None and not list(fresh_cache.glob("*.tmp"))
    native.reset()
    monkeypatch.delenv("CC")
    monkeypatch.setenv("KGEM_NATIVE", "0")
    assert native.library() is None and counts_of(true, scores, rows, cols) == counted


@needs_library
def test_count_ranks_in_a_forked_process_after_the_parent_used_threads() -> None:
    from kgem.training.hogwild import run_workers

    true, scores, _, _ = tie_heavy_block(2, 40, 4000)
    with_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        parent = native.count_ranks(scores, true)  # the parent's thread pool exists now; a child must not use it

        def child(rank: int) -> list[list[int]]:
            torch.set_num_threads(2)
            return native.count_ranks(scores, true).tolist()

        assert run_workers(1, child) == [parent.tolist()]
    finally:
        torch.set_num_threads(with_threads)
