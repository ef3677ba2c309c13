"""``pipeline()``: one call from data and a config to a trained, evaluated model and a result object."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from kgem.atomic import atomic_write
from kgem.config import apply_overrides, from_dict, load_config, save_config, to_dict
from kgem.configs import DataConfig, EvaluationConfig, PipelineConfig
from kgem.data import Dataset, KnownTriples, Vocabulary, load_dataset, relation_categories
from kgem.data.readers import order_to_columns
from kgem.data.sources import DATASETS
from kgem.errors import ConfigError
from kgem.evaluation import EvaluationResult, evaluate
from kgem.factory import model_from_config, trainer_from_config
from kgem.inference.predictor import LinkPredictor
from kgem.lock import FolderLock
from kgem.models import Model, model_info
from kgem.saving import save_model
from kgem.training import Checkpoints, EarlyStopping, History

Data = str | os.PathLike[str] | Dataset | pd.DataFrame | None


@dataclass
class PipelineResult(LinkPredictor):
    """The trained model with its data, training history, test evaluation and timings (seconds), plus the
    prediction methods of ``LinkPredictor`` (known triples = all splits of the dataset)."""

    config: PipelineConfig
    model: Model
    dataset: Dataset
    history: History
    evaluation: EvaluationResult | None
    timings: dict[str, float] = field(default_factory=dict)
    output: Path | None = None
    known_cache: KnownTriples | None = field(default=None, repr=False)

    @property
    def entities(self) -> Vocabulary:  # type: ignore[override]
        return self.dataset.entities

    @property
    def relations(self) -> Vocabulary:  # type: ignore[override]
        return self.dataset.relations

    def known_triples(self) -> KnownTriples:
        if self.known_cache is None:
            self.known_cache = self.dataset.known()
        return self.known_cache

    def metrics(self) -> pd.DataFrame:
        """The test metrics table (rows head / tail / both), empty without a test split."""
        return self.evaluation.to_df() if self.evaluation is not None else pd.DataFrame()

    def losses(self) -> pd.DataFrame:
        """Training loss per epoch and validation MRR where validated, for plotting."""
        frame = pd.DataFrame({"epoch": range(1, len(self.history.losses) + 1), "loss": self.history.losses})
        frame["valid_mrr"] = frame["epoch"].map(self.history.validation)
        return frame.set_index("epoch")

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Save the model directory (config.json + vocabularies TSV + safetensors), with config and metrics."""
        extra: dict[str, Any] = {"pipeline": to_dict(self.config), "timings": self.timings}
        if self.evaluation is not None:
            extra["evaluation"] = self.evaluation.to_dict()
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


def sparse_lookups(cfg: PipelineConfig) -> bool:
    """Sparse embedding gradients for the optimizers that update only the rows a batch touches (not for an
    encoder, which propagates over the whole graph)."""
    optimizer = cfg.training.optimizer.lower()
    return optimizer in ("sparseadam", "rowadagrad") and not model_info(cfg.model.name).dense_gradients


