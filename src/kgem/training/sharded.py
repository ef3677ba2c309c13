"""Sharded training (``training.distributed: sharded``): PyTorch-BigGraph's partitions and buckets, over
torch.distributed.

The entities are split into ``P`` partitions (seeded, sizes differing by at most one) and the training edges into
``P × P`` buckets by the partitions of their head and tail. An epoch is a sequence of *rounds*: in each round every
rank trains one bucket, and no two ranks' buckets share a partition, so no two ranks train edges of the same
entity at the same time, and the ranks never wait for each other within a round. ``bucket_passes`` > 1 goes over
the buckets that many times per epoch, a slice of each bucket at a time, so that a small graph's epoch is not one
bucket after another (that order alone cost 0.05 of UMLS's MRR).

At the end of a round the ranks exchange what changed, through collectives:
- every trained tensor but the entity table (relations, biases, ...), with its row-wise Adagrad sums, moves by the
  mean of the ranks' changes since the round began (model averaging, optimizer state included). Each rank trains
  every relation of its bucket: relation rows are few, and averaging their changes once a round is what DGL-KE's
  relation partitioning (``--rel_part``) exists to avoid paying every step, so it has nothing left to save here;
- the entity rows, as the negatives came. With ``shard_negatives: bucket`` (PyTorch-BigGraph's way) a bucket's
  negatives are entities of its two partitions, so a rank changes only those rows, and it broadcasts them (with
  their sums) to the others. With ``graph`` (the default) negatives come from the whole graph and move rows of
  other partitions too: the table is averaged like the relations. Those pushes matter: on UMLS, dropping them (or
  drawing negatives from the bucket) costs 0.1–0.2 of the MRR, since an edge's query is then never pushed away
  from the entities of the partitions its bucket does not touch. Summing the changes instead of averaging them,
  or keeping a bucket's rows as their trainer left them, lost 0.03–0.15 more there: a round's changes fit its
  bucket, and the mean damps that.
After the exchange every rank holds the same model: validation, checkpoints and the saved model are those of a
single process, and a run interrupted by a signal stops after a round and resumes at the next one.

Compared with the replicated mode (``kgem.training.distributed``), the ranks talk once a round instead of once a
step, so steps cost what a single process's do. The result is not that of a single process: it depends on the
partitions, the passes and the world size, and is reproducible for given ones. With one process the same schedule
runs its buckets in turn.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from kgem.errors import ConfigError
from kgem.models.model import Model
from kgem.models.representation import Embedding
from kgem.models.storage import release_rows
from kgem.training.approaches import SLCWA
from kgem.training.distributed import Replicas
from kgem.training.optim import RowAdagrad, plain_sgd


class Partitions:
    """``count`` partitions of ``num_entities`` entities, drawn with ``seed``: ``of[e]`` is entity ``e``'s
    partition, ``members[p]`` the sorted ids of partition ``p``. ``contiguous``: partition ``p`` is the range of ids
    ``bounds[p]:bounds[p + 1]`` instead (PyTorch-BigGraph's layout, which partitioned training copies in and out of
    a stored table in one piece: ``kgem.training.partitioned``)."""

    def __init__(self, num_entities: int, count: int, seed: int, contiguous: bool = False) -> None:
        if not 1 <= count <= num_entities:
            raise ConfigError(f"training.partitions must be between 1 and the number of entities ({num_entities}), "
                              f"got {count}")
        self.count = count
        self.bounds = [p * num_entities // count for p in range(count + 1)]
        if contiguous:
            sizes = torch.tensor(self.bounds[1:]) - torch.tensor(self.bounds[:-1])
            self.of = torch.repeat_interleave(torch.arange(count), sizes)
            self.members = [torch.arange(a, b) for a, b in itertools.pairwise(self.bounds)]
        else:
            order = torch.randperm(num_entities, generator=torch.Generator().manual_seed(seed))
            self.of = torch.empty(num_entities, dtype=torch.long)
            self.of[order] = torch.arange(num_entities) % count
            self.members = list(torch.split(torch.argsort(self.of, stable=True),
                                            torch.bincount(self.of, minlength=count).tolist()))

    def buckets(self, hrt: torch.Tensor, block: int = 1 << 22) -> list[torch.Tensor]:
        """The row numbers of ``hrt`` in each bucket; bucket ``b`` holds heads of partition ``b // count`` and
        tails of partition ``b % count``. The bucket keys are computed ``block`` rows at a time, as 16-bit numbers
        where they fit (a linear-time stable sort), so a graph of 10**8 edges needs no edge-sized temporaries
        beyond the keys and the result."""
        keys = torch.empty(len(hrt), dtype=torch.int16 if self.count**2 <= 2**15 else torch.int32)
        sizes = torch.zeros(self.count**2, dtype=torch.long)
        for start in range(0, len(hrt), block):
            part = hrt[start : start + block]
            key = self.of[part[:, 0]] * self.count + self.of[part[:, 2]]
            keys[start : start + block] = key
            sizes += torch.bincount(key, minlength=self.count**2)
            release_rows(hrt, start, start + block)  # a mapped split's pages back (kgem.ops.pages)
        order = torch.from_numpy(np.argsort(keys.numpy(), kind="stable"))
        return list(torch.split(order, sizes.tolist()))

    def touched(self, bucket: int) -> list[int]:
        """The partitions a bucket's edges touch (one for a diagonal bucket)."""
        head, tail = divmod(bucket, self.count)
        return [head] if head == tail else [head, tail]

    def resident(self, bucket: int) -> torch.Tensor:
        """The entities of a bucket's partitions: its edges' heads and tails, and its negatives."""
        return torch.cat([self.members[p] for p in self.touched(bucket)])


