"""Mixed CPU–GPU training (DGL-KE's ``--mix_cpu_gpu``): the entity table and its optimizer state stay in CPU memory
(pinned when the compute device is a GPU), the relation table and all compute on the device.

``HostTable`` replaces a model's entity ``Embedding``. A lookup copies the rows a batch needs to the device as a
leaf tensor that collects their gradient; ``collect_gradients`` (called by ``train_epoch`` after the backward) hands
that gradient back to the CPU as a sparse gradient of the host table, and the optimizer (row-wise Adagrad, the
only one allowed) updates the rows there, keeping its per-row sums beside the table in CPU memory. The arithmetic is
that of ``rowadagrad`` with sparse lookups, so on one device a mixed run equals a plain one; on a CPU-only machine
the same code runs with the CPU as the device, which is how it is tested. Negative sampling only: 1vsAll and KvsAll
score every entity in every step, which would copy the whole table each batch.

The table is a buffer named ``weight``, so checkpoints and saved models keep the plain embedding's layout: a saved
model loads as an ordinary one, on any device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from kgem.models.representation import Embedding, Representation


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

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> HostTable:
        """Moving the model moves the compute, not the table: it stays in CPU memory."""
        return self

    def forward(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        host = self.weight.detach()  # the gradient reaches the table through collect_gradients, not autograd
        if ids is None:  # every row (evaluation, prediction): a copy, no gradient
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
        self.weight.grad = torch.sparse_coo_tensor(ids.unsqueeze(0), values, tuple(self.weight.shape))



def host_tables(model: nn.Module) -> list[HostTable]:
    return [module for module in model.modules() if isinstance(module, HostTable)]


def collect_gradients(model: nn.Module) -> None:
    """Hand every host table's step gradient back to the CPU (a no-op for models without one)."""
    for table in host_tables(model):
        table.collect_gradients()


def trainable_tensors(model: nn.Module) -> list[torch.Tensor]:
    """What the optimizer updates: the model's parameters, then its host tables (CPU buffers with gradients)."""
    return [*model.parameters(), *(table.weight for table in host_tables(model))]
