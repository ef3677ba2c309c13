"""What every side shares: the configurations, thread set-up, the exported data, steady-state timing, memory.

This module is imported by the kgem, PyKEEN and PyTorch-BigGraph runners alike, so it needs only the standard
library, numpy and torch (present in every environment) and must not import kgem.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parents[1]
OUT = BENCH / "out" / "compare"
DATA = OUT / "data"
DEFAULT_SOURCE = BENCH.parents[1] / "shared" / "datasets" / "fb15k237"


@dataclass(frozen=True)
class Setting:
    """One configuration; every side reads its hyper-parameters from here.

    ``dim`` counts real parameters per entity (complex models get ``dim // 2`` complex numbers). ``shared``:
    one set of ``negatives`` uniform entities per batch (kgem) or per chunk (PBG). ``inverse``: reciprocal
    relations (only tails are predicted). ``eval`` settings rank the test set instead of training.
    """

    name: str
    model: str
    peers: tuple[str, ...]
    summary: str
    approach: str = "slcwa"  # slcwa | kvsall | eval
    dim: int = 200
    negatives: int = 64
    shared: bool = False
    inverse: bool = False
    loss: str = "margin_ranking"
    loss_args: dict[str, float] = field(default_factory=dict)
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 1024
    hogwild_workers: int = 1
    sparse: bool = False  # kgem: sparse embedding gradients (touched rows only, like PBG's row-wise Adagrad)
    kgem_args: dict[str, Any] = field(default_factory=dict)  # kgem model options that select the peer's semantics

    @property
    def complex(self) -> bool:
        return self.model in ("complex", "rotate")


SETTINGS = {s.name: s for s in [
    Setting(name="C1", model="transe", peers=("pykeen",), loss_args={"margin": 1.0},
            kgem_args={"normalize": "step"},  # PyKEEN's entity_constrainer: rows projected after each step
            summary="TransE L2 (entities projected to unit norm after each step), 64 uniform negatives/positive, "
                    "margin ranking (1), Adam 1e-3, batch 1024"),
    Setting(name="C2", model="distmult", peers=("pykeen",), loss="softplus",
            summary="DistMult, 64 uniform negatives/positive, softplus, Adam 1e-3, batch 1024"),
    Setting(name="C3", model="rotate", peers=("pykeen",), loss="self_adversarial",
            loss_args={"margin": 9.0, "temperature": 1.0},
            kgem_args={"p": 2},  # PyKEEN 1.11.1's RotatEInteraction: the L2 norm of h*r - t, whatever its p
            summary="RotatE (100 complex, L2 norm of h*r - t as PyKEEN computes it), 64 negatives, "
                    "self-adversarial (margin 9, T 1), Adam 1e-3, batch 1024"),
    Setting(name="C4", model="complex", peers=("pykeen",), approach="kvsall", inverse=True, loss="bce",
            summary="ComplEx (100 complex), KvsAll over all tails with reciprocal relations, BCE, Adam 1e-3, "
                    "batch 1024 queries"),
    Setting(name="C1s", model="transe", peers=("pbg",), shared=True, loss_args={"margin": 1.0},
            optimizer="rowadagrad", lr=0.1, batch_size=1000, hogwild_workers=2, sparse=True,
            kgem_args={"normalize": "none"},  # PBG's TransE leaves entity rows unconstrained
            summary="TransE L2 (unconstrained entities), 64 uniform negatives shared per batch/chunk, margin ranking "
                    "(1), row-wise Adagrad 0.1, batch 1000, PBG-style"),
    Setting(name="C4s", model="complex", peers=("pbg",), shared=True, loss="cross_entropy", optimizer="rowadagrad",
            lr=0.1, batch_size=1000, hogwild_workers=2, sparse=True,
            summary="ComplEx (100 complex), 64 uniform negatives shared per batch/chunk, softmax loss, "
                    "row-wise Adagrad 0.1, batch 1000, PBG-style"),
    Setting(name="E1", model="transe", peers=("pykeen", "pbg"), approach="eval",
            summary="filtered evaluation (both sides, realistic ranks, train+valid+test filter) of the test set, "
                    "TransE d=200, random weights"),
    Setting(name="E2", model="complex", peers=("pykeen",), approach="eval",
            summary="filtered evaluation (both sides, realistic ranks, train+valid+test filter) of the test set, "
                    "ComplEx 100 complex, random weights"),
]}


def limit_threads(threads: int) -> None:
    """Before torch is imported: OMP/MKL thread counts; then torch's intra-op threads."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)


def runner_args(description: str) -> argparse.Namespace:
    """The command line every runner takes (the orchestrator passes all of it)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, choices=list(SETTINGS))
    parser.add_argument("--data", default=str(DATA / "fb15k237"), help="folder written by export_data")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of training before measuring")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of measured training")
    parser.add_argument("--min-batches", type=int, default=20, help="measure at least this many batches")
    parser.add_argument("--eval-limit", type=int, default=0, help="rank only the first N test triples (0: all)")
    parser.add_argument("--eval-batch-size", type=int, default=0, help="query batch size for evaluation (0: auto)")
    parser.add_argument("--scratch", default=str(OUT / "scratch"), help="scratch folder (PBG's converted data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke test (PBG: shorter edge chunks, no HOGWILD delay)")
    args = parser.parse_args()
    limit_threads(args.threads)
    return args


@dataclass
class Data:
    """FB15k-237 as id triples, exactly as kgem reads it (``on_unseen="drop"``), shared by every side."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    num_entities: int
    num_relations: int


def load_data(folder: str | Path) -> Data:
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    arrays = {split: np.load(folder / f"{split}.npy") for split in ("train", "valid", "test")}
    return Data(**arrays, num_entities=meta["num_entities"], num_relations=meta["num_relations"])


def eval_triples(data: Data, limit: int) -> np.ndarray:
    return data.test[:limit] if limit else data.test


@dataclass
class Timing:
    """Steady-state throughput: ``rows`` processed in ``seconds`` after a warm-up of ``warmup_batches``."""

    rows: int = 0
    batches: int = 0
    seconds: float = 0.0
    warmup_batches: int = 0
    warmup_seconds: float = 0.0
    losses: list[float] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


class Clock:
    """Decides, between batches, whether the warm-up is over and whether the measurement is done.

    Call ``tick(rows_of_the_batch_just_finished)`` after each batch; it returns False once at least
    ``seconds`` have been measured and ``min_batches`` batches counted. Work in the batch during which the warm-up
    ends is not counted; the clock starts when that batch has finished.
    """

    def __init__(self, warmup: float, seconds: float, min_batches: int, min_warmup_batches: int = 3) -> None:
        self.warmup, self.seconds, self.min_batches, self.min_warmup = warmup, seconds, min_batches, min_warmup_batches
        self.timing = Timing()
        self.begin = time.perf_counter()
        self.start: float | None = None

    def tick(self, rows: int, loss: float | None = None) -> bool:
        now = time.perf_counter()
        if loss is not None:
            self.timing.losses.append(loss)
        if self.start is None:
            self.timing.warmup_batches += 1
            if now - self.begin >= self.warmup and self.timing.warmup_batches >= self.min_warmup:
                self.start = now
                self.timing.warmup_seconds = now - self.begin
            return True
        self.timing.rows += rows
        self.timing.batches += 1
        self.timing.seconds = now - self.start
        return self.timing.seconds < self.seconds or self.timing.batches < self.min_batches


def peak_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def emit(side: str, setting: Setting, args: argparse.Namespace, **result: Any) -> None:
    """Print the runner's one JSON line (the orchestrator reads the last line of stdout)."""
    import torch

    record = {"side": side, "config": setting.name, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "peak_rss_mb": round(peak_rss_mb(), 1), **result,
              "setting": asdict(setting), "args": {k: v for k, v in vars(args).items() if k != "config"}}
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def training_failure(timing: Timing) -> str | None:
    """Why a training measurement is no result (a side that diverged trains nothing, however fast); None if it is."""
    diverged = [loss for loss in timing.losses if not math.isfinite(loss)]
    if diverged:
        return f"the loss became {diverged[0]} (in {len(diverged)} of {len(timing.losses)} recorded losses)"
    if timing.rows <= 0 or timing.seconds <= 0:
        return "no training step was measured"
    return None


def training_result(timing: Timing, triples_per_row: float = 1.0, **extra: Any) -> dict[str, Any]:
    """The fields of a training measurement. ``triples_per_row`` converts KvsAll queries to training triples. A
    failed measurement (``training_failure``) has an ``error`` and no rate."""
    losses = timing.losses
    record = {"kind": "train", "rows": timing.rows, "batches": timing.batches, "seconds": round(timing.seconds, 3),
              "warmup_batches": timing.warmup_batches, "warmup_seconds": round(timing.warmup_seconds, 3),
              "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None, **extra}
    failure = training_failure(timing)
    if failure:
        return {**record, "error": failure}
    return {**record, "triples_per_s": timing.rows_per_s * triples_per_row, "rows_per_s": timing.rows_per_s}


def guarded(side: str, setting: Setting, args: argparse.Namespace,
            run: Callable[[Setting, argparse.Namespace], None]) -> int:
    """A runner's main: ``run`` measures and emits its record; an exception (a worker's included) is emitted as a
    failure record, the error and no numbers, with exit status 1 (the traceback goes to stderr, into the log)."""
    try:
        run(setting, args)
    except Exception as error:
        traceback.print_exc()
        kind = "eval" if setting.approach == "eval" else "train"
        emit(side, setting, args, kind=kind, error=f"{type(error).__name__}: {error}")
        return 1
    return 0
