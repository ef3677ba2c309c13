"""Process-level settings that make the CPU training and evaluation loops faster.

A training step allocates and frees the same few large tensors (the ``(B, E)`` score block of KvsAll is 59 MB
on FB15k-237) over and over. glibc serves blocks above 32 MB with ``mmap`` and gives them back on free, so each
step pays a page fault per 4 KiB of every such tensor again (about 30 ms per 59 MB block here: more than the
arithmetic on it). ``retain_freed_memory`` asks glibc to serve every block from its heap and to keep freed memory
for reuse: ``bench/`` measured KvsAll steps 1.4x faster. The price is that memory freed during training is not
returned to the OS until the process ends; set ``KGEM_RETAIN_MEMORY=0`` to keep glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_done = False

# Elementwise passes over a large block run in row blocks of this many float32 (4 MB: with two threads, each core's
# half fits its 2 MB L2), so that only the first pass reads main memory and the others hit the cache.
CACHE_BLOCK_ELEMENTS = 2**20


def row_blocks(rows: int, width: int) -> list[slice]:
    """Cache-sized row blocks of a ``(rows, width)`` block, as slices."""
    step = max(1, CACHE_BLOCK_ELEMENTS // max(1, width))
    return [slice(start, start + step) for start in range(0, rows, step)]


def retain_freed_memory() -> bool:
    """Tune glibc's malloc once per process (no-op elsewhere or with ``KGEM_RETAIN_MEMORY=0``); True if tuned."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("KGEM_RETAIN_MEMORY", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (musl has no mallopt)
        return False
    _done = bool(mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, 1 << 30) and mallopt(_M_TOP_PAD, 64 << 20))
    return _done
