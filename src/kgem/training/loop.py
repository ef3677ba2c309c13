"""The training loop's inner pieces: one pass over batches (``train_epoch``), one step on a part of a batch
(``local_step``), the running tally of an epoch, and the signal guard that lets an epoch end with a checkpoint."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from kgem.circuits.model import AnyModel
from kgem.errors import TrainingError
from kgem.models.storage import keep_resident_under
from kgem.ops.process import retain_freed_memory
from kgem.training.approaches import Approach
from kgem.training.distributed import Replicas
from kgem.training.losses import Loss
from kgem.training.mixed import collect_gradients, wait_for_updates
from kgem.training.optim import clip_grad_norm as clip_gradients
from kgem.training.regularizers import Regularizer


@dataclass
class Tally:
    """Running totals of one epoch: batches done and the loss summed over their examples."""

    batches: int = 0
    total: float = 0.0
    count: int = 0

    @property
    def mean(self) -> float:
        return self.total / max(self.count, 1)

    def add(self, other: Tally) -> None:
        """Count ``other``'s batches and examples in too (a worker's, or the ranks' agreed ones)."""
        self.batches, self.total, self.count = (self.batches + other.batches, self.total + other.total,
                                                self.count + other.count)


def train_epoch(model: AnyModel, approach: Approach, batches: Iterable[torch.Tensor], loss: Loss,
                optimizer: torch.optim.Optimizer, regularizer: Regularizer | None, generator: torch.Generator,
                epoch: int = 0, tally: Tally | None = None, clip_grad_norm: float | None = None,
                replicas: Replicas | None = None, signals: StopOnSignal | None = None,
                precision: torch.dtype | None = None) -> float:
    """One pass over the batches; returns the mean loss. Raises TrainingError on a non-finite loss.
    ``tally`` accumulates across calls, so an epoch interrupted and resumed reports the same mean;
    ``clip_grad_norm`` bounds the gradients' joint L2 norm before each step (``optim.clip_grad_norm``).
    With ``replicas`` each batch is the global batch: this rank trains its part, and the loss, the gradients and
    ``signals`` (a signal on any rank stops every rank after this batch) are reduced over the ranks.
    ``precision`` (``torch.bfloat16``): forward and backward under ``torch.autocast``, so the matrix products that
    score the candidates run in that type; the parameters, their gradients and the optimizer stay float32."""
    tally = tally if tally is not None else Tally()
    retain_freed_memory()
    model.train()
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        part = replicas.part(len(batch)) if replicas is not None else slice(None)
        with autocast(model.device, precision):
            current = local_step(model, approach, batch, part, loss, regularizer, generator)
        if replicas is not None:
            current, stop = replicas.sum([current, float(signals is not None and signals.received)], model.device)
            replicas.sum_gradients(model.parameters())
            if stop and signals is not None:
                signals.received = True
        if not math.isfinite(current):
            raise TrainingError(f"the loss became {current} at epoch {epoch}, batch {tally.batches}; "
                                f"try a lower learning rate or a regularizer")
        if clip_grad_norm is not None:
            clip_gradients(model.parameters(), clip_grad_norm)
        try:
            optimizer.step()
        except RuntimeError as e:  # a step scalar (Adam's lr / (1 - beta1)) past the parameters' float type
            if "overflow" not in str(e):
                raise
            raise TrainingError(f"the optimizer step overflowed at epoch {epoch}, batch {tally.batches} ({e}); "
                                f"try a lower learning rate") from e
        model.constrain_()
        if tally.batches % 64 == 63:
            keep_resident_under(model)  # mapped tables with a resident limit (kgem.models.storage)
        tally.batches += 1
        tally.total += current * len(batch)
        tally.count += len(batch)
    wait_for_updates(model)  # mixed, asynchronous: the last batch's rows are stepped before anyone reads the table
    return tally.mean


def autocast(device: torch.device, precision: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` to ``precision`` on ``device``'s kind, or nothing (None: float32 throughout)."""
    return contextlib.nullcontext() if precision is None else torch.autocast(device.type, dtype=precision)


def local_step(model: AnyModel, approach: Approach, batch: torch.Tensor, part: slice, loss: Loss,
               regularizer: Regularizer | None, generator: torch.Generator) -> float:
    """Forward and backward on ``batch[part]`` (the approach draws its randomness for the whole batch), the loss
    weighted by the part's share of the batch; returns the weighted loss (the whole batch's mean loss when the
    parts' values are summed). An empty part computes nothing but still draws."""
    fit, factors = approach.step(model, batch, loss, generator, part)
    rows = len(batch[part])
    if not rows:
        return 0.0
    value = fit + regularizer(factors) if regularizer is not None else fit
    weighted = value * (rows / len(batch))
    current = float(weighted.detach())
    if math.isfinite(current):  # a non-finite loss is reported (after the ranks agree on it), never stepped on
        weighted.backward()
    collect_gradients(model)  # mixed CPU-GPU: the host rows' gradient goes back to the CPU
    return current


class StopOnSignal:
    """Record SIGTERM/SIGINT instead of dying, so the epoch can end with a checkpoint (main thread only)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.received = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        if self.enabled:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.received = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
