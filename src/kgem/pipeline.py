"""``pipeline()``: one call from data and a config to a trained, evaluated model and a result object."""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from kgem import plots
from kgem.atomic import atomic_write
from kgem.circuits.evaluation import average_log_likelihood, uniform_log_likelihood
from kgem.circuits.model import AnyModel, CircuitModel
from kgem.circuits.store import save_circuit
from kgem.circuits.typed import TypedSquared
from kgem.config import apply_overrides, from_dict, load_config, save_config, to_dict
from kgem.configs import DataConfig, EvaluationConfig, ModelConfig, PipelineConfig
from kgem.data import Dataset, KnownTriples, Vocabulary, relation_categories
from kgem.data.known import KnownSplits
from kgem.data.patterns import relation_patterns
from kgem.data.sources import DATASETS
from kgem.errors import ConfigError, DataError
from kgem.evaluation import EvaluationResult
from kgem.factory import (
    Data,
    check_protocol,
    dataset_from_config,
    early_stopping_from_config,
    evaluator_from_config,
    known_from_config,
    literals_from_config,
    mixed_from_config,
    model_from_config,
    negative_weights_from_config,
    negatives_from_config,
    sparse_lookups,
    trainer_from_config,
)
from kgem.factory import evaluation_options as evaluation_options  # this module's name for it too
from kgem.inference.predictor import LinkPredictor
from kgem.lock import FolderLock
from kgem.models.storage import mapped_tables
from kgem.ops.devices import resolve_device
from kgem.ops.process import retain_freed_memory, settings
from kgem.saving import save_model
from kgem.tracking import Tracking, flat_params, tracking_from_config
from kgem.training import Checkpoints, History
from kgem.training.distributed import Replicas, follower, from_environment, local_device
from kgem.training.trainer import EpochCallback

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class PipelineResult(LinkPredictor):
    """The trained model with its data, training history, test evaluation and timings (seconds), plus the
    prediction methods of ``LinkPredictor`` (known triples = all splits of the dataset). A generative circuit's
    result also holds ``likelihood``: the average test log-likelihood and the uniform distribution's bar."""

    config: PipelineConfig
    model: AnyModel
    dataset: Dataset
    history: History
    evaluation: EvaluationResult | None
    timings: dict[str, float] = field(default_factory=dict)
    likelihood: dict[str, float] | None = None
    output: Path | None = None
    known_cache: KnownTriples | KnownSplits | None = field(default=None, repr=False)

    @property
    def entities(self) -> Vocabulary:  # type: ignore[override]
        return self.dataset.entities

    @property
    def relations(self) -> Vocabulary:  # type: ignore[override]
        return self.dataset.relations

    def known_triples(self) -> KnownTriples | KnownSplits:
        if self.known_cache is None:  # a large dataset's triples stay where they are: each query indexes its own
            self.known_cache = self.dataset.known_for_evaluation()
        return self.known_cache

    def metrics(self) -> pd.DataFrame:
        """The test metrics table (rows head / tail / both), empty without a test split; a circuit's has the
        columns ``log_likelihood`` and ``uniform_log_likelihood`` too (the same on every row: they are per triple)."""
        frame = self.evaluation.to_df() if self.evaluation is not None else pd.DataFrame()
        for key, value in (self.likelihood or {}).items():
            frame[key] = value
        return frame

    def losses(self) -> pd.DataFrame:
        """Training loss per epoch, validation MRR where validated, and the training time (validations included) at
        the end of each epoch in seconds, for plotting (quality over time too)."""
        frame = pd.DataFrame({"epoch": range(1, len(self.history.losses) + 1), "loss": self.history.losses})
        frame["valid_mrr"] = frame["epoch"].map(self.history.validation)
        seconds = self.history.epoch_seconds
        frame["seconds"] = seconds if len(seconds) == len(frame) else float("nan")  # a run from before they were kept
        return frame.set_index("epoch")

    def plot_losses(self, path: str | os.PathLike[str] | None = None) -> Figure:
        """The training loss per epoch (``kgem.plots.plot_losses``); ``path``: also save it as a PNG."""
        return plots.plot_losses(self.losses(), path=path)

    def plot_validation(self, path: str | os.PathLike[str] | None = None) -> Figure:
        """Validation MRR per validated epoch with the epoch early stopping kept (``kgem.plots.plot_validation``)."""
        return plots.plot_validation(self.losses(), best_epoch=self.history.best_epoch, path=path)

    def plot_embeddings(self, path: str | os.PathLike[str] | None = None, *,
                        labels_file: str | os.PathLike[str] | None = None, method: str = "pca") -> Figure:
        """A 2-D map of the entity embeddings, coloured by the groups of ``labels_file`` (``entity<TAB>group``
        lines) or by each entity's most frequent training relation (``kgem.plots.plot_model_embeddings``)."""
        return plots.plot_model_embeddings(self, self.dataset.train.hrt, labels_file=labels_file, method=method,
                                           path=path)

    def plot_relation_mrr(self, path: str | os.PathLike[str] | None = None) -> Figure:
        """Test MRR per relation as horizontal bars (``kgem.plots.plot_relation_mrr``)."""
        if self.evaluation is None:
            raise DataError("no test evaluation to plot: the dataset has no test split")
        return plots.plot_relation_mrr(self.evaluation.per_relation(self.relations.labels.tolist()), path=path)

    def plot_relation_patterns(self, path: str | os.PathLike[str] | None = None) -> Figure:
        """The relation patterns of the training triples as a heat map (``kgem.data.patterns``)."""
        table = relation_patterns(self.dataset.train.hrt, self.dataset.num_relations, self.relations.labels)
        return plots.plot_relation_patterns(table, path=path)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Save the model directory (config.json + vocabularies TSV + safetensors), with config and metrics."""
        extra: dict[str, Any] = {"pipeline": to_dict(self.config), "timings": self.timings,
                                 "training": {"epochs": len(self.history.losses), "seconds": self.history.seconds,
                                              "examples_per_second": self.history.examples_per_second}}
        if self.evaluation is not None:
            extra["evaluation"] = self.evaluation.to_dict()
        if self.dataset.prefixes is not None:  # read from RDF: the map its labels expand by (kgem.data.rdf)
            extra["prefixes"] = dict(self.dataset.prefixes)
        if self.likelihood is not None:  # -inf (a typed circuit's excluded test triple) is JSON's null
            extra["likelihood"] = {key: value if math.isfinite(value) else None
                                   for key, value in self.likelihood.items()}
        if isinstance(self.model, CircuitModel):
            return save_circuit(self.model.circuit, directory, name=self.model.name, args=self.model.args,
                                entities=self.dataset.entities, relations=self.dataset.relations, extra=extra)
        return save_model(self.model, directory, entities=self.dataset.entities, relations=self.dataset.relations,
                          spec=self.config.model.spec(**self.model.spec_args()), extra=extra)


def resolve_config(config: PipelineConfig | dict[str, Any] | str | os.PathLike[str] | None,
                   overrides: list[str] | None = None) -> PipelineConfig:
    """A PipelineConfig from an object, a dict, or a YAML/JSON file, with ``section.key=value`` overrides."""
    if config is None:
        cfg = PipelineConfig()
    elif isinstance(config, PipelineConfig):
        cfg = config
    elif isinstance(config, dict):
        cfg = from_dict(PipelineConfig, config)
    else:
        cfg = load_config(PipelineConfig, config)
    return apply_overrides(cfg, overrides or [])


def load_data(cfg: DataConfig, data: Data = None) -> Dataset:
    """The dataset of ``cfg``, or ``data`` given directly (``factory.dataset_from_config``)."""
    return dataset_from_config(cfg, data)


def run_evaluation(model: AnyModel, dataset: Dataset, hrt: torch.Tensor, cfg: EvaluationConfig) -> EvaluationResult:
    """``hrt`` ranked as ``cfg`` says, with the relation categories of the training triples (the test split; under
    protocol ogb against the negatives given with it)."""
    evaluator = evaluator_from_config(cfg, known_from_config(cfg, dataset),
                                      relation_categories=relation_categories(dataset.train.hrt, dataset.num_relations),
                                      negative_weights=negative_weights_from_config(cfg, dataset.train.hrt,
                                                                                    dataset.num_entities),
                                      negatives=negatives_from_config(cfg, dataset, "test"))
    return evaluator(model, hrt)


early_stopping = early_stopping_from_config  # this module's name for it


def pipeline(config: PipelineConfig | dict[str, Any] | str | os.PathLike[str] | None = None, *, data: Data = None,
             overrides: list[str] | None = None, progress: bool = True, output: str | os.PathLike[str] | None = None,
             checkpoint_every: int = 1, resume: bool = False,
             callbacks: Sequence[EpochCallback] = ()) -> PipelineResult:
    """Load data, build the model, train (early stopping on validation MRR), evaluate on test.

    ``config``: a PipelineConfig, a dict of sections, or a YAML/JSON file; ``overrides``: ``["model.dim=200"]``.
    The same config gives the same result from Python and from ``kgem train --config``.

    ``output``: a run folder receiving ``config.yaml`` (the resolved config), ``checkpoints/`` (every
    ``checkpoint_every`` epochs, and on SIGTERM/SIGINT), ``model/`` (the saved model, see ``kgem.load``),
    ``metrics.csv`` / ``losses.csv`` and ``environment.json`` (the process settings it ran with,
    ``kgem.ops.process.settings``). ``resume=True`` continues the run in ``output`` from its newest checkpoint (see
    ``resume``) and ends exactly as an uninterrupted run would.

    Under torchrun (``WORLD_SIZE`` > 1) every process calls this with the same arguments: each trains its part of
    every batch (``kgem.training.distributed``); process 0 writes ``output`` and evaluates the test split, the
    others return the same trained model with ``evaluation`` None.
    """
    cfg = absolute_paths(resolve_config(config, overrides))
    if output is None:
        return _run(cfg, data, progress, None, resume, callbacks)
    if follower():  # rank > 0 of a multi-process run: rank 0 owns the folder, this one reads its checkpoints
        return _run(cfg, data, progress, FollowerFolder(Path(output), checkpoint_every), resume, callbacks)
    with RunFolder(Path(output), cfg, resume, checkpoint_every) as run:  # locked first: a second run fails at once
        return _run(cfg, data, progress, run, resume, callbacks)


def absolute_paths(cfg: PipelineConfig) -> PipelineConfig:
    """The config with its local paths (a dataset folder or file, ``data.path``, ``data.literals``,
    ``model.init_from``, a constraints folder) made absolute,
    so that the run folder's config and the saved model find them from any working directory (resume, evaluate,
    predict --remove-known). Registered dataset names stay names, as ``load_dataset`` prefers them."""
    def absolute(path: str) -> str:
        return str(Path(path).resolve()) if Path(path).exists() else path

    data, model = cfg.data, cfg.model
    dataset = data.dataset if data.dataset in DATASETS else absolute(data.dataset)
    return replace(cfg, data=replace(data, dataset=dataset, path=data.path and absolute(data.path),
                                     literals=data.literals and absolute(data.literals)),
                   model=replace(model, init_from=model.init_from and absolute(model.init_from),
                                 storage_dir=model.storage_dir and absolute(model.storage_dir),
                                 constraints=model.constraints and absolute(model.constraints)))


def _run(cfg: PipelineConfig, data: Data, progress: bool, run: RunFolder | FollowerFolder | None,
         resume: bool, callbacks: Sequence[EpochCallback]) -> PipelineResult:
    retain_freed_memory(cfg.training.retain_memory)
    device = local_device(resolve_device(cfg.training.device, "training.device"))
    replicas = from_environment(device, cfg.training.peer_timeout)
    leader = replicas is None or replicas.leader
    with tracked(cfg, run if isinstance(run, RunFolder) else None, leader) as tracking:
        outcome = _train(cfg, data, progress and leader, run, resume, replicas, device, [tracking.epoch, *callbacks])
        tracking.log_metrics(final_metrics(outcome))
        if run is not None:
            run.finish(outcome)
        if isinstance(run, RunFolder):
            for name in (RunFolder.CONFIG, "metrics.csv", "losses.csv"):
                tracking.log_artifact(run.path / name)
    return outcome


@contextlib.contextmanager
def tracked(cfg: PipelineConfig, run: RunFolder | None, leader: bool) -> Iterator[Tracking]:
    """The run's trackers (none on a rank but 0), started with the config and finished, marked failed if the run
    raises. Built before the data loads: a tracker that is not installed fails first."""
    name = run.path.name if run is not None else f"{cfg.model.name}-{Path(cfg.data.dataset).name}"
    tracking = tracking_from_config(cfg.tracking, run.path if run else None, name) if leader else Tracking([])
    tracking.start(flat_params(cfg))
    try:
        yield tracking
    except BaseException:
        tracking.finish(failed=True)
        raise
    tracking.finish()


def final_metrics(result: PipelineResult) -> dict[str, float]:
    """The test metrics as flat names (``test_mrr`` for both sides, ``test_head_mrr``, ...) and the timings."""
    metrics = {f"time_{key}": value for key, value in result.timings.items()}
    for side, row in result.metrics().iterrows():
        prefix = "test_" if side == "both" else f"test_{side}_"
        metrics |= {prefix + str(key): float(value) for key, value in row.items()}
    return metrics


def _train(cfg: PipelineConfig, data: Data, progress: bool, run: RunFolder | FollowerFolder | None, resume: bool,
           replicas: Replicas | None, device: torch.device, callbacks: Sequence[EpochCallback]) -> PipelineResult:
    """Load, build, train and test: the run of ``_run`` inside its trackers."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    dataset = load_data(cfg.data, data)
    check_protocol(cfg.evaluation, dataset)  # protocol ogb's negatives are there, before any training
    timings["load"] = time.perf_counter() - start
    torch.manual_seed(cfg.training.seed)
    # a resumed run's checkpoint holds every weight: the warm start's source is not needed (nor read) again
    model_cfg = replace(cfg.model, init_from=None) if run is not None and run.resuming else cfg.model
    literals = literals_from_config(cfg.data, dataset)
    with table_storage(cfg.model, run, dataset.num_entities):
        model = model_from_config(model_cfg, dataset.num_entities, dataset.num_relations,
                                  sparse=sparse_lookups(cfg), graph=dataset.train.hrt, entities=dataset.entities,
                                  relations=dataset.relations, literals=literals)
    model = mixed_from_config(cfg.training, model, device).to(device)
    trainable = any(p.requires_grad for p in model.parameters())  # randombaseline has nothing to train
    trainer = trainer_from_config(cfg.training, model, progress=progress, replicas=replicas) if trainable else None
    stopper = early_stopping_from_config(cfg, dataset)  # the trainer refuses plateau without it, before training
    checkpoints = run.checkpoints() if run is not None else None
    start = time.perf_counter()
    try:
        history = History() if trainer is None else trainer.fit(dataset.train.hrt, cfg.training.epochs, stopper,
                                                                checkpoints=checkpoints, resume=resume,
                                                                weights=training_weights(cfg, dataset),
                                                                callbacks=callbacks)
    except BaseException:
        if replicas is not None:
            replicas.leave()
        raise
    if replicas is not None:
        replicas.close()
    timings["train"] = time.perf_counter() - start
    start = time.perf_counter()
    test = dataset.test if replicas is None or replicas.leader else None  # one rank reports the test metrics
    result = run_evaluation(model, dataset, test.hrt, cfg.evaluation) if test is not None else None
    timings["evaluate"] = time.perf_counter() - start
    likelihood = test_likelihood(model, test.hrt) if test is not None and isinstance(model, CircuitModel) else None
    return PipelineResult(cfg, model, dataset, history, result, timings, likelihood=likelihood)


