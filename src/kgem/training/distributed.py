"""Replicated multi-process training on torch.distributed: every rank holds the whole model, the edges of each
global batch are split across the ranks, and the gradients are summed (sparse ones as sparse tensors) before every
rank takes the same optimizer step.

The run is exact: every rank draws the same epoch order and the same negatives as a single process would for the
whole global batch (the generators are seeded alike and draw for the whole batch), computes its part, and weighs its
part's mean loss by its share of the batch, so the summed gradient is the gradient of the global batch's mean loss.
A synchronous run therefore equals single-process training with the same batch size, up to float summation order.
(Dropout masks come from each process's own torch generator, so models with dropout match in distribution only.)

The ranks also agree on when to stop: the loss and a "signal received" flag are reduced with the gradients, so a
non-finite loss or a SIGTERM/SIGINT on any rank stops all of them after the same batch. A rank that dies leaves the
others waiting in a collective for at most the process group's timeout; then they fail with a ``TrainingError``.

The processes are started by ``torchrun`` (or ``kgem train --nproc N``, which calls it): ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK`` and the rendezvous come from its environment variables (``from_environment``).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable

import torch
import torch.distributed as dist

from kgem.errors import TrainingError


class Replicas:
    """This process's place among ``world`` ranks of a replicated run (``rank`` 0 writes the run's files)."""

    def __init__(self, rank: int, world: int, host_group: dist.ProcessGroup | None = None) -> None:
        """``host_group``: a gloo group of the same ranks for tensors kept in CPU memory when the main group is
        NCCL's (which moves CUDA tensors only); None where the main group takes them."""
        self.rank, self.world, self.host_group = rank, world, host_group

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def part(self, rows: int) -> slice:
        """This rank's rows of a global batch of ``rows``: contiguous, sizes differing by at most one."""
        base, extra = divmod(rows, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Each value summed over the ranks (float64)."""
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        self._collective(lambda: dist.all_reduce(tensor))
        return tensor.tolist()

    def sum_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Sum every trainable parameter's gradient over the ranks, in one fixed order; a rank whose part did not
        reach a parameter contributes zeros (an empty sparse gradient for a sparse lookup table)."""
        for p in parameters:
            if not p.requires_grad:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grad = p.grad.coalesce() if p.grad.is_sparse else p.grad
            self._collective(lambda grad=grad: dist.all_reduce(grad))
            p.grad = grad.coalesce() if grad.is_sparse else grad

    def sum_tensor(self, tensor: torch.Tensor) -> None:
        """``tensor`` replaced, in place, by its sum over the ranks."""
        self._collective(lambda: dist.all_reduce(tensor, group=self._group(tensor)))

    def broadcast(self, tensor: torch.Tensor, source: int) -> None:
        """``tensor`` replaced, in place, by rank ``source``'s."""
        self._collective(lambda: dist.broadcast(tensor, source, group=self._group(tensor)))

    def _group(self, tensor: torch.Tensor) -> dist.ProcessGroup | None:
        return self.host_group if tensor.device.type == "cpu" else None

    def close(self) -> None:
        """Wait for every rank to finish training, then leave the process group (a process that exits with it
        still open can abort in its destructor)."""
        self._collective(lambda: dist.barrier())
        self.leave()

    def leave(self) -> None:
        """Leave the process group now (after an error: the others may be gone, so no barrier)."""
        if dist.is_initialized():
            dist.destroy_process_group()

    def _collective(self, call: object) -> None:
        try:
            call()  # type: ignore[operator]
        except RuntimeError as e:  # a peer died or timed out: gloo and NCCL say so in a RuntimeError
            first = (str(e).strip().splitlines() or ["no message"])[0]
            raise TrainingError(f"rank {self.rank} of {self.world}: another rank stopped answering ({first}); "
                                f"the run stops here, resume it from its last checkpoint") from e


def launched() -> bool:
    """Whether this process is one of several started by torchrun (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def follower() -> bool:
    """Whether this process is a rank other than 0 of a multi-process run (torchrun's ``RANK``)."""
    return launched() and int(os.environ.get("RANK", "0")) > 0


def from_environment(device: torch.device, timeout_s: float) -> Replicas | None:
    """The ``Replicas`` of a process started by torchrun (``WORLD_SIZE`` > 1), after joining its process group
    (NCCL for CUDA, gloo for the CPU; ``timeout_s`` bounds every wait for a peer); None in a single process."""
    if not launched():
        return None
    timeout = datetime.timedelta(seconds=timeout_s)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    host_group = dist.new_group(backend="gloo", timeout=timeout) if dist.get_backend() == "nccl" else None
    return Replicas(dist.get_rank(), dist.get_world_size(), host_group)


def local_device(device: torch.device) -> torch.device:
    """A CUDA run gives each process of a machine its own GPU, ``cuda:LOCAL_RANK``; the CPU stays the CPU."""
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device
