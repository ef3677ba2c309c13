"""kgem's side: one configuration, one process, one JSON line on stdout.

    PYTHONPATH=bench .venv/bin/python -m compare.run_kgem --config C1 [--warmup 10 --seconds 60]

Training goes through kgem's public API only: ``build_model``, ``SLCWA`` / ``KvsAll`` with ``NegativeSampler``,
``LOSSES``, ``build_optimizer`` and ``train_epoch`` (the Trainer's own loop), fed by a batch stream that stops on the
clock. Evaluation is ``kgem.evaluation.evaluate`` with the known triples of all three splits.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from compare.common import (
    SETTINGS,
    Clock,
    Setting,
    Timing,
    current_rss_mb,
    emit,
    eval_triples,
    guarded,
    load_data,
    peak_rss_mb,
    runner_args,
    timed,
    training_result,
)


def kgem_path() -> str:
    """The file the measured kgem was imported from: the orchestrator checks that a baseline side ran its own tree's
    code, not this checkout's."""
    import kgem

    return str(kgem.__file__)


def build(setting: Setting, num_entities: int, num_relations: int, seed: int) -> Any:
    import torch

    from kgem.models import build_model

    torch.manual_seed(seed)
    dim = setting.dim // 2 if setting.complex else setting.dim  # complex models: dim complex numbers = 2 dim floats
    return build_model(setting.model, num_entities, num_relations, dim, inverse=setting.inverse,
                       sparse=setting.sparse, **setting.kgem_args)


def approach_of(setting: Setting) -> Any:
    from kgem.training import SLCWA, KvsAll, NegativeSampler

    if setting.approach == "kvsall":
        return KvsAll()
    return SLCWA(NegativeSampler(setting.negatives, shared=setting.shared))


class Stream:
    """Shuffled batches of the prepared rows, epoch after epoch; each phase reads it until the clock says stop."""

    def __init__(self, rows: Any, batch_size: int, generator: Any) -> None:
        self.rows, self.batch_size, self.generator = rows, batch_size, generator
        self.batches = self._forever()

    def _forever(self) -> Iterator[Any]:
        import torch

        while True:
            order = torch.randperm(len(self.rows), generator=self.generator)
            for start in range(0, len(self.rows), self.batch_size):
                yield self.rows[order[start : start + self.batch_size]]

    def phase(self, clock: Clock, warmup: bool) -> Iterator[Any]:
        for batch in self.batches:
            yield batch
            going = clock.tick(len(batch))
            if not going or (warmup and clock.start is not None):
                return


def train(setting: Setting, args: argparse.Namespace) -> None:
    import torch

    from kgem.training import LOSSES, build_optimizer, train_epoch

    data = load_data(args.data)
    model = build(setting, data.num_entities, data.num_relations, args.seed)
    approach = approach_of(setting)
    hrt = torch.from_numpy(data.train)
    rows = approach.prepare(hrt, model)  # KvsAll: distinct queries; SLCWA: the triples (plus reciprocals)
    loss = LOSSES.get(setting.loss)(**setting.loss_args)
    optimizer = build_optimizer(setting.optimizer, model.parameters(), lr=setting.lr)
    start_weights = model.entity.weight.detach().clone()
    if setting.hogwild_workers > 1:
        timing = train_hogwild(setting, args, model, approach, rows, loss, optimizer)
        note = "mean loss of each worker over warm-up and measurement"
    else:
        generator = torch.Generator().manual_seed(args.seed)
        stream = Stream(rows, setting.batch_size, generator)
        clock = Clock(args.warmup, args.seconds, args.min_batches)
        warm_loss = train_epoch(model, approach, stream.phase(clock, True), loss, optimizer, None, generator)
        measured_loss = train_epoch(model, approach, stream.phase(clock, False), loss, optimizer, None, generator)
        timing, note = clock.timing, "mean loss of the warm-up, then of the measurement"
        timing.losses = [warm_loss, measured_loss]
    # KvsAll rows are queries: an epoch of len(rows) queries covers the len(train) training triples
    per_row = len(hrt) / len(rows) if setting.approach == "kvsall" else 1.0
    change = float((model.entity.weight.detach() - start_weights).norm() / start_weights.norm())
    emit("kgem", setting, args, **training_result(timing, per_row, rows_per_epoch=len(rows),
                                                   entity_relative_change=change, loss_note=note,
                                                   workers=setting.hogwild_workers, kgem_path=kgem_path()))


