"""Process-level settings that make the CPU training and evaluation loops faster, and a record of them.

A training step allocates and frees the same few large tensors (the ``(B, E)`` score block of KvsAll is 59 MB
on FB15k-237) over and over. glibc serves blocks above 32 MB with ``mmap`` and gives them back on free, so each
step pays a page fault per 4 KiB of every such tensor again (about 30 ms per 59 MB block here: more than the
arithmetic on it). ``retain_freed_memory`` asks glibc to serve every block from its heap and to keep freed memory
for reuse: ``bench/`` measured KvsAll steps 1.4x faster. The price is that memory freed during training is not
returned to the OS until the process ends, so it is opt-in: ``training.retain_memory: true`` (``kgem train
--retain-memory``) or ``KGEM_RETAIN_MEMORY=1`` turns it on; without either glibc keeps its defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import typing
from collections.abc import Callable
from typing import Any

import torch

from kgem.errors import ConfigError
from kgem.ops import native
from kgem.version import __version__

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_done = False
ENVIRONMENT_VARIABLE = "KGEM_RETAIN_MEMORY"

# Elementwise passes over a large block run in row blocks of this many float32 (4 MB: with two threads, each core's
# half fits its 2 MB L2), so that only the first pass reads main memory and the others hit the cache.
CACHE_BLOCK_ELEMENTS = 2**20


def row_blocks(rows: int, width: int) -> list[slice]:
    """Cache-sized row blocks of a ``(rows, width)`` block, as slices."""
    step = max(1, CACHE_BLOCK_ELEMENTS // max(1, width))
    return [slice(start, start + step) for start in range(0, rows, step)]


def retain_requested() -> bool:
    """Whether ``KGEM_RETAIN_MEMORY`` asks for the allocator setting: ``1`` yes, ``0`` or unset no."""
    value = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if value not in ("", "0", "1"):
        raise ConfigError(f"{ENVIRONMENT_VARIABLE} must be 0 or 1 (or unset), got {value!r}")
    return value == "1"


def retain_freed_memory(requested: bool = False) -> bool:
    """Tune glibc's malloc if asked (``requested``, e.g. by ``training.retain_memory``, or ``KGEM_RETAIN_MEMORY=1``),
    once per process: the setting lasts until the process ends. True if it is on (now or by an earlier call);
    False when not asked, or elsewhere than glibc on Linux."""
    global _done
    if _done:
        return True
    if not (retain_requested() or requested) or not sys.platform.startswith("linux"):
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    _done = bool(mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, 1 << 30) and mallopt(_M_TOP_PAD, 64 << 20))
    return _done


def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt``, or None where the C library has none (musl)."""
    try:
        return typing.cast(Callable[[int, int], int], ctypes.CDLL(ctypes.util.find_library("c")).mallopt)
    except (OSError, AttributeError, TypeError):
        return None


def memory_retained() -> bool:
    """Whether ``retain_freed_memory`` has tuned this process's allocator."""
    return _done


def settings(*tensors: torch.Tensor) -> dict[str, Any]:
    """The settings this process computes with, for a run's record: the versions, torch's thread count, the device of
    ``tensors`` (a model's parameters), whether the native kernels are loaded and used for them (float32 on the CPU),
    and whether the allocator setting is on. They change the speed, not the results (the thread count may change
    the last bits)."""
    loaded = native.library() is not None
    return {"kgem_version": __version__, "torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
            "device": str(tensors[0].device) if tensors else "cpu",
            "native_kernels": {"loaded": loaded, "used": loaded and native.usable(*tensors)},
            "retain_freed_memory": memory_retained()}
