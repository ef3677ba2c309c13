"""One Trainer: epochs of one short loop, early stopping on a validation metric, progress, NaN guard."""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from kgem.circuits.model import AnyModel, CircuitModel
from kgem.errors import CheckpointError, ConfigError, TrainingError, TrainingInterrupted
from kgem.models.model import Model, state_mismatch
from kgem.models.storage import release_pages, release_rows
from kgem.training.approaches import SLCWA, Approach
from kgem.training.checkpoint import Checkpoints
from kgem.training.distributed import Replicas
from kgem.training.hogwild import run_workers, share
from kgem.training.loop import StopOnSignal, Tally, train_epoch
from kgem.training.losses import Loss
from kgem.training.partitioned import ResidentPartitions, local
from kgem.training.regularizers import Regularizer
from kgem.training.schedule import EpochSchedule
from kgem.training.sharded import Epoch, Exchange, Partitions, check_schedule, check_sharded

SavePartial = Callable[[torch.Tensor, Tally], None]  # a checkpoint inside an epoch: how far it got, its tally
# Told after every epoch (once its checkpoint is saved): the epoch, its mean loss, its validation metric or None.
# An exception it raises ends training there (a pruned trial, say); the run resumes from that checkpoint.
EpochCallback = Callable[[int, float, float | None], None]

PRECISIONS: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16}


@dataclass
class EarlyStopping:
    """Every ``frequency`` epochs call ``validate(model)`` (higher is better, e.g. filtered MRR); stop after
    ``patience`` validations without an improvement of more than ``min_delta``; restore the best weights."""

    validate: Callable[[AnyModel], float]
    frequency: int = 1
    patience: int = 3
    min_delta: float = 0.0
    best: float = float("-inf")
    best_epoch: int = 0
    bad_rounds: int = 0
    best_state: dict[str, torch.Tensor] | None = None

    def check(self, model: AnyModel, epoch: int) -> tuple[float, bool]:
        """Validate; return (metric, should_stop)."""
        value = self.validate(model)
        if value > self.best + self.min_delta:
            self.best, self.best_epoch, self.bad_rounds = value, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.bad_rounds += 1
        return value, self.bad_rounds >= self.patience


@dataclass
class History:
    """What happened: loss per epoch, validation metric per validated epoch, timings."""

    losses: list[float] = field(default_factory=list)
    validation: dict[int, float] = field(default_factory=dict)
    best_epoch: int | None = None
    stopped_early: bool = False
    out_of_time: bool = False  # stopped by the time budget
    seconds: float = 0.0
    epoch_seconds: list[float] = field(default_factory=list)  # training time (validations in) at each epoch's end
    examples_per_second: float = 0.0


