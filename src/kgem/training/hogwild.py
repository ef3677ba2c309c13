"""HOGWILD training (Recht et al. 2011): worker processes of one thread each update the same parameters, kept in
shared memory, without locks, as PyTorch-BigGraph and DGL-KE train on a CPU.

A step of shared-negative training is about a hundred small operations; in one process of ``n`` threads each of them
wakes the other threads and waits for them, while ``n`` processes of one thread never do. ``bench/compare``
measured kgem's PyTorch-BigGraph-style TransE step 1.6x faster in two processes of one thread than in one process
of two threads. The price is reproducibility: workers race on the rows they share, so two runs differ (with one
worker, training is the ordinary deterministic loop). Sparse gradients and a row-wise optimizer keep the workers
apart, each step touching only its batch's rows; so HOGWILD takes the optimizers whose state is fixed up front:
``rowadagrad``, ``adagrad`` and ``sgd`` without momentum.

Workers are forked (POSIX): they see the parent's model, optimizer and data without copying them. They ignore
SIGINT (the parent finishes the epoch and handles it); a worker's error is raised in the parent.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

import torch
from torch import nn

from kgem.errors import ConfigError, TrainingError
from kgem.training.optim import Adagrad, RowAdagrad, plain_sgd

T = TypeVar("T")


def share(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Move the parameters and the optimizer's state to shared memory, where every worker updates them."""
    if not hogwild_optimizer(optimizer):
        raise ConfigError(f"HOGWILD workers need an optimizer with state fixed up front and a step safe without "
                          f"locks (kgem's rowadagrad or adagrad, or sgd without momentum), got "
                          f"{type(optimizer).__module__}.{type(optimizer).__name__}")
    model.share_memory()
    if isinstance(optimizer, RowAdagrad):
        optimizer.init_state()
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                value.share_memory_()


def hogwild_optimizer(optimizer: torch.optim.Optimizer) -> bool:
    """Whether all of ``optimizer``'s state exists before its first step (so it can be shared up front) and its
    step survives other workers' lost writes: not torch's Adagrad, which reads its divisor back from the shared
    sum (see ``kgem.training.optim.Adagrad``)."""
    return plain_sgd(optimizer) or isinstance(optimizer, RowAdagrad | Adagrad)


def run_workers(workers: int, work: Callable[[int], T]) -> list[T]:
    """``work(rank)`` for every rank in ``range(workers)``, each in a forked process with one thread; their return
    values in rank order. A worker's exception, or its death, is raised here as a TrainingError naming it."""
    if "fork" not in multiprocessing.get_all_start_methods():
        raise ConfigError("HOGWILD workers need the fork start method (Linux, macOS); use one worker here")
    context = multiprocessing.get_context("fork")
    started: list[tuple[Any, Connection]] = []
    for rank in range(workers):
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_worker, args=(work, rank, send), name=f"kgem-hogwild-{rank}", daemon=True)
        process.start()
        send.close()
        started.append((process, receive))
    results, failures = [], []
    for rank, (process, receive) in enumerate(started):
        try:
            status, value = receive.recv()
        except EOFError:
            status, value = "died", None
        process.join()
        if status == "ok":
            results.append(value)
        else:
            failures.append(f"worker {rank} " + (f"failed: {value}" if status == "error"
                                                  else f"died (exit code {process.exitcode})"))
    if failures:
        raise TrainingError("; ".join(failures))
    return results


def _worker(work: Callable[[int], Any], rank: int, send: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    try:
        result = work(rank)
    except BaseException as error:  # reported to the parent, which raises it
        send.send(("error", f"{type(error).__name__}: {error}"))
    else:
        send.send(("ok", result))
    finally:
        send.close()