@dataclass
class Round:
    """One round: each rank's bucket (None: it idles), and which of the ``passes`` slices of it to train."""

    buckets: list[int | None]
    slice: int


class Epoch:
    """An epoch of sharded training, all drawn from ``seed``: ``passes`` passes over the buckets, each pass training
    a different slice of every bucket (of a fixed random order of its edges), so that a small graph's epoch is not
    one bucket after the other; ``rounds`` lists them, the same on every rank."""

    def __init__(self, partitions: Partitions, buckets: list[torch.Tensor], world: int, passes: int,
                 seed: int, order: str = "random") -> None:
        draws = torch.Generator().manual_seed(seed)
        sizes = [len(b) for b in buckets]
        self.rounds = [Round(taken, s) for s in range(passes)
                       for taken in rounds(partitions, sizes, world, draws, order)]
        self.bucket_seeds = torch.randint(2**62, (len(buckets),), generator=draws).tolist()
        self.step_seeds = torch.randint(2**62, (len(self.rounds), world), generator=draws).tolist()
        self.buckets, self.passes = buckets, passes

    def edges(self, number: int, rank: int) -> torch.Tensor:
        """The row numbers rank ``rank`` trains in round ``number`` (its bucket's slice, in a random order)."""
        bucket = self.rounds[number].buckets[rank]
        if bucket is None:
            return torch.zeros(0, dtype=torch.long)
        rows = self.buckets[bucket]
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(self.bucket_seeds[bucket]))
        return rows[torch.tensor_split(order, self.passes)[self.rounds[number].slice]]


BUCKET_ORDERS = ("random", "affinity")


