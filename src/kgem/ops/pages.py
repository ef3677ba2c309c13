"""Memory-mapped tensors and their resident pages.

A tensor whose rows live in a file (a mapped entity table, a model loaded with ``mmap=True``) is *registered* here
with its ``np.memmap``. Reading or writing its rows pages them into this process, and the kernel counts them as
its resident memory until it reclaims them, which it does only under pressure: a scan over a table larger than
memory would hold as much of it as the machine has. ``release_rows`` hands a range of rows back
(``madvise(MADV_DONTNEED)``): the process's resident memory drops, and the rows stay in the file and the page
cache, paged back in on the next access.

- A *shared* mapping (a table file written through, ``model.storage: mapped``) keeps every write: dropping a dirty
  page from the process leaves it dirty in the page cache, which the kernel writes back.
- A *private* (copy-on-write) mapping, as a saved model is loaded with, would lose a write: its pages are released
  only while the tensor is unmodified since it was registered (its version counter, which in-place operations
  bump, is unchanged); a modified one keeps its pages.
"""

from __future__ import annotations

import mmap

import numpy as np
import torch

_MAPS: dict[int, tuple[np.memmap, int | None]] = {}  # storage address -> its map, and a private map's version


def register(tensor: torch.Tensor, array: np.memmap, *, private: bool) -> None:
    """Record that ``tensor``'s storage is ``array``'s memory map (``private``: copy-on-write)."""
    _MAPS[tensor.untyped_storage().data_ptr()] = (array, tensor._version if private else None)


def mapped(tensor: torch.Tensor) -> np.memmap | None:
    """The memory map behind ``tensor``'s storage, if it is registered."""
    found = _MAPS.get(tensor.untyped_storage().data_ptr())
    return None if found is None else found[0]


def release(tensor: torch.Tensor) -> None:
    """Drop all of a registered tensor's pages from this process, a shared map's flushed to its file first."""
    found = _MAPS.get(tensor.untyped_storage().data_ptr())
    if found is not None and tensor.ndim:
        if found[1] is None:
            found[0].flush()
        release_rows(tensor, 0, tensor.shape[0])


def release_rows(tensor: torch.Tensor, start: int, stop: int) -> None:
    """Drop the pages of rows ``[start, stop)`` of a registered tensor (the pages they lie on, the partial ones at
    the ends included) from this process; nothing for an unregistered tensor or a modified private map."""
    found = _MAPS.get(tensor.untyped_storage().data_ptr())
    if found is None or stop <= start:
        return
    array, version = found
    if version is not None and tensor._version != version:
        return
    handle = getattr(array, "_mmap", None)
    if not (isinstance(handle, mmap.mmap) and hasattr(handle, "madvise")):
        return
    row = int(tensor[0].numel() if tensor.ndim > 1 else 1) * tensor.element_size()
    base = int(array.offset) % mmap.ALLOCATIONGRANULARITY + int(tensor.storage_offset()) * tensor.element_size()
    first = (base + start * row) // mmap.PAGESIZE * mmap.PAGESIZE
    last = min(len(handle), base + stop * row)
    if last > first:
        handle.madvise(mmap.MADV_DONTNEED, first, last - first)


def resident_bytes() -> int:
    """This process's resident memory (Linux ``/proc/self/statm``; 0 where there is none)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * mmap.PAGESIZE
    except (OSError, ValueError, IndexError):
        return 0