def training_weights(cfg: PipelineConfig, dataset: Dataset) -> torch.Tensor | None:
    """The training triples' numeric values as training uses them (``training.edge_weights``), or None."""
    if cfg.training.edge_weights == "ignore":
        return None
    if cfg.training.edge_weights == "focuse" and dataset.train.weights is None:
        raise ConfigError("training.edge_weights: focuse needs a number per training edge: name its column with "
                          "data.edge_weights (3 for a 4th column)")
    return dataset.train.weights


def table_storage(cfg: ModelConfig, run: RunFolder | FollowerFolder | None,
                  num_entities: int) -> contextlib.AbstractContextManager[None]:
    """Where the model's entity table is built: in memory, or (``model.storage: mapped``) in a file under
    ``model.storage_dir``, the run folder's ``tables/``, or a temporary folder (a process without a run folder of
    its own)."""
    if cfg.storage != "mapped":
        return contextlib.nullcontext()
    if cfg.storage_dir is not None:
        folder = Path(cfg.storage_dir)
    elif isinstance(run, RunFolder):
        folder = run.path / "tables"
    else:  # the model's rows live in it while the process does; it goes with the process
        folder = Path(tempfile.mkdtemp(prefix="kgem-tables-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    limit = cfg.storage_resident_mb * 2**20 if cfg.storage_resident_mb is not None else None
    return mapped_tables(folder, num_entities, limit)


def test_likelihood(model: CircuitModel, hrt: torch.Tensor) -> dict[str, float]:
    """A circuit's average log-likelihood of ``hrt`` (nats per triple) and the uniform distribution's. A typed
    circuit gives probability 0 to a triple outside its constraints, so its average is ``-inf`` as soon as one test
    triple breaks them: it also reports how many do (``excluded_triples``) and the average over the others
    (``log_likelihood_allowed``)."""
    circuit = model.circuit
    result = {"log_likelihood": average_log_likelihood(circuit, hrt),
              "uniform_log_likelihood": uniform_log_likelihood(circuit.num_entities, circuit.num_relations)}
    if isinstance(circuit, TypedSquared):
        h, r, t = hrt.to(circuit.allowed_heads.device).unbind(1)
        allowed = (circuit.allowed_heads[r, h] & circuit.allowed_tails[r, t]).cpu()
        result["excluded_triples"] = int((~allowed).sum())
        if bool(allowed.any()):
            result["log_likelihood_allowed"] = average_log_likelihood(circuit, hrt[allowed])
    return result


def resume(output: str | os.PathLike[str], *, data: Data = None, progress: bool = True,
           device: str | None = None) -> PipelineResult:
    """Continue the run in folder ``output`` (started by ``pipeline(..., output=...)``) from its newest checkpoint,
    with the config saved there; ``device`` moves it (a run started on a GPU continues on the CPU and back: the
    checkpoints hold CPU tensors, loaded onto whichever device trains)."""
    config = Path(output) / RunFolder.CONFIG
    if not config.is_file():
        raise ConfigError(f"{output} is not a run folder: {config} is missing (start it with kgem train --output)")
    overrides = [f"training.device={device}"] if device is not None else []
    return pipeline(config, data=data, progress=progress, output=output, resume=True, overrides=overrides)


class RunFolder:
    """The files of a run: the resolved config first, then checkpoints, then the model, the result tables and the
    process settings it ran with. The
    folder is locked from the start (one run at a time: two would delete each other's checkpoints) until the
    ``with`` block ends or the process exits. A folder this run created is removed again if the run fails before
    writing anything there."""

    CONFIG = "config.yaml"
    CHECKPOINTS = "checkpoints"
    ENVIRONMENT = "environment.json"

    def __init__(self, path: Path, cfg: PipelineConfig, resume: bool, checkpoint_every: int = 1) -> None:
        self.path = path
        self.every = checkpoint_every
        self.created = not path.exists()
        self.lock = FolderLock(path)  # before anything is read or written there
        self.resuming = False
        try:
            found = Checkpoints(path / self.CHECKPOINTS).all()
            if found and not resume:
                raise ConfigError(f"{path} already holds checkpoints of a run; resume it (kgem resume {path}) or "
                                  f"choose a new output folder")
            self.resuming = bool(found)
            save_config(cfg, path / self.CONFIG)
        except BaseException:
            self.release()
            raise

    def checkpoints(self) -> Checkpoints:
        return Checkpoints(self.path / self.CHECKPOINTS, every=self.every)

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is not None and self.created and list(self.path.iterdir()) == [self.path / self.CONFIG]:
            with contextlib.suppress(OSError):  # a run that failed before it trained leaves nothing behind
                (self.path / self.CONFIG).unlink()
                self.path.rmdir()
        self.release()

    def finish(self, result: PipelineResult) -> None:
        result.output = self.path
        result.save(self.path / "model")
        write_csv(result.metrics(), self.path / "metrics.csv")
        write_csv(result.losses(), self.path / "losses.csv")
        write_json(settings(*result.model.parameters()), self.path / self.ENVIRONMENT)


class FollowerFolder:
    """What a rank other than 0 sees of the run folder: the checkpoints it resumes from. It writes nothing (its
    trainer saves no checkpoint) and takes no lock: rank 0 holds the folder for the whole run."""

    def __init__(self, path: Path, checkpoint_every: int = 1) -> None:
        self.path, self.every = path, checkpoint_every
        self.resuming = bool(Checkpoints(path / RunFolder.CHECKPOINTS).all())

    def checkpoints(self) -> Checkpoints:
        return Checkpoints(self.path / RunFolder.CHECKPOINTS, every=self.every)

    def finish(self, result: PipelineResult) -> None:
        result.output = self.path


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_write(path) as f:
        frame.to_csv(f)


def write_json(data: dict[str, Any], path: Path) -> None:
    with atomic_write(path) as f:
        f.write(json.dumps(data, indent=2) + "\n")