class Trainer:
    """Trains a model with one approach, loss and optimizer (config stops at the factory that builds this)."""

    def __init__(self, model: AnyModel, approach: Approach, loss: Loss, optimizer: torch.optim.Optimizer, *,
                 regularizer: Regularizer | None = None, scheduler: Any = None, batch_size: int = 1024,
                 seed: int = 0, progress: bool = True, workers: int = 1,
                 clip_grad_norm: float | None = None, replicas: Replicas | None = None,
                 partitions: int | None = None, shard_negatives: str = "graph", bucket_passes: int = 1,
                 round_checkpoints: int = 0, bucket_order: str = "random", time_budget: float | None = None,
                 precision: str = "float32") -> None:
        """``scheduler``: stepped after every epoch (an ``EpochSchedule`` gets the epoch's validation metric or None,
        a torch ``ReduceLROnPlateau`` the validated ones, any other torch scheduler ``step()``).
        ``clip_grad_norm``: bound on the gradients' joint L2 norm, or None.
        ``workers`` > 1 trains HOGWILD (``kgem.training.hogwild``): that many processes of one thread each share
        every epoch's batches and update the parameters, moved to shared memory, without locks (not
        reproducible; needs ``rowadagrad``, ``adagrad`` or ``sgd``).
        ``replicas``: this process's place in a replicated multi-process run (``kgem.training.distributed``): each
        batch is the global batch, of which this rank trains its part; only rank 0 writes checkpoints.
        ``partitions``: train sharded instead (``kgem.training.sharded``): entities in that many partitions, each
        rank of ``replicas`` (or this one process) training one bucket of edges per round, its negatives drawn
        from the bucket's partitions or from the whole graph (``shard_negatives``: ``bucket`` or ``graph``), in
        ``bucket_passes`` passes per epoch over a slice of every bucket each, in ``bucket_order`` (``random`` or
        ``affinity``: a rank's next bucket shares a partition with its last where it can). With ``bucket``
        negatives the partitions are ranges of ids, and only the current bucket's are in memory while it trains
        (``kgem.training.partitioned``: for an entity table in a file, ``model.storage: mapped``).
        ``time_budget``: seconds of training (validations included, a resumed run's earlier ones too) after which
        training stops at the next epoch boundary, as early stopping does (the best validated weights kept).
        ``precision``: ``float32``, or ``bfloat16``: each step's forward and backward under ``torch.autocast``, the
        candidate-scoring matrix products in bfloat16 (parameters, gradients, optimizer state and validation stay
        float32)."""
        self.model, self.approach, self.loss, self.optimizer = model, approach, loss, optimizer
        if time_budget is not None and not 0 < time_budget < float("inf"):
            raise ConfigError(f"time_budget must be a positive number of seconds, got {time_budget}")
        self.time_budget = time_budget
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.precision = PRECISIONS[precision]
        self.regularizer, self.scheduler, self.batch_size, self.progress = regularizer, scheduler, batch_size, progress
        self.generator = torch.Generator().manual_seed(seed)
        if workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        if workers > 1 and replicas is not None:
            raise ConfigError("HOGWILD workers and multi-process training are two ways to use several cores: "
                              "choose one (workers=1 with --nproc)")
        self.replicas = replicas
        if workers > 1 and model.device.type != "cpu":
            raise ConfigError(f"HOGWILD workers share CPU memory: train on {model.device} with workers=1")
        if workers > 1 and isinstance(model, CircuitModel):
            raise ConfigError("generative circuits train in one process: set workers to 1 (their objective "
                              "normalises over every entity each step, which HOGWILD workers would race on)")
        self.workers = workers
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ConfigError(f"clip_grad_norm must be positive or None, got {clip_grad_norm}")
        self.clip_grad_norm = clip_grad_norm
        if workers > 1:
            share(model, optimizer)  # checks the optimizer now; again per epoch, as a resume loads new state
        self.seed, self.partitions, self.shard_negatives = seed, partitions, shard_negatives
        check_schedule(partitions, bucket_passes, bucket_order, round_checkpoints)
        self.bucket_passes, self.bucket_order, self.round_checkpoints = bucket_passes, bucket_order, round_checkpoints
        if partitions is not None:
            if workers > 1:
                raise ConfigError("HOGWILD workers and sharded training are two ways to use several cores: "
                                  "choose one (workers=1 with --nproc)")
            check_sharded(model, optimizer, approach, shard_negatives)
        self._shards: tuple[Partitions, list[torch.Tensor], Exchange] | None = None
        self._resident: ResidentPartitions | None = None

    def fit(self, hrt: torch.Tensor, epochs: int, early_stopping: EarlyStopping | None = None, *,
            checkpoints: Checkpoints | None = None, resume: bool = False, fallback: bool = False,
            weights: torch.Tensor | None = None, callbacks: Sequence[EpochCallback] = ()) -> History:
        """Train for ``epochs`` on the training triples ``hrt (n, 3)`` (``weights``: a number per triple, which
        the approach weighs the loss or modulates the scores by).

        With ``checkpoints``, state is saved every ``checkpoints.every`` epochs and at the end. On SIGTERM/SIGINT
        the current batch finishes, a checkpoint is saved (mid-epoch if need be) and TrainingInterrupted is raised.
        ``resume`` continues from the newest checkpoint (``fallback``: from the one before if the newest is
        corrupt) and gives exactly the result of an uninterrupted run. ``callbacks`` are told of every epoch
        (``EpochCallback``).
        """
        if getattr(self.scheduler, "needs_metric", False) and early_stopping is None:
            raise ConfigError("the plateau scheduler steps on the validation metric: train with validation "
                              "(early stopping on a valid split: training.early_stopping in a config)")
        rows = self.approach.prepare(hrt, self.model, weights)
        if self.partitions is not None:
            assert isinstance(self.model, Model)  # check_sharded said so
            owned = self.shard_negatives == "bucket"  # PyTorch-BigGraph's scheme: partitions in and out of memory
            parts = Partitions(self.model.num_entities, self.partitions, self.seed, contiguous=owned)
            self._shards = (parts, parts.buckets(rows), Exchange(self.model, self.optimizer, parts, self.replicas,
                                                                  self.shard_negatives))
            self._resident = ResidentPartitions(self.model, self.optimizer, parts.bounds) if owned else None
        history, first, partial = History(), 1, None
        if resume and checkpoints is not None:
            found = checkpoints.latest(fallback)
            if found is not None:
                first = self.restore(found[1], history, early_stopping, where=f"checkpoint {found[0]}") + 1
                partial = found[1].get("partial")
                if history.stopped_early or self.out_of_time(history):  # the run had ended: only the best
                    first = epochs + 1  # weights are left to restore
        start = time.perf_counter() - history.seconds
        with StopOnSignal(enabled=checkpoints is not None) as signals:
            bar = tqdm(range(first, epochs + 1), desc="training", unit="epoch", disable=not self.progress)
            for epoch in bar:

                def save_partial(position: torch.Tensor, tally: Tally, epoch: int = epoch) -> None:
                    """A checkpoint inside ``epoch``: how far it got (``position``) and its tally so far."""
                    history.seconds = time.perf_counter() - start
                    if checkpoints is not None and self.writes:
                        partial_state = {"order": position, "sharded": self.partitions is not None,
                                         **dataclasses.asdict(tally)}
                        checkpoints.save(self.state(epoch - 1, history, early_stopping, partial=partial_state))

                self.approach.start_epoch(epoch)
                order, tally = self._run_batches(rows, epoch, partial if epoch == first else None, signals,
                                                 save_partial if checkpoints is not None else None)
                self.model.invalidate_cache()
                release_pages(self.model)  # a mapped table's pages back to the page cache (kgem.models.storage)
                history.seconds = time.perf_counter() - start
                if checkpoints is not None and tally.count < len(rows):  # a signal stopped the epoch
                    save_partial(order, tally)
                    raise TrainingInterrupted(f"stopped by signal in epoch {epoch} after batch {tally.batches}; "
                                              f"resume to continue")
                stop = self._end_epoch(tally.mean, epoch, history, early_stopping, bar)
                history.seconds = time.perf_counter() - start
                history.epoch_seconds.append(history.seconds)
                if not stop and epoch < epochs and self.out_of_time(history):
                    stop = history.out_of_time = True
                last = stop or epoch == epochs or signals.received
                if checkpoints is not None and self.writes and (epoch % checkpoints.every == 0 or last):
                    checkpoints.save(self.state(epoch, history, early_stopping))
                for callback in callbacks:
                    callback(epoch, history.losses[-1], history.validation.get(epoch))
                if signals.received:
                    raise TrainingInterrupted(f"stopped by signal after epoch {epoch}; resume to continue")
                if stop:
                    break
        history.examples_per_second = len(rows) * len(history.losses) / max(history.seconds, 1e-9)
        if early_stopping is not None and early_stopping.best_state is not None:
            self.model.load_state_dict(early_stopping.best_state)
            self.model.invalidate_cache()
            history.best_epoch = early_stopping.best_epoch
        return history

    def out_of_time(self, history: History) -> bool:
        """Whether the training time so far has reached the time budget."""
        return self.time_budget is not None and history.seconds >= self.time_budget

    @property
    def writes(self) -> bool:
        """Whether this process writes the checkpoints: a single process, or rank 0 of a replicated run."""
        return self.replicas is None or self.replicas.leader

    def _run_batches(self, rows: torch.Tensor, epoch: int, partial: dict[str, Any] | None, signals: StopOnSignal,
                     save_partial: SavePartial | None = None) -> tuple[torch.Tensor, Tally]:
        """Train on this epoch's shuffled batches (continuing ``partial``), stopping early on a signal. Returns
        where the epoch got to (its row order; sharded: its seed and the rounds done) and its tally.
        ``save_partial`` saves a checkpoint inside the epoch (sharded training's round checkpoints)."""
        if partial is not None and bool(partial.get("sharded", False)) != (self.partitions is not None):
            was = "sharded" if partial.get("sharded") else "not sharded"
            raise CheckpointError(f"the checkpoint stopped in epoch {epoch} of a run {was}; finish that epoch the "
                                  f"same way (training.distributed), then change it")
        if self.partitions is not None:
            return self._run_sharded(rows, epoch, partial, signals, save_partial)
        if partial is not None:
            order = partial["order"]
            tally = Tally(int(partial["batches"]), float(partial["total"]), int(partial["count"]))
        else:
            order, tally = torch.randperm(len(rows), generator=self.generator), Tally()
        size = self.batch_size
        if self.workers > 1:
            return order, self._run_hogwild(rows, order, epoch, tally)

        device = self.model.device  # the rows and their order stay on the CPU; each batch goes to the model

        def batches() -> Iterator[torch.Tensor]:
            for begin in range(tally.batches * size, len(rows), size):
                if signals.received:
                    return
                yield rows[order[begin : begin + size]].to(device, non_blocking=True)

        total = (len(rows) + size - 1) // size
        bar = tqdm(batches(), total=total, initial=tally.batches, leave=False, unit="batch",
                   disable=not self.progress)
        train_epoch(self.model, self.approach, bar, self.loss, self.optimizer, self.regularizer, self.generator,
                    epoch, tally, self.clip_grad_norm, self.replicas, signals, self.precision)
        return order, tally

    def _run_hogwild(self, rows: torch.Tensor, order: torch.Tensor, epoch: int, tally: Tally) -> Tally:
        """The epoch's remaining batches dealt out to the workers in turn; a signal takes effect after the epoch."""
        size, workers, first = self.batch_size, self.workers, tally.batches * self.batch_size
        share(self.model, self.optimizer)  # a no-op unless a resume replaced the optimizer's state
        seeds = torch.randint(2**62, (workers,), generator=self.generator).tolist()

        def work(rank: int) -> Tally:
            starts = range(first + rank * size, len(rows), size * workers)
            mine = (rows[order[begin : begin + size]] for begin in starts)
            part = Tally()
            with self.model.private_tables():  # the others write the shared tables between forward and backward
                train_epoch(self.model, self.approach, mine, self.loss, self.optimizer, self.regularizer,
                            torch.Generator().manual_seed(seeds[rank]), epoch, part, self.clip_grad_norm,
                            precision=self.precision)
            return part

        parts = run_workers(workers, work)
        self.model.invalidate_cache()  # the workers wrote the shared parameters behind this process's back
        for part in parts:
            tally.add(part)
        return tally

    def _run_sharded(self, rows: torch.Tensor, epoch: int, partial: dict[str, Any] | None, signals: StopOnSignal,
                     save_partial: SavePartial | None) -> tuple[torch.Tensor, Tally]:
        """The epoch's rounds of buckets (``kgem.training.sharded``), this rank training its bucket of each; a
        signal on any rank stops every rank after the current round."""
        assert self._shards is not None and isinstance(self.approach, SLCWA)
        parts, buckets, exchange = self._shards
        rank, world = (self.replicas.rank, self.replicas.world) if self.replicas is not None else (0, 1)
        layout = [world, parts.count, self.bucket_passes]
        if partial is not None:
            seed, done, *saved = (int(v) for v in partial["order"].tolist())
            if saved != layout:
                raise CheckpointError(f"the checkpoint stopped in epoch {epoch} after a round of {saved[0]} "
                                      f"process(es), {saved[1]} partitions and {saved[2]} bucket pass(es); finish "
                                      f"that epoch with the same, then change them")
            tally = Tally(int(partial["batches"]), float(partial["total"]), int(partial["count"]))
        else:
            seed, done, tally = int(torch.randint(2**62, (1,), generator=self.generator)), 0, Tally()
        plan = Epoch(parts, buckets, world, self.bucket_passes, seed, self.bucket_order)
        try:
            for number in range(done, len(plan.rounds)):
                buckets_now = plan.rounds[number].buckets
                exchange.begin()
                part, failure = self._train_round(plan, number, rank, parts, rows, epoch)
                agreed = exchange.end(buckets_now, part.total, part.batches, part.count, failure, signals.received)
                if agreed.failure is not None:
                    raise TrainingError(agreed.failure)
                tally.add(Tally(agreed.batches, agreed.total, agreed.count))
                signals.received = agreed.signal
                done = number + 1
                if signals.received:
                    break
                due = self.round_checkpoints and done % self.round_checkpoints == 0 and done < len(plan.rounds)
                if save_partial is not None and due:
                    if self._resident is not None:
                        self._resident.release(set(p for p in self._resident.slots if p is not None))  # written whole
                    save_partial(torch.tensor([seed, done, *layout]), tally)
        finally:  # the table whole again, whatever stopped the epoch
            if self._resident is not None:
                self._resident.close()
        self.model.invalidate_cache()
        return torch.tensor([seed, done, *layout]), tally

    def _train_round(self, plan: Epoch, number: int, rank: int, parts: Partitions, rows: torch.Tensor,
                     epoch: int) -> tuple[Tally, str | None]:
        """This rank's part of round ``number``: its bucket trained (its tally, or the failure's message), then
        the slots written back but for the next bucket's partitions (``kgem.training.partitioned``)."""
        part, failure, world = Tally(), None, len(plan.rounds[number].buckets)
        mine = plan.rounds[number].buckets[rank]
        if mine is not None:
            generator = torch.Generator().manual_seed(plan.step_seeds[number][rank])
            edges = rows[plan.edges(number, rank)]
            release_rows(rows, 0, len(rows))  # a mapped split's pages back to the page cache (kgem.ops.pages)
            try:
                self._train_bucket(parts, mine, edges, generator, epoch, part)
            except TrainingError as e:
                failure = str(e)
        if self._resident is not None:
            after = plan.rounds[number + 1].buckets[rank] if number + 1 < len(plan.rounds) else None
            keep = set(parts.touched(after)) if after is not None else set()
            self._resident.release(keep, write_kept=world > 1)  # the exchange reads the whole table
        return part, failure

    def _train_bucket(self, parts: Partitions, bucket: int, edges: torch.Tensor, generator: torch.Generator,
                      epoch: int, tally: Tally) -> None:
        """Train one bucket's ``edges``: negatives from the whole graph, or from the bucket's partitions, which are
        then the only rows of the table in memory (``kgem.training.partitioned``), in their local ids."""
        assert isinstance(self.approach, SLCWA)
        device, size = self.model.device, self.batch_size
        resident = self._resident
        with resident.training(parts.touched(bucket), self.approach.sampler) if resident else nullcontext() as shift:
            if shift is not None:
                edges = local(edges, shift)
            batches = (edges[b : b + size].to(device, non_blocking=True) for b in range(0, len(edges), size))
            train_epoch(self.model, self.approach, batches, self.loss, self.optimizer, self.regularizer, generator,
                        epoch, tally, self.clip_grad_norm, precision=self.precision)

    def _end_epoch(self, loss: float, epoch: int, history: History, early_stopping: EarlyStopping | None,
                   bar: Any) -> bool:
        """Record the epoch, validate, step the scheduler; True when early stopping says stop."""
        history.losses.append(loss)
        postfix = {"loss": f"{loss:.4f}"}
        stop, value = False, None
        if early_stopping is not None and epoch % early_stopping.frequency == 0:
            value, stop = early_stopping.check(self.model, epoch)
            history.validation[epoch] = value
            history.stopped_early = stop
            postfix["valid"] = f"{value:.4f}"
        self._step_scheduler(value)
        bar.set_postfix(postfix)
        return stop

    def _step_scheduler(self, metric: float | None) -> None:
        if isinstance(self.scheduler, EpochSchedule):
            self.scheduler.step(metric)
        elif isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if metric is not None:
                self.scheduler.step(metric)
        elif self.scheduler is not None:
            self.scheduler.step()

    def state(self, epoch: int, history: History, early_stopping: EarlyStopping | None,
              partial: dict[str, Any] | None = None) -> dict[str, Any]:
        """Everything an exact resume needs, as nested dicts of tensors and scalars. ``epoch``: epochs completed;
        ``partial``: how far the next epoch got (its row order and tally) when a signal interrupted it."""
        stopper = None
        if early_stopping is not None:
            stopper = {"best": early_stopping.best, "best_epoch": early_stopping.best_epoch,
                       "bad_rounds": early_stopping.bad_rounds, "best_state": early_stopping.best_state}
        return {"epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "optimizer_class": type(self.optimizer).__name__,
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
                "history": dataclasses.asdict(history), "early_stopping": stopper, "partial": partial}

    def restore(self, state: dict[str, Any], history: History, early_stopping: EarlyStopping | None,
                where: str = "checkpoint") -> int:
        """Load a ``state()``; returns its epoch. A state that does not fit the model or the optimizer (their
        settings changed since it was saved) is a CheckpointError naming ``where`` and the problem."""
        problem = state_mismatch(self.model, state["model"])
        if problem:
            raise CheckpointError(f"{where} does not fit the model: {problem} (was the model config changed "
                                  f"since it was saved?)")
        saved, current = state.get("optimizer_class"), type(self.optimizer).__name__
        if saved is not None and saved != current:
            raise CheckpointError(f"{where} holds {saved} optimizer state, this run uses {current} (was the "
                                  f"training config changed since it was saved?)")
        self.model.load_state_dict(state["model"])
        self.model.invalidate_cache()
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{where} does not fit the optimizer: {e} (was the training config changed "
                                  f"since it was saved?)") from e
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        for key, value in state["history"].items():
            setattr(history, key, value)
        if early_stopping is not None and state["early_stopping"] is not None:
            for key, value in state["early_stopping"].items():
                setattr(early_stopping, key, value)
        return int(state["epoch"])