def rounds(partitions: Partitions, sizes: list[int], world: int, generator: torch.Generator,
           order: str = "random") -> list[list[int | None]]:
    """An epoch's schedule: rounds of ``world`` bucket numbers (None: the rank idles), each non-empty bucket once, no
    partition twice in a round. Buckets are taken greedily in random orders drawn from ``generator`` (so every rank
    computes the same schedule); of several orders, the one with the fewest rounds wins, as a round with an idle
    rank costs a round's time for less than a round's work.

    ``order``: ``random`` takes them as drawn; ``affinity`` gives each rank, where it can, a bucket sharing a
    partition with its bucket of the round before (PyTorch-BigGraph's affinity order), so that partitioned
    training copies one partition in and out between them instead of two."""
    check_bucket_order(order)
    tries = max(1, min(16, 4096 // max(len(sizes), 1)))
    found = [_greedy(partitions, sizes, world, generator, order == "affinity") for _ in range(tries)]
    return min(found, key=len)


def check_bucket_order(order: str) -> None:
    if order not in BUCKET_ORDERS:
        raise ConfigError(f"training.bucket_order must be one of {', '.join(BUCKET_ORDERS)}, got {order!r}")


def check_schedule(partitions: int | None, passes: int, order: str, round_checkpoints: int) -> None:
    """The schedule's settings: passes, bucket order and round checkpoints (which need partitions)."""
    if passes < 1:
        raise ConfigError(f"bucket_passes must be at least 1, got {passes}")
    check_bucket_order(order)
    if round_checkpoints < 0 or (round_checkpoints and partitions is None):
        raise ConfigError(f"round_checkpoints ({round_checkpoints}) counts the rounds of sharded training "
                          f"between checkpoints: 0 or more, with partitions")


def _greedy(partitions: Partitions, sizes: list[int], world: int, generator: torch.Generator,
            affinity: bool) -> list[list[int | None]]:
    pending = [int(b) for b in torch.randperm(len(sizes), generator=generator) if sizes[int(b)]]
    schedule: list[list[int | None]] = []
    before: list[set[int]] = [set() for _ in range(world)]  # each rank's partitions of the round before
    while pending:
        taken: list[int | None] = []
        used: set[int] = set()
        for rank in range(world):
            fits = [b for b in pending if b not in taken and not set(partitions.touched(b)) & used]
            near = [b for b in fits if set(partitions.touched(b)) & before[rank]] if affinity else []
            bucket: int | None = (near or fits)[0] if near or fits else None
            taken.append(bucket)
            if bucket is not None:
                used |= set(partitions.touched(bucket))
                before[rank] = set(partitions.touched(bucket))
        pending = [b for b in pending if b not in taken]
        schedule.append(taken)
    return schedule


@dataclass
class RoundResult:
    """What the ranks agreed on at the end of a round: loss summed over their examples, batches, examples, and
    whether any rank failed (its message, or a generic one) or received a signal."""

    total: float
    batches: int
    count: int
    failure: str | None
    signal: bool


class Exchange:
    """The end-of-round exchange (see the module docstring) for one model and optimizer; without ``replicas`` (one
    process) there is nothing to exchange."""

    def __init__(self, model: Model, optimizer: torch.optim.Optimizer, partitions: Partitions,
                 replicas: Replicas | None, negatives: str = "graph") -> None:
        if isinstance(optimizer, RowAdagrad):
            optimizer.init_state()  # the sums exist before the first round, so every rank exchanges the same tensors
        self.model, self.optimizer, self.partitions, self.replicas = model, optimizer, partitions, replicas
        assert isinstance(model.entity, Embedding)  # check_sharded said so
        self.table: torch.Tensor = model.entity.weight
        # negatives from the whole graph move rows outside the bucket: the table's changes are merged too
        self.owned = negatives == "bucket"
        self.shared = [t for t in self._trained() if t is not self.table or not self.owned]
        self.start: list[torch.Tensor] = []

    def begin(self) -> None:
        """Remember the shared tensors as the round begins (their changes are averaged at its end)."""
        if self.replicas is not None:
            self.start = [t.detach().clone() for t in self._with_state(self.shared)]

    def end(self, buckets: list[int | None], total: float, batches: int, count: int, failure: str | None,
            signal: bool) -> RoundResult:
        """Agree on the round's outcome and, unless a rank failed, make every rank's model the same."""
        if self.replicas is None:
            return RoundResult(total, batches, count, failure, signal)
        replicas = self.replicas
        device = self.table.device
        total, batches_f, count_f, failed, signaled = replicas.sum(
            [total, batches, count, float(failure is not None), float(signal)], device)
        if failed and failure is None:
            failure = (f"rank {replicas.rank} of {replicas.world}: another rank's training failed (its own message "
                       f"says why); the run stops here")
        result = RoundResult(total, int(batches_f), int(count_f), failure, bool(signaled))
        if failed:
            return result
        with torch.no_grad():
            for source, bucket in enumerate(buckets):
                if bucket is not None and self.owned:
                    self._broadcast_rows(self.partitions.resident(bucket), source)
            self._merge_changes()
        self.model.invalidate_cache()
        return result

    def _merge_changes(self) -> None:
        """Every shared tensor, and its optimizer state, moved by the mean of the ranks' changes this round: one
        all-reduce per device and dtype, of every change flattened into one buffer."""
        assert self.replicas is not None
        tensors = self._with_state(self.shared)
        groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i, tensor in enumerate(tensors):
            groups.setdefault((tensor.device, tensor.dtype), []).append(i)
        for members in groups.values():
            flat = torch.cat([(tensors[i] - self.start[i]).reshape(-1) for i in members])
            self.replicas.sum_tensor(flat)
            flat /= self.replicas.world
            for i, change in zip(members, flat.split([tensors[i].numel() for i in members]), strict=True):
                tensors[i].copy_(self.start[i] + change.view_as(tensors[i]))

    def _broadcast_rows(self, ids: torch.Tensor, source: int) -> None:
        assert self.replicas is not None
        sums = self._sums(self.table)
        table_ids = ids.to(self.table.device)
        block = self.table[table_ids].reshape(len(ids), -1)
        if sums is not None:
            block = torch.cat([block, sums[ids.to(sums.device)].unsqueeze(1)], 1)
        self.replicas.broadcast(block, source)
        if sums is not None:
            sums[ids.to(sums.device)] = block[:, -1]
            block = block[:, :-1]
        self.table[table_ids] = block.reshape(len(ids), *self.table.shape[1:])

    def _trained(self) -> Iterator[torch.Tensor]:
        for group in self.optimizer.param_groups:
            yield from group["params"]

    def _sums(self, tensor: torch.Tensor) -> torch.Tensor | None:
        return self.optimizer.state[tensor].get("sum") if isinstance(self.optimizer, RowAdagrad) else None

    def _with_state(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each tensor, then its optimizer state (row-wise Adagrad's sums), if any."""
        out = []
        for tensor in tensors:
            out.append(tensor)
            sums = self._sums(tensor)
            if sums is not None:
                out.append(sums)
        return out


def check_sharded(model: object, optimizer: torch.optim.Optimizer, approach: object, negatives: str) -> None:
    """Sharded training needs a model with one plain entity table, negative sampling and an optimizer whose
    per-row state can travel with its rows (``rowadagrad``, or ``sgd`` without momentum)."""
    if negatives not in ("graph", "bucket"):
        raise ConfigError(f"sharded training draws negatives from the 'graph' or the 'bucket', got {negatives!r}")
    problems = [
        (not isinstance(model, Model) or not isinstance(model.entity, Embedding),
         "a model whose entities are a plain embedding table (not a circuit or an encoder)"),
        (not isinstance(approach, SLCWA), "approach slcwa (1vsAll and KvsAll score every entity each step)"),
        (not (isinstance(optimizer, RowAdagrad) or plain_sgd(optimizer)),
         "optimizer rowadagrad, or sgd without momentum (their per-row state travels with the rows)"),
    ]
    missing = [needs for failed, needs in problems if failed]
    if missing:
        raise ConfigError(f"sharded training (training.distributed: sharded) needs {missing[0]}")
