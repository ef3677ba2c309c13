"""``pipeline()``: one call from data and a config to a trained, evaluated model and a result object."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from kgem.config import apply_overrides, from_dict, load_config, to_dict
from kgem.configs import DataConfig, EvaluationConfig, PipelineConfig
from kgem.data import Dataset, load_dataset, relation_categories
from kgem.evaluation import EvaluationResult, evaluate
from kgem.factory import model_from_config, trainer_from_config
from kgem.models import Model
from kgem.training import EarlyStopping, History

Data = str | os.PathLike[str] | Dataset | pd.DataFrame | None


@dataclass
class PipelineResult:
    """The trained model with its data, training history, test evaluation and timings (seconds)."""

    config: PipelineConfig
    model: Model
    dataset: Dataset
    history: History
    evaluation: EvaluationResult | None
    timings: dict[str, float] = field(default_factory=dict)

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
        from kgem.saving import save_model

        extra: dict[str, Any] = {"pipeline": to_dict(self.config), "timings": self.timings}
        if self.evaluation is not None:
            extra["evaluation"] = self.evaluation.to_dict()
        return save_model(self.model, directory, entities=self.dataset.entities, relations=self.dataset.relations,
                          spec=self.config.model.spec(), extra=extra)


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
    """The dataset: given directly (Dataset, DataFrame of train triples, folder) or named in the config."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, pd.DataFrame):
        return Dataset.from_dfs(data, on_duplicates=cfg.on_duplicates)
    source = str(data) if data is not None else cfg.dataset
    return load_dataset(source, path=cfg.path if data is None else None, on_unseen=cfg.on_unseen,
                        on_duplicates=cfg.on_duplicates)


def run_evaluation(model: Model, dataset: Dataset, hrt: torch.Tensor, cfg: EvaluationConfig) -> EvaluationResult:
    known = dataset.known(cfg.filter) if cfg.filter else None
    return evaluate(model, hrt, known=known, sides=cfg.sides, rank_type=cfg.rank_type,
                    memory_budget_bytes=cfg.memory_budget_mb * 2**20, filter_splits="+".join(cfg.filter),
                    relation_categories=relation_categories(dataset.train.hrt, dataset.num_relations))


def pipeline(config: PipelineConfig | dict[str, Any] | str | os.PathLike[str] | None = None, *, data: Data = None,
             overrides: list[str] | None = None, progress: bool = True) -> PipelineResult:
    """Load data, build the model, train (early stopping on validation MRR), evaluate on test.

    ``config``: a PipelineConfig, a dict of sections, or a YAML/JSON file; ``overrides``: ``["model.dim=200"]``.
    The same config gives the same result from Python and from ``kgem train --config``.
    """
    cfg = resolve_config(config, overrides)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    dataset = load_data(cfg.data, data)
    timings["load"] = time.perf_counter() - start
    torch.manual_seed(cfg.training.seed)
    model = model_from_config(cfg.model, dataset.num_entities, dataset.num_relations,
                              sparse=cfg.training.optimizer == "sparseadam")
    trainer = trainer_from_config(cfg.training, model, progress=progress)
    stopper = None
    if cfg.training.early_stopping and dataset.valid is not None:
        valid = dataset.valid.hrt
        known = dataset.known(cfg.evaluation.filter) if cfg.evaluation.filter else None
        stopper = EarlyStopping(lambda m: evaluate(m, valid, known=known).mrr, frequency=cfg.training.frequency,
                                patience=cfg.training.patience, min_delta=cfg.training.min_delta)
    start = time.perf_counter()
    history = trainer.fit(dataset.train.hrt, cfg.training.epochs, stopper)
    timings["train"] = time.perf_counter() - start
    start = time.perf_counter()
    result = run_evaluation(model, dataset, dataset.test.hrt, cfg.evaluation) if dataset.test is not None else None
    timings["evaluate"] = time.perf_counter() - start
    return PipelineResult(cfg, model, dataset, history, result, timings)