def load_data(cfg: DataConfig, data: Data = None) -> Dataset:
    """The dataset: given directly (a Dataset, a DataFrame of facts, a folder, a file of facts) or named in the
    config, read in ``cfg.format``. One DataFrame or file of facts is split by ``cfg.split`` with nothing unseen in
    valid/test."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, pd.DataFrame):
        return Dataset.from_split(data, cfg.split, seed=cfg.split_seed, on_duplicates=cfg.on_duplicates)
    source = str(data) if data is not None else cfg.dataset
    folder = cfg.path if data is None and cfg.path is not None else source
    order = cfg.format.rpartition("_")[2]
    if cfg.format.startswith("udd_"):
        files = tuple(cfg.files) if cfg.files else ("train.tsv", "valid.tsv", "test.tsv")
        return Dataset.from_id_files(folder, order=order, files=files)  # type: ignore[arg-type]
    reader: dict[str, Any] = {"on_duplicates": cfg.on_duplicates, "header": cfg.header,
                              "extra_columns": cfg.extra_columns, "quotechar": cfg.quotechar}
    if order != "hrt":
        reader["columns"] = order_to_columns(order)
    if cfg.files:
        paths = [Path(folder) / name for name in cfg.files] + [None] * (3 - len(cfg.files))
        return Dataset.from_files(*paths, on_unseen=cfg.on_unseen, **reader)  # type: ignore[arg-type]
    if Path(folder).is_file():
        return Dataset.from_split(folder, cfg.split, seed=cfg.split_seed, **reader)
    return load_dataset(source, path=cfg.path if data is None else None, on_unseen=cfg.on_unseen, **reader)


def run_evaluation(model: Model, dataset: Dataset, hrt: torch.Tensor, cfg: EvaluationConfig) -> EvaluationResult:
    known = dataset.known(cfg.filter) if cfg.filter else None
    return evaluate(model, hrt, known=known, filter_splits="+".join(cfg.filter),
                    relation_categories=relation_categories(dataset.train.hrt, dataset.num_relations),
                    **evaluation_options(cfg))


def evaluation_options(cfg: EvaluationConfig) -> dict[str, Any]:
    """How ``evaluate`` ranks, the same for the test split, the early-stopping validations and ``kgem evaluate``."""
    return {"sides": cfg.sides, "rank_type": cfg.rank_type, "memory_budget_bytes": cfg.memory_budget_mb * 2**20,
            "num_negatives": cfg.num_negatives, "fraction": cfg.fraction, "seed": cfg.seed}


def pipeline(config: PipelineConfig | dict[str, Any] | str | os.PathLike[str] | None = None, *, data: Data = None,
             overrides: list[str] | None = None, progress: bool = True, output: str | os.PathLike[str] | None = None,
             checkpoint_every: int = 1, resume: bool = False) -> PipelineResult:
    """Load data, build the model, train (early stopping on validation MRR), evaluate on test.

    ``config``: a PipelineConfig, a dict of sections, or a YAML/JSON file; ``overrides``: ``["model.dim=200"]``.
    The same config gives the same result from Python and from ``kgem train --config``.

    ``output``: a run folder receiving ``config.yaml`` (the resolved config), ``checkpoints/`` (every
    ``checkpoint_every`` epochs, and on SIGTERM/SIGINT), ``model/`` (the saved model, see ``kgem.load``) and
    ``metrics.csv`` / ``losses.csv``. ``resume=True`` continues the run in ``output`` from its newest checkpoint
    (see ``resume``) and ends exactly as an uninterrupted run would.
    """
    cfg = absolute_paths(resolve_config(config, overrides))
    if output is None:
        return _run(cfg, data, progress, None, resume)
    with RunFolder(Path(output), cfg, resume, checkpoint_every) as run:  # locked first: a second run fails at once
        return _run(cfg, data, progress, run, resume)


def absolute_paths(cfg: PipelineConfig) -> PipelineConfig:
    """The config with its local paths (a dataset folder or file, ``data.path``, ``model.init_from``) made absolute,
    so that the run folder's config and the saved model find them from any working directory (resume, evaluate,
    predict --remove-known). Registered dataset names stay names, as ``load_dataset`` prefers them."""
    def absolute(path: str) -> str:
        return str(Path(path).resolve()) if Path(path).exists() else path

    data, model = cfg.data, cfg.model
    dataset = data.dataset if data.dataset in DATASETS else absolute(data.dataset)
    return replace(cfg, data=replace(data, dataset=dataset, path=data.path and absolute(data.path)),
                   model=replace(model, init_from=model.init_from and absolute(model.init_from)))


def _run(cfg: PipelineConfig, data: Data, progress: bool, run: RunFolder | None, resume: bool) -> PipelineResult:
    timings: dict[str, float] = {}
    start = time.perf_counter()
    dataset = load_data(cfg.data, data)
    timings["load"] = time.perf_counter() - start
    torch.manual_seed(cfg.training.seed)
    # a resumed run's checkpoint holds every weight: the warm start's source is not needed (nor read) again
    model_cfg = replace(cfg.model, init_from=None) if run is not None and run.resuming else cfg.model
    model = model_from_config(model_cfg, dataset.num_entities, dataset.num_relations,
                              sparse=sparse_lookups(cfg), graph=dataset.train.hrt, entities=dataset.entities,
                              relations=dataset.relations)
    trainable = any(p.requires_grad for p in model.parameters())  # randombaseline has nothing to train
    trainer = trainer_from_config(cfg.training, model, progress=progress) if trainable else None
    stopper = early_stopping(cfg, dataset)
    if trainer is not None and stopper is None and cfg.training.scheduler == "plateau":
        raise ConfigError("training.scheduler plateau steps on the validation MRR: it needs "
                          "training.early_stopping and a valid split")
    checkpoints = run.checkpoints() if run is not None else None
    start = time.perf_counter()
    history = History() if trainer is None else trainer.fit(dataset.train.hrt, cfg.training.epochs, stopper,
                                                            checkpoints=checkpoints, resume=resume)
    timings["train"] = time.perf_counter() - start
    start = time.perf_counter()
    test = dataset.test
    result = run_evaluation(model, dataset, test.hrt, cfg.evaluation) if test is not None else None
    timings["evaluate"] = time.perf_counter() - start
    outcome = PipelineResult(cfg, model, dataset, history, result, timings)
    if run is not None:
        run.finish(outcome)
    return outcome


def early_stopping(cfg: PipelineConfig, dataset: Dataset) -> EarlyStopping | None:
    """Validation MRR every ``training.frequency`` epochs, ranked as the test split is (filter, sides, rank type,
    sampling, memory budget)."""
    if not cfg.training.early_stopping or dataset.valid is None:
        return None
    valid, ev = dataset.valid.hrt, cfg.evaluation
    known = dataset.known(ev.filter) if ev.filter else None
    return EarlyStopping(lambda m: evaluate(m, valid, known=known, **evaluation_options(ev)).mrr,
                         frequency=cfg.training.frequency, patience=cfg.training.patience,
                         min_delta=cfg.training.min_delta)


def resume(output: str | os.PathLike[str], *, data: Data = None, progress: bool = True) -> PipelineResult:
    """Continue the run in folder ``output`` (started by ``pipeline(..., output=...)``) from its newest checkpoint,
    with the config saved there."""
    config = Path(output) / RunFolder.CONFIG
    if not config.is_file():
        raise ConfigError(f"{output} is not a run folder: {config} is missing (start it with kgem train --output)")
    return pipeline(config, data=data, progress=progress, output=output, resume=True)


class RunFolder:
    """The files of a run: the resolved config first, then checkpoints, then the model and result tables. The
    folder is locked from the start (one run at a time: two would delete each other's checkpoints) until the
    ``with`` block ends or the process exits. A folder this run created is removed again if the run fails before
    writing anything there."""

    CONFIG = "config.yaml"
    CHECKPOINTS = "checkpoints"

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


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_write(path) as f:
        frame.to_csv(f)