def train_hogwild(setting: Setting, args: argparse.Namespace, model: Any, approach: Any, rows: Any, loss: Any,
                  optimizer: Any) -> Timing:
    """``setting.hogwild_workers`` forked processes of one thread (``kgem.training.hogwild``, what ``Trainer(...,
    workers=n)`` runs), each on its own shuffled stream of batches, until this process, watching their shared
    counts of rows done, has seen the warm-up pass and ``args.seconds`` measured. A worker's error (a NaN loss, a
    death) is raised here, as soon as it happens: a failed run has no rate."""
    import torch

    from kgem.training import train_epoch
    from kgem.training.hogwild import run_workers, share
    from kgem.training.trainer import Tally

    share(model, optimizer)
    workers = setting.hogwild_workers
    done = torch.zeros(workers, 2, dtype=torch.float64).share_memory_()  # rows, batches per worker
    stop = torch.zeros(1, dtype=torch.int32).share_memory_()

    def work(rank: int) -> float:
        generator = torch.Generator().manual_seed(args.seed * 1000 + rank)

        def batches() -> Iterator[Any]:
            for batch in Stream(rows, setting.batch_size, generator).batches:
                if stop.item():
                    return
                yield batch
                done[rank, 0] += len(batch)  # counted once the step on it is done
                done[rank, 1] += 1

        tally = Tally()
        train_epoch(model, approach, batches(), loss, optimizer, None, generator, 0, tally)
        return tally.mean

    losses: list[float] = []
    failures: list[Exception] = []

    def run() -> None:
        try:
            losses.extend(run_workers(workers, work))
        except Exception as error:  # raised in this (the main) thread below
            failures.append(error)

    thread = threading.Thread(target=run)
    begin = time.perf_counter()
    thread.start()
    while thread.is_alive() and (time.perf_counter() - begin < args.warmup or float(done[:, 1].min()) < 3):
        time.sleep(0.02)
    start, rows0, batches0 = time.perf_counter(), float(done[:, 0].sum()), float(done[:, 1].sum())
    timing = Timing(warmup_batches=int(batches0), warmup_seconds=start - begin)
    while thread.is_alive() and (timing.seconds < args.seconds or timing.batches < args.min_batches):
        time.sleep(0.02)
        timing.seconds = time.perf_counter() - start
        timing.rows, timing.batches = int(float(done[:, 0].sum()) - rows0), int(float(done[:, 1].sum()) - batches0)
    stopped = thread.is_alive()
    stop.fill_(1)
    thread.join()
    if failures:
        raise failures[0]
    if not stopped:
        raise RuntimeError("the HOGWILD workers stopped before the measurement ended")
    timing.losses = losses
    return timing


def evaluate(setting: Setting, args: argparse.Namespace) -> None:
    import torch

    from compare.hardware import matmul_gflops_per_s
    from kgem.data import KnownTriples
    from kgem.evaluation import evaluate as kgem_evaluate
    from kgem.ops import native

    data = load_data(args.data)
    model = build(setting, data.num_entities, data.num_relations, args.seed)
    test = torch.from_numpy(eval_triples(data, args.eval_limit))
    everything = torch.from_numpy(np.concatenate([data.train, data.valid, data.test]))
    native_built, native_build_s = timed(lambda: native.library() is not None)  # a one-off build, cached after
    rss_before = current_rss_mb()
    known, filter_s = timed(lambda: KnownTriples(everything, data.num_entities, data.num_relations))
    batch = args.eval_batch_size or None
    result, eval_s = timed(lambda: kgem_evaluate(model, test, known=known, filter_splits="train+valid+test",
                                                 batch_size=batch))
    peak = peak_rss_mb()  # before the matmul below allocates its own 192 MB
    matmul = matmul_gflops_per_s()  # the hardware reference, measured in this process right after evaluating
    queries = 2 * len(test)
    # all-entity scoring is one (B, 200) x (200, E) product per batch for both models (TransE via the expanded square)
    flops = 2 * queries * data.num_entities * setting.dim
    emit("kgem", setting, args, kind="eval", seconds=round(filter_s + eval_s, 3), filter_seconds=round(filter_s, 3),
         eval_seconds=round(eval_s, 3), queries=queries, queries_per_s=queries / eval_s,
         score_gflops_per_s=flops / eval_s / 1e9, matmul_gflops_per_s=matmul, peak_rss_mb=round(peak, 1),
         score_fraction_of_matmul=flops / eval_s / 1e9 / matmul, rss_before_mb=round(rss_before, 1),
         mrr=result.mrr, rank_type="realistic", native_kernels=native_built,
         native_load_seconds=round(native_build_s, 3), kgem_path=kgem_path())


def main() -> None:
    args = runner_args(__doc__ or "")
    setting = SETTINGS[args.config]
    os.environ["KGEM_RETAIN_MEMORY"] = "1"  # kgem's opt-in allocator setting, on as in every measurement so far
    sys.exit(guarded("kgem", setting, args, evaluate if setting.approach == "eval" else train))


if __name__ == "__main__":
    main()
