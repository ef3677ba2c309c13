"""Partitioned training's memory: only the current bucket's partitions of the entity table in memory.

With ``shard_negatives: bucket`` (PyTorch-BigGraph's scheme), a bucket's edges and negatives touch only the rows of
its two partitions, and the partitions are contiguous ranges of entity ids. ``ResidentPartitions`` copies those two
ranges (and their row-wise Adagrad sums) into a buffer of two *slots*, points the entity table's parameter at the
buffer while the bucket trains (so the model, the optimizer and the loop see an ordinary, small table), and writes
the rows back into the stored table when their partition leaves a slot. The edges and the negatives' candidates
are given in the buffer's *local* ids.

The stored table is where the rows live between buckets: in memory, or a file (``model.storage: mapped``), whose
pages are handed back as soon as a partition is copied in or written back, so that a table larger than memory
trains with the resident memory of two partitions. A partition the next bucket needs stays in its slot
(``release(keep=...)``): with the ``affinity`` bucket order most buckets share a partition with the one before,
and so read and write one partition, not two. Both storages run the same copies, so they train bit for bit alike.

Everything outside a bucket (validation, checkpoints, the exchange between processes, the saved model) sees the
stored table, complete, once ``release()`` has written every slot back: a single process keeps the next bucket's
partitions without writing them back between its buckets, and writes them when a checkpoint, a signal or the end
of the epoch needs the table whole.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from kgem.models.model import Model
from kgem.models.representation import Embedding
from kgem.models.storage import release_rows
from kgem.training.optim import RowAdagrad
from kgem.training.samplers import NegativeSampler

COPY_ROWS = 1 << 16  # rows copied between a slot and the stored table at a time


class ResidentPartitions:
    """The slots of partitioned training for ``model``'s entity table, whose partitions are the ranges
    ``bounds[p]:bounds[p + 1]`` of entity ids (see the module docstring)."""

    def __init__(self, model: Model, optimizer: torch.optim.Optimizer, bounds: list[int]) -> None:
        assert isinstance(model.entity, Embedding)  # check_sharded said so
        self.weight: torch.nn.Parameter = model.entity.weight
        self.stored: torch.Tensor = self.weight.data
        self.optimizer = optimizer
        self.sums: torch.Tensor | None = None
        self.bounds = bounds
        self.capacity = max(b - a for a, b in itertools.pairwise(bounds))
        self.slots: list[int | None] = [None, None]  # the partition in each slot
        self.buffer: torch.Tensor | None = None
        self.buffer_sums: torch.Tensor | None = None

    def size(self, part: int) -> int:
        return self.bounds[part + 1] - self.bounds[part]

    @contextmanager
    def training(self, parts: list[int], sampler: NegativeSampler) -> Iterator[torch.Tensor]:
        """While a bucket of partitions ``parts`` (its heads', then its tails') trains: the table's parameter is
        the slots' buffer, the sampler's candidates are the partitions' local ids, and the context gives the
        offsets ``(2,)`` that turn the bucket's head and tail ids into local ones (``local``)."""
        self.stored = self.weight.data  # as a resume left them: the table, and its sums
        if isinstance(self.optimizer, RowAdagrad):
            self.optimizer.init_state()
            self.sums = self.optimizer.state[self.weight]["sum"]
        self._load(parts)
        assert self.buffer is not None
        offsets = torch.tensor([self.slots.index(p) * self.capacity - self.bounds[p]
                                for p in (parts[0], parts[-1])])
        sampler.candidates = torch.cat([torch.arange(self.size(p)) + self.slots.index(p) * self.capacity
                                        for p in parts])
        self.weight.data = self.buffer
        if self.sums is not None:
            self.optimizer.state[self.weight]["sum"] = self.buffer_sums
        try:
            yield offsets
        finally:
            sampler.candidates = None
            self.weight.data = self.stored
            if self.sums is not None:
                self.optimizer.state[self.weight]["sum"] = self.sums

    def release(self, keep: set[int] | frozenset[int] = frozenset(), *, write_kept: bool = True) -> None:
        """Write the slots' rows back into the stored table and empty them, but for the partitions in ``keep``,
        which stay (and are written back too unless ``write_kept`` is False: the stored table then lags behind
        them until the next ``release``, which only a single process's next bucket may allow)."""
        for slot, part in enumerate(self.slots):
            if part is None or (part in keep and not write_kept):
                continue
            self._copy(slot, part, to_store=True)
            if part not in keep:
                self.slots[slot] = None

    def close(self) -> None:
        """Write every slot back and free the buffers (at the end of an epoch: evaluation needs the memory)."""
        self.release()
        self.buffer = self.buffer_sums = None

    def _load(self, parts: list[int]) -> None:
        if self.buffer is None:
            width = self.stored.shape[1:]
            self.buffer = torch.zeros(2 * self.capacity, *width, dtype=self.stored.dtype, device=self.stored.device)
            if self.sums is not None:
                self.buffer_sums = torch.zeros(2 * self.capacity, dtype=self.sums.dtype, device=self.sums.device)
        for part in parts:
            if part in self.slots:
                continue
            slot = next(s for s, held in enumerate(self.slots) if held not in parts)
            if self.slots[slot] is not None:
                raise RuntimeError("a slot still holds rows not written back")  # release() before the next bucket
            self.slots[slot] = part
            self._copy(slot, part, to_store=False)

    def _copy(self, slot: int, part: int, *, to_store: bool) -> None:
        """Copy a partition's rows (and sums) between its slot and the stored table."""
        assert self.buffer is not None
        start, stop = self.bounds[part], self.bounds[part + 1]
        local = slice(slot * self.capacity, slot * self.capacity + stop - start)
        pairs = [(self.buffer, self.stored)]
        if self.sums is not None and self.buffer_sums is not None:
            pairs.append((self.buffer_sums, self.sums))
        with torch.no_grad():
            for first in range(start, stop, COPY_ROWS):  # a block at a time: a mapped table's pages go straight back
                last = min(first + COPY_ROWS, stop)
                into = slice(local.start + first - start, local.start + last - start)
                for buffer, stored in pairs:
                    if to_store:
                        stored[first:last].copy_(buffer[into])
                    else:
                        buffer[into].copy_(stored[first:last])
                release_rows(self.stored, first, last)


def local(edges: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """A bucket's edges ``(n, 3)`` in the slots' local ids: heads and tails shifted by their partitions' offsets."""
    out = edges.clone()
    out[:, 0] += offsets[0]
    out[:, 2] += offsets[1]
    return out
