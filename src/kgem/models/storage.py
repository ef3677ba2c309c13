"""Embedding tables kept in files: the OS page cache as their buffer (``model.storage: mapped``).

Inside ``mapped_tables(folder, min_rows)``, an ``Embedding`` of at least ``min_rows`` rows (the entity table, in
practice) gets its rows from a file in ``folder`` (float32, row-major, no header): a shared memory map, written
through as training updates the rows, paged in and out by the OS. The rows are initialised in blocks, so the table
never has to fit in memory. The default and the ``uniform`` / ``normal`` initialisers consume the random stream
block by block exactly as one call over the whole table does (blocks of 2**16 rows), so a mapped table starts, and
trains, bit for bit as the in-memory one with the same seed. Other initialisers see the whole mapped table at once.

``release_pages(module)`` hands a mapped table's resident pages back to the page cache (``madvise(DONTNEED)``
after a flush): the process's resident memory drops, the data stays in the file and the cache, and the next access
pages it back in. Training calls it at the end of every epoch, and, for a table made with a ``resident_limit``
(``model.storage_resident_mb``), whenever the process's resident memory passes that limit
(``keep_resident_under``, checked every 64 steps).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kgem.ops.pages import mapped, register, release, release_rows, resident_bytes

__all__ = ["BLOCK_ROWS", "initialise", "keep_resident_under", "mapped", "mapped_tables", "release_entity_rows",
           "release_pages", "release_rows", "resident_bytes", "table_storage"]

BLOCK_ROWS = 1 << 16
_ACTIVE: list[tuple[Path, int, list[int], int | None]] = []  # innermost context: folder, min_rows, [made], limit
_LIMITS: dict[int, int] = {}  # id(parameter storage) -> resident bytes past which its pages are handed back


@contextlib.contextmanager
def mapped_tables(folder: str | Path, min_rows: int, resident_limit: int | None = None) -> Iterator[None]:
    """Embeddings of at least ``min_rows`` rows created inside keep their rows in files under ``folder``;
    ``resident_limit`` (bytes): ``keep_resident_under`` hands their pages back when the process holds more."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    _ACTIVE.append((path, min_rows, [0], resident_limit))
    try:
        yield
    finally:
        _ACTIVE.pop()


def table_storage(num: int, width: int) -> torch.Tensor | None:
    """A file-backed ``(num, width)`` float32 tensor for a new table, or None (an ordinary one) outside
    ``mapped_tables`` or below its ``min_rows``."""
    if not _ACTIVE or num < _ACTIVE[-1][1]:
        return None
    folder, _, made, limit = _ACTIVE[-1]
    file = folder / f"table-{made[0]}.f32"
    made[0] += 1
    rows = np.memmap(file, dtype=np.float32, mode="w+", shape=(num, width))
    tensor = torch.from_numpy(rows)
    register(tensor, rows, private=False)
    if limit is not None:
        _LIMITS[tensor.untyped_storage().data_ptr()] = limit
    return tensor


def initialise(weight: torch.Tensor, initializer: Callable[[torch.Tensor], object]) -> None:
    """Apply ``initializer`` to a mapped table block by block where that is exact (uniform and normal draws), else
    at once; each block's pages go back to the cache as it is done."""
    if not _blockwise(initializer):
        initializer(weight)
        return
    for start in range(0, len(weight), BLOCK_ROWS):
        initializer(weight[start : start + BLOCK_ROWS])
        release_rows(weight, start, start + BLOCK_ROWS)


def _blockwise(initializer: Callable[[torch.Tensor], object]) -> bool:
    """Whether ``initializer`` draws the same numbers block by block as over the whole table: uniform draws do,
    normal draws do for blocks of a multiple of 16 entries (torch draws them 16 at a time)."""
    func = initializer.func if isinstance(initializer, functools.partial) else initializer
    return func in (nn.init.uniform_, nn.init.normal_)


def release_pages(module: nn.Module) -> None:
    """Flush every mapped table of ``module`` and drop its pages from this process (see the module docstring)."""
    for parameter in module.parameters():
        release(parameter)


def keep_resident_under(module: nn.Module) -> None:
    """Release the pages of ``module``'s mapped tables that have a resident limit, if the process's resident memory
    has passed it (training calls this every few dozen steps; reading the count costs microseconds)."""
    limited = [p for p in module.parameters() if p.untyped_storage().data_ptr() in _LIMITS]
    if not limited:
        return
    resident = resident_bytes()
    for parameter in limited:
        if resident > _LIMITS[parameter.untyped_storage().data_ptr()]:
            release(parameter)


def release_entity_rows(model: object, start: int, stop: int) -> None:
    """Hand back the pages of rows ``[start, stop)`` of ``model``'s entity table, if it is mapped (a scan over
    the entities calls this after each block: see ``kgem.ops.pages``)."""
    weight = getattr(getattr(model, "entity", None), "weight", None)
    if isinstance(weight, torch.Tensor):
        release_rows(weight, start, stop)
