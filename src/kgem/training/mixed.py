"""Mixed CPU–GPU training (DGL-KE's ``--mix_cpu_gpu``): the entity table and its optimizer state stay in CPU memory
(pinned when the compute device is a GPU), the relation table and all compute on the device.

``HostTable`` replaces a model's entity ``Embedding``. A lookup copies the rows a batch needs to the device as a
leaf tensor that collects their gradient; ``collect_gradients`` (called by ``train_epoch`` after the backward) hands
that gradient back to the CPU as a sparse gradient of the host table, and the optimizer (row-wise Adagrad, the
only one allowed) updates the rows there, keeping its per-row sums beside the table in CPU memory. The arithmetic is
that of ``rowadagrad`` with sparse lookups, so on one device a mixed run equals a plain one; on a CPU-only machine
the same code runs with the CPU as the device, which is how it is tested. Negative sampling only: 1vsAll and KvsAll
score every entity in every step, which would copy the whole table each batch.

``training.async_update`` (DGL-KE's ``--async_update``) moves the host rows' update off the training loop: each
step hands its rows' gradient to one background thread, which applies the same row-wise Adagrad step while the next
batch is drawn, looked up and computed (at most one update in flight). A lookup does not wait for it, so a batch can
read a row its predecessor is still updating: faster where the CPU update is the bottleneck, not reproducible. A
read of the whole table (evaluation, checkpoints, the end of an epoch) waits for the update first.

The table is a buffer named ``weight``, so checkpoints and saved models keep the plain embedding's layout: a saved
model loads as an ordinary one, on any device.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from torch import nn

from kgem.models.representation import Embedding, Representation
from kgem.training.optim import RowAdagrad, row_step


class HostTable(Embedding):
    """The rows of ``table`` kept on the CPU, looked up onto ``device`` (see the module docstring). It is an
    ``Embedding`` in everything but where its rows live: same kind, transform and constraint."""

    weight: torch.Tensor  # type: ignore[assignment]  # a buffer here, not a parameter: the optimizer is given it by ``trainable_tensors``

    def __init__(self, table: Embedding, device: torch.device) -> None:
        Representation.__init__(self)  # not Embedding's: the rows are the given table's
        self.num, self.dim, self.kind, self.normalize = table.num, table.dim, table.kind, table.normalize
        self.sparse = True  # lookups of distinct ids, as a sparse table's (Model.candidates)
        self.device = torch.device(device)
        host = table.weight.detach().to("cpu").clone()
        host = host.pin_memory() if self.device.type == "cuda" else host
        self.register_buffer("weight", host.requires_grad_(True))  # trained, by the optimizer: see trainable_tensors
        self.lookups: list[tuple[torch.Tensor, torch.Tensor]] = []  # (ids on the CPU, rows on the device)
        self.updates: AsyncUpdates | None = None

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> HostTable:
        """Moving the model moves the compute, not the table: it stays in CPU memory."""
        return self

    def forward(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        host = self.weight.detach()  # the gradient reaches the table through collect_gradients, not autograd
        if ids is None:  # every row (evaluation, prediction): a copy, no gradient
            self.wait()
            return self.transform(host.to(self.device, non_blocking=True))
        flat = ids.reshape(-1).cpu()
        rows = host[flat].to(self.device, non_blocking=True)
        if torch.is_grad_enabled() and self.training:
            rows.requires_grad_(True)
            self.lookups.append((flat, rows))
        return self.transform(rows.view(*ids.shape, self.weight.shape[1]))

    def saved_as(self) -> str:
        return "Embedding"  # saved and loaded as the plain table it stands for

    def collect_gradients(self) -> None:
        """The gradient of this step's lookups as the host table's sparse gradient (rows repeated across lookups
        add up when the optimizer coalesces it); the lookups are then forgotten."""
        found = [(ids, rows.grad) for ids, rows in self.lookups if rows.grad is not None]
        self.lookups.clear()
        if not found:
            self.weight.grad = None
            return
        ids = torch.cat([i for i, _ in found])
        values = torch.cat([g for _, g in found]).to("cpu")
        grad = torch.sparse_coo_tensor(ids.unsqueeze(0), values, tuple(self.weight.shape))
        if self.updates is None:
            self.weight.grad = grad
        else:  # the background thread steps the rows; the optimizer skips a table without a gradient
            self.weight.grad = None
            self.updates.submit(self.weight, grad)

    def update_async(self, optimizer: torch.optim.Optimizer) -> None:
        """Step this table's rows in a background thread from now on (see the module docstring)."""
        self.updates = AsyncUpdates(optimizer)

    def wait(self) -> None:
        """Return once this table's pending row update (if any) is done."""
        if self.updates is not None:
            self.updates.wait()


class AsyncUpdates:
    """One background thread applying ``optimizer``'s row-wise Adagrad step to host tables, one step at a time; the
    accumulator stays in the optimizer's state, so checkpoints are unchanged."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        if not isinstance(optimizer, RowAdagrad):
            raise TypeError(f"asynchronous updates step rows with rowadagrad, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kgem-host-update")
        self.pending: Future[None] | None = None

    def submit(self, table: torch.Tensor, grad: torch.Tensor) -> None:
        self.wait()  # one update in flight: the rows' history stays in step order
        self.optimizer.init_state()
        group = next(g for g in self.optimizer.param_groups if any(p is table for p in g["params"]))
        total = self.optimizer.state[table]["sum"]
        self.pending = self.thread.submit(row_step, table.detach(), grad, total, group["lr"], group["eps"])

    def wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()  # raises the update's error here, if it failed



def host_tables(model: nn.Module) -> list[HostTable]:
    return [module for module in model.modules() if isinstance(module, HostTable)]


def collect_gradients(model: nn.Module) -> None:
    """Hand every host table's step gradient back to the CPU (a no-op for models without one)."""
    for table in host_tables(model):
        table.collect_gradients()


def update_async(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Every host table of ``model`` steps its rows in a background thread (``training.async_update``)."""
    for table in host_tables(model):
        table.update_async(optimizer)


def wait_for_updates(model: nn.Module) -> None:
    """Wait for every host table's asynchronous row update (a no-op without one)."""
    for table in host_tables(model):
        table.wait()


def trainable_tensors(model: nn.Module) -> list[torch.Tensor]:
    """What the optimizer updates: the model's parameters, then its host tables (CPU buffers with gradients)."""
    return [*model.parameters(), *(table.weight for table in host_tables(model))]
