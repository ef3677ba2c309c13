"""Config stops here: these factories turn config sections into objects built from plain arguments (G6).

Each kind of object is built from its section here and nowhere else: ``pipeline()``, ``kgem train`` and ``kgem
evaluate`` call these, so the same config builds the same dataset, model, trainer and evaluation everywhere."""

from __future__ import annotations

import functools
import inspect
import math
import os
import typing
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch

from kgem.checks import duration
from kgem.circuits.model import AnyModel, CircuitModel
from kgem.circuits.objectives import check_weights, objective, pll
from kgem.circuits.registry import CIRCUITS, build_circuit
from kgem.circuits.squared import SquaredCircuit
from kgem.circuits.typed import TypedSquared
from kgem.config import coerce
from kgem.configs import RDF_FORMATS, DataConfig, EvaluationConfig, ModelConfig, PipelineConfig, TrainingConfig
from kgem.data import Dataset, KnownTriples, load_dataset
from kgem.data.known import KnownSplits
from kgem.data.literals import literals_from_df, read_literals
from kgem.data.negatives import GivenNegatives
from kgem.data.rdf import rdf_format, read_rdf_literals
from kgem.data.readers import order_to_columns
from kgem.data.types import DomainConstraints, derive_types, read_types
from kgem.data.vocab import Vocabulary
from kgem.errors import ConfigError
from kgem.evaluation import EvaluationResult, ScoringModel, evaluate
from kgem.evaluation.candidates import degree_weights
from kgem.evaluation.given import given_evaluator
from kgem.models import INITIALIZERS, Model, build_model, model_info
from kgem.models.builders import model_names
from kgem.models.literal import LITERAL_MODELS
from kgem.models.model import interaction_model
from kgem.models.representation import Embedding
from kgem.pretrained import warm_start, warm_start_circuit
from kgem.registry import unknown
from kgem.saving import BUILD_ERRORS
from kgem.training import (
    LOSSES,
    REGULARIZERS,
    SCHEDULERS,
    SLCWA,
    Approach,
    EarlyStopping,
    EpochSchedule,
    Generative,
    KvsAll,
    NegativeSampler,
    OneVsAll,
    Trainer,
)
from kgem.training import build_optimizer as make_optimizer
from kgem.training import build_scheduler as make_scheduler
from kgem.training.distributed import Replicas, launched
from kgem.training.focuse import FocusE
from kgem.training.mixed import HostTable, trainable_tensors, update_async
from kgem.training.optim import OPTIMIZERS
from kgem.training.schedule import RULES, Plateau

Data = str | os.PathLike[str] | Dataset | pd.DataFrame | None
Evaluator = Callable[[ScoringModel, torch.Tensor], EvaluationResult]
PLATEAU_RECORD = ("best", "bad", "scale")  # what a plateau schedule has seen, not a setting


def dataset_from_config(cfg: DataConfig, data: Data = None) -> Dataset:
    """The dataset: given directly (a Dataset, a DataFrame of facts, a folder, a file of facts) or named in the
    config, read in ``cfg.format``. One DataFrame or file of facts is split by ``cfg.split`` with nothing unseen in
    valid/test."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, pd.DataFrame):
        return Dataset.from_split(data, cfg.split, seed=cfg.split_seed, on_duplicates=cfg.on_duplicates,
                                  edge_weights=cfg.edge_weights)
    source = str(data) if data is not None else cfg.dataset
    folder = cfg.path if data is None and cfg.path is not None else source
    order = cfg.format.rpartition("_")[2]
    if cfg.format.startswith("udd_"):
        files = tuple(cfg.files) if cfg.files else ("train.tsv", "valid.tsv", "test.tsv")
        if isinstance(cfg.edge_weights, str):
            raise ConfigError(f"data.edge_weights: {cfg.format} files have no header, so name the weight column by "
                              f"its position (3: a 4th column), not {cfg.edge_weights!r}")
        return Dataset.from_id_files(folder, order=order, files=files,  # type: ignore[arg-type]
                                     edge_weights=cfg.edge_weights)
    reader: dict[str, Any] = {"on_duplicates": cfg.on_duplicates, "header": cfg.header,
                              "extra_columns": cfg.extra_columns, "quotechar": cfg.quotechar}
    if cfg.edge_weights is not None:
        reader["edge_weights"] = cfg.edge_weights
    if cfg.format in RDF_FORMATS:  # files named .nt, .ttl, ... are RDF without it (kgem.data.rdf)
        reader["format"] = cfg.format
    elif order != "hrt":
        reader["columns"] = order_to_columns(order)
    if cfg.rdf_literals != "drop":
        reader["literals"] = cfg.rdf_literals
    if cfg.files:
        paths = [Path(folder) / name for name in cfg.files] + [None] * (3 - len(cfg.files))
        return Dataset.from_files(*paths, on_unseen=cfg.on_unseen, **reader)  # type: ignore[arg-type]
    if Path(folder).is_file():
        return Dataset.from_split(folder, cfg.split, seed=cfg.split_seed, **reader)
    return load_dataset(source, path=cfg.path if data is None else None, on_unseen=cfg.on_unseen, **reader)


def sparse_lookups(cfg: PipelineConfig) -> bool:
    """Sparse embedding gradients for the optimizers that update only the rows a batch touches (not for an
    encoder, which propagates over the whole graph)."""
    optimizer = cfg.training.optimizer.lower()
    if is_circuit(cfg.model.name):
        return False
    return optimizer in ("sparseadam", "rowadagrad") and not model_info(cfg.model.name).dense_gradients


def is_circuit(name: str) -> bool:
    """Whether model ``name`` is a generative circuit (``kgem.circuits.CIRCUITS``: complex2, cp2, complex+, ...)."""
    return name.lower() in CIRCUITS


def check_model_name(name: str) -> None:
    """An unknown model name is a ConfigError listing every model and circuit."""
    if not is_circuit(name) and name.lower() not in model_names():
        raise unknown("model", name, [*model_names(), *CIRCUITS.names()])


def model_from_config(cfg: ModelConfig, num_entities: int, num_relations: int, *, sparse: bool = False,
                      graph: torch.Tensor | None = None, entities: Vocabulary | None = None,
                      relations: Vocabulary | None = None, literals: torch.Tensor | None = None) -> AnyModel:
    """``sparse``: lookups give sparse gradients (for ``sparseadam``); ``graph``: the training triples, for
    encoders (R-GCN); ``entities`` and ``relations``: the labels of the ids, which ``init_from`` matches;
    ``literals``: the entities' numeric attributes (``literals_from_config``), which the literal models need and
    no other takes. A circuit's name gives a ``CircuitModel`` (``circuit_from_config``)."""
    check_model_name(cfg.name)
    check_literals(cfg.name, literals)
    if is_circuit(cfg.name):
        return circuit_from_config(cfg, num_entities, num_relations, graph=graph, entities=entities,
                                   relations=relations)
    if cfg.constraints is not None:
        raise ConfigError(f"model.constraints: restricts a squared generative circuit (cp2, complex2), not "
                          f"model {cfg.name}")
    model = _build_from_config(cfg, num_entities, num_relations, sparse=sparse, graph=graph, literals=literals)
    if cfg.init_from is not None:
        if entities is None or relations is None:
            raise ConfigError("model.init_from matches rows by label: give the entity and relation vocabularies")
        warm_start(model, cfg.init_from, entities=entities, relations=relations)
    return model


def check_literals(name: str, literals: torch.Tensor | None) -> None:
    """A literal model needs ``data.literals``, and no other model reads them: a ConfigError saying which."""
    if name.lower() in LITERAL_MODELS and literals is None:
        raise ConfigError(f"model {name} combines each entity's embedding with its numeric attributes: set "
                          f"data.literals to a file of entity<TAB>attribute<TAB>value lines (kgem train --literals "
                          f"FILE)")
    if name.lower() not in LITERAL_MODELS and literals is not None:
        raise ConfigError(f"data.literals: model {name} reads no numeric attributes; the models that do are "
                          f"{', '.join(LITERAL_MODELS)}")


def literals_from_config(cfg: DataConfig, dataset: Dataset) -> torch.Tensor | None:
    """The matrix of ``cfg.literals`` over the dataset's entities (``kgem.data.literals.read_literals``; an RDF file:
    its numeric literals, ``kgem.data.rdf.read_rdf_literals``): one row per entity, one column per attribute. Without
    it, ``rdf_literals: attributes`` takes the numeric literals of the dataset's RDF files; else None."""
    if cfg.literals is not None:
        if rdf_format(cfg.literals):
            return read_rdf_literals(cfg.literals, dataset.entities, prefixes=dataset.prefixes).values
        return read_literals(cfg.literals, dataset.entities).values
    if cfg.rdf_literals != "attributes":
        return None
    if dataset.attributes is None or not len(dataset.attributes):
        raise ConfigError(f"data.rdf_literals: attributes, but dataset {dataset.name} has no numeric literals "
                          f"(xsd:integer, xsd:double, ... objects of RDF triples) to read as attributes")
    return literals_from_df(dataset.attributes, dataset.entities, source=f"{dataset.name} (RDF literals)").values


def _build_from_config(cfg: ModelConfig, num_entities: int, num_relations: int, *, sparse: bool,
                       graph: torch.Tensor | None, literals: torch.Tensor | None = None) -> Model:
    init = None
    if cfg.init:
        initializer = INITIALIZERS.get(cfg.init)
        init = construct("model.init_args", cfg.init, initializer,
                         **checked("model.init_args", cfg.init, cfg.init_args, arguments(initializer)))
        with torch.random.fork_rng(devices=[]):  # torch checks some arguments only when applied; the seed's draws
            construct("model.init_args", cfg.init, init, torch.empty(2, 2))  # stay the model's
    args = checked("model.args", cfg.name, cfg.args, model_arguments(cfg.name))
    if literals is not None:
        args["literals"] = literals
    model = construct("model.args", cfg.name, build_model, cfg.name, num_entities, num_relations, cfg.dim,
                      inverse=cfg.inverse, graph=graph, entity_initializer=init, relation_initializer=init,
                      sparse=sparse, **args)
    construct("model.args", cfg.name, model.probe)  # what only shows when scoring fails here, not mid-training
    return model


def circuit_from_config(cfg: ModelConfig, num_entities: int, num_relations: int, *,
                        graph: torch.Tensor | None = None, entities: Vocabulary | None = None,
                        relations: Vocabulary | None = None) -> CircuitModel:
    """The generative circuit ``cfg.name`` of rank ``cfg.dim``, its ``model.args`` checked by name and type, and
    restricted to ``cfg.constraints`` (derived from ``graph``, the training triples, or read from type files of
    the labels in ``entities`` and ``relations``). ``model.inverse`` does not apply (a circuit models the triples
    as given); ``init`` is refused (a circuit starts at its own near-uniform initialisation), and ``init_from`` a
    squared circuit takes from a saved CP / ComplEx model or circuit of its kind (``warm_start_circuit``)."""
    name = cfg.name.lower()
    if cfg.init is not None:
        raise ConfigError(f"model.init: circuit {name} starts from its own initialisation (or from a saved model: "
                          f"model.init_from)")
    known = arguments(CIRCUITS.get(name).__init__, skip=("num_entities", "num_relations", "dim"))
    args = checked("model.args", name, cfg.args, known)
    circuit = construct("model.args", name, build_circuit, name, num_entities, num_relations, cfg.dim, **args)
    if cfg.init_from is not None:
        if not isinstance(circuit, SquaredCircuit):
            raise ConfigError(f"model.init_from: only squared circuits (cp2, complex2) start from a saved model, "
                              f"not {name}")
        if entities is None or relations is None:
            raise ConfigError("model.init_from matches rows by label: give the entity and relation vocabularies")
        warm_start_circuit(circuit, cfg.init_from, entities=entities, relations=relations)
    if cfg.constraints is not None:
        if not isinstance(circuit, SquaredCircuit):
            raise ConfigError(f"model.constraints: only squared circuits (cp2, complex2) can be typed, not {name}")
        domains = constraints_from_config(cfg.constraints, num_entities, num_relations, graph, entities, relations)
        check_graph_fits(domains, graph, cfg.constraints, entities, relations)
        circuit = construct("model.constraints", name, TypedSquared, circuit, domains)
    return CircuitModel(circuit, name, args)


def check_graph_fits(domains: DomainConstraints, graph: torch.Tensor | None, source: str,
                     entities: Vocabulary | None, relations: Vocabulary | None) -> None:
    """Every training triple must be allowed: the typed circuit gives a breaking one probability 0, an infinite
    loss. A ConfigError counts them and names the first (by label where the vocabularies are given)."""
    if graph is None:
        return
    broken = graph[~domains.check(graph)]
    if not len(broken):
        return
    h, r, t = broken[0].tolist()
    if entities is not None and relations is not None:
        h, r, t = entities.labels[h], relations.labels[r], entities.labels[t]
    raise ConfigError(f"model.constraints: {len(broken)} training triples break the domains and ranges of {source}, "
                      f"e.g. ({h}, {r}, {t}); fix the type files or leave those triples out")


TYPE_FILES = ("entity_types.tsv", "relation_signatures.tsv")  # a constraints folder (formats: kgem.data.types)


def constraints_from_config(source: str, num_entities: int, num_relations: int, graph: torch.Tensor | None,
                            entities: Vocabulary | None, relations: Vocabulary | None) -> DomainConstraints:
    """``derived``: the domains and ranges of the training triples ``graph``; else a folder of ``TYPE_FILES``."""
    if source == "derived":
        if graph is None:
            raise ConfigError("model.constraints: derived needs the training triples")
        return derive_types(graph, num_entities, num_relations)
    folder = Path(source)
    missing = [name for name in TYPE_FILES if not (folder / name).is_file()]
    if missing:
        raise ConfigError(f"model.constraints: {source} must be 'derived' or a folder holding "
                          f"{' and '.join(TYPE_FILES)}; {folder / missing[0]} is missing")
    if entities is None or relations is None:
        raise ConfigError("model.constraints: type files name labels: give the entity and relation vocabularies")
    return read_types(folder / TYPE_FILES[0], folder / TYPE_FILES[1], entities, relations)


def mixed_from_config(cfg: TrainingConfig, model: AnyModel, device: torch.device) -> AnyModel:
    """``model`` with its entity table moved into CPU memory (``training.mixed``), the rest to go to ``device``;
    ``model`` itself without ``training.mixed``. Mixed training needs what it was built for: a plain entity table,
    negative sampling, rowadagrad, one process without HOGWILD workers."""
    if not cfg.mixed:
        return model
    problems = [(not isinstance(model, Model) or type(model.entity) is not Embedding, "a model whose entities are a "
                 "plain embedding table (not a circuit or an encoder)"), (cfg.approach != "slcwa", "approach slcwa "
                 "(1vsAll and KvsAll score every entity each step)"), (cfg.optimizer.lower() != "rowadagrad",
                 "optimizer rowadagrad (its per-row state stays beside the table)"), (cfg.workers > 1, "workers 1"),
                (launched() and cfg.distributed != "sharded", "one process, or sharded training (with --nproc)")]
    missing = [needs for failed, needs in problems if failed]
    if missing:
        raise ConfigError(f"training.mixed needs {missing[0]}")
    assert isinstance(model, Model) and isinstance(model.entity, Embedding)
    model.entity = HostTable(model.entity, device)
    return model


def approach_from_config(cfg: TrainingConfig, model: AnyModel | None = None) -> Approach:
    """How batches are trained: ``cfg.approach`` for an embedding model, ``cfg.objective`` for a circuit."""
    if isinstance(model, CircuitModel):
        if cfg.precision != "float32":
            raise ConfigError("generative circuits train in float32 (their normalising sums lose too much in "
                              "bfloat16): set training.precision: float32")
        if cfg.relation_prediction:
            raise ConfigError("a generative circuit weighs its relation term log p(r | h, t) by the second of "
                              "training.objective_weights: set training.relation_prediction to 0")
        weights = construct("training.objective_weights", "pll", check_weights, cfg.objective_weights)
        return Generative(functools.partial(pll, weights=weights) if cfg.objective == "pll" else
                          objective(cfg.objective))
    if cfg.approach == "slcwa":
        focuse = None
        if cfg.edge_weights == "focuse":
            focuse = construct("training.focuse_args", "focuse", FocusE,
                               **checked("training.focuse_args", "focuse", cfg.focuse_args,
                                         arguments(FocusE, skip=("epoch",))))
        return SLCWA(NegativeSampler(cfg.num_negatives, bernoulli=cfg.sampler == "bernoulli", filtered=cfg.filtered,
                                     shared=cfg.shared_negatives), focuse)
    return KvsAll() if cfg.approach == "kvsall" else OneVsAll(cfg.relation_prediction)


def trainer_from_config(cfg: TrainingConfig, model: AnyModel, progress: bool = True,
                        replicas: Replicas | None = None) -> Trainer:
    """The trainer ``cfg`` describes. A circuit trains on ``cfg.objective``: approach, loss and regularizer do not
    apply to it, and sparse optimizers are refused (its objective touches every row each step)."""
    loss_cls = LOSSES.get(cfg.loss)
    loss = construct("training.loss_args", cfg.loss, loss_cls,
                     **checked("training.loss_args", cfg.loss, cfg.loss_args, arguments(loss_cls.__init__)))
    optimizer_args = cfg.optimizer_args
    if cfg.optimizer.lower() in OPTIMIZERS:  # else build_optimizer names the known ones
        optimizer_args = checked("training.optimizer_args", cfg.optimizer, cfg.optimizer_args,
                                 optimizer_arguments(cfg.optimizer))
        for name, value in optimizer_args.items():  # torch checks some only by sign: momentum=nan passes
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"training.optimizer_args.{name} must be finite, got {value}")
    circuit = isinstance(model, CircuitModel)
    if circuit and cfg.optimizer.lower() in ("sparseadam", "rowadagrad"):
        raise ConfigError(f"training.optimizer: {cfg.optimizer} updates the rows a batch touches; a circuit's "
                          f"objective normalises over every row each step: use adam, adamw, adagrad or sgd")
    optimizer = make_optimizer(cfg.optimizer, trainable_tensors(model), lr=cfg.lr, **optimizer_args)
    if cfg.async_update:
        update_async(model, optimizer)
    regularizer = None
    if cfg.regularizer and not circuit:
        reg_cls = REGULARIZERS.get(cfg.regularizer)
        regularizer = construct("training.regularizer_args", cfg.regularizer, reg_cls,
                                **checked("training.regularizer_args", cfg.regularizer, cfg.regularizer_args,
                                          arguments(reg_cls.__init__)))
    return Trainer(model, approach_from_config(cfg, model), loss, optimizer, regularizer=regularizer,
                   scheduler=scheduler_from_config(cfg, optimizer), batch_size=cfg.batch_size, seed=cfg.seed,
                   progress=progress, workers=cfg.workers, clip_grad_norm=cfg.clip_grad_norm, replicas=replicas,
                   partitions=partition_count(cfg, replicas), shard_negatives=cfg.shard_negatives,
                   bucket_passes=cfg.bucket_passes, round_checkpoints=cfg.round_checkpoints,
                   bucket_order=cfg.bucket_order,
                   time_budget=duration("training.time_budget", cfg.time_budget) if cfg.time_budget else None,
                   precision=cfg.precision)


def partition_count(cfg: TrainingConfig, replicas: Replicas | None) -> int | None:
    """Sharded training's entity partitions: ``cfg.partitions``, by default twice the processes (so every rank
    has a bucket in most rounds); None when training is not sharded."""
    if cfg.distributed != "sharded":
        return None
    return cfg.partitions or 2 * (replicas.world if replicas is not None else 1)


def scheduler_from_config(cfg: TrainingConfig, optimizer: torch.optim.Optimizer) -> EpochSchedule | None:
    """The learning-rate schedule (warm-up, then ``cfg.scheduler``), or None for a constant rate. Its arguments are
    checked by name and type as every other ``*_args`` section is."""
    if cfg.scheduler is None and not cfg.warmup_epochs and not cfg.scheduler_args:
        return None
    args = cfg.scheduler_args
    if cfg.scheduler is None or cfg.scheduler in SCHEDULERS:  # else build_scheduler names the known ones
        what = f"scheduler {cfg.scheduler}" if cfg.scheduler else "no scheduler (training.scheduler: null)"
        args = checked("training.scheduler_args", what, args, scheduler_arguments(cfg.scheduler))
    try:
        return make_scheduler(cfg.scheduler, optimizer, warmup_epochs=cfg.warmup_epochs, epochs=cfg.epochs, **args)
    except ConfigError as e:  # a required argument missing, a value out of its range
        raise ConfigError(f"training.scheduler_args: {e}") from e


def known_from_config(cfg: EvaluationConfig, dataset: Dataset) -> KnownTriples | KnownSplits | None:
    """The true triples that ``cfg.filter`` filters out of the ranking, or None for raw ranks (and for protocol
    ogb, which filters nothing)."""
    return dataset.known_for_evaluation(cfg.filter) if cfg.filter and cfg.protocol != "ogb" else None


def negatives_from_config(cfg: EvaluationConfig, dataset: Dataset, split: str) -> GivenNegatives | None:
    """The negatives given with ``split`` that protocol ogb ranks against, or None for the standard protocol; a
    dataset that gives none is a ConfigError naming it."""
    if cfg.protocol != "ogb":
        return None
    negatives = dataset.negatives.get(split)
    if negatives is None:
        raise ConfigError(f"evaluation.protocol ogb ranks against negatives given with the dataset; dataset "
                          f"{dataset.name!r} gives none for its {split} split (ogbl-biokg and ogbl-wikikg2 do)")
    return negatives


def check_protocol(cfg: EvaluationConfig, dataset: Dataset) -> None:
    """Before training: protocol ogb needs negatives given with each evaluated split (valid, test) the dataset has."""
    for split in ("valid", "test"):
        if split in dataset.splits():
            negatives_from_config(cfg, dataset, split)


def evaluation_options(cfg: EvaluationConfig) -> dict[str, Any]:
    """How ``evaluate`` ranks, the same for the test split, the early-stopping validations and ``kgem evaluate``."""
    return {"sides": cfg.sides, "rank_type": cfg.rank_type, "memory_budget_bytes": cfg.memory_budget_mb * 2**20,
            "num_negatives": cfg.num_negatives, "fraction": cfg.fraction, "seed": cfg.seed}


def evaluator_from_config(cfg: EvaluationConfig, known: KnownTriples | KnownSplits | None, *,
                          relation_categories: np.ndarray | None = None, progress: bool = False,
                          negative_weights: torch.Tensor | None = None,
                          negatives: GivenNegatives | None = None) -> Evaluator:
    """``evaluator(model, hrt)``: the ranking of ``hrt`` that ``cfg`` describes, for the test split, the
    early-stopping validations and ``kgem evaluate``. ``known``: the triples of the splits ``cfg.filter`` names
    (None when it names none); ``relation_categories`` (one per relation id) enables ``result.per_category()``;
    ``negative_weights``: the sampling weights of ``negative_sampler: degree`` (``negative_weights_from_config``);
    ``negatives``: protocol ogb's, given with the split ``hrt`` comes from (``negatives_from_config``), which
    filters nothing (``known`` is not used)."""
    if cfg.protocol == "ogb":
        if negatives is None:
            raise ValueError("evaluation.protocol ogb ranks against the split's given negatives; none were given")
        return given_evaluator(negatives, sides=cfg.sides, rank_type=cfg.rank_type,
                               memory_budget_bytes=cfg.memory_budget_mb * 2**20, fraction=cfg.fraction,
                               seed=cfg.seed, relation_categories=relation_categories, progress=progress)
    if bool(cfg.filter) != (known is not None):
        raise ValueError(f"evaluation.filter {cfg.filter} and the known triples given disagree")
    if (negative_weights is None) != (cfg.num_negatives is None or cfg.negative_sampler == "uniform"):
        raise ValueError(f"evaluation.negative_sampler {cfg.negative_sampler} and the weights given disagree")
    return functools.partial(evaluate, known=known, filter_splits="+".join(cfg.filter),
                             relation_categories=relation_categories, progress=progress,
                             negative_weights=negative_weights, **evaluation_options(cfg))


def negative_weights_from_config(cfg: EvaluationConfig, train: torch.Tensor, num_entities: int) -> torch.Tensor | None:
    """The sampling weights of sampled evaluation: training degree + 1 with ``negative_sampler: degree`` (and
    ``num_negatives``), else None (uniform draws, or every entity)."""
    if cfg.num_negatives is None or cfg.negative_sampler == "uniform":
        return None
    return degree_weights(train, num_entities)


def early_stopping_from_config(cfg: PipelineConfig, dataset: Dataset) -> EarlyStopping | None:
    """Validation MRR every ``training.frequency`` epochs, ranked as the test split is (filter, sides, rank type,
    sampling, memory budget); None without ``training.early_stopping`` or a valid split."""
    if not cfg.training.early_stopping or dataset.valid is None:
        return None
    valid = dataset.valid.hrt
    weights = negative_weights_from_config(cfg.evaluation, dataset.train.hrt, dataset.num_entities)
    validate = evaluator_from_config(cfg.evaluation, known_from_config(cfg.evaluation, dataset),
                                     negative_weights=weights,
                                     negatives=negatives_from_config(cfg.evaluation, dataset, "valid"))
    return EarlyStopping(lambda m: validate(m, valid).mrr, frequency=cfg.training.frequency,
                         patience=cfg.training.patience, min_delta=cfg.training.min_delta)


T = TypeVar("T")


def arguments(function: Callable[..., Any], skip: Collection[str] = ()) -> dict[str, Any]:
    """The keyword arguments ``function`` takes, with their annotations (``Any`` where unknown), less ``self`` and
    ``skip``."""
    params = inspect.signature(function).parameters.values()
    try:
        hints = typing.get_type_hints(function)
    except (NameError, TypeError):  # an annotation that does not resolve here: check names only
        hints = {}
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: hints.get(p.name, Any) for p in params if p.kind in named and p.name not in {"self", *skip}}


def model_arguments(name: str) -> dict[str, Any]:
    """What ``model.args`` may name for model ``name``: its builder's arguments (an interaction's; R-GCN's
    encoder's and decoder's), and ``normalize``, which every model takes."""
    info = model_info(name)
    allowed = {p.name for p in info.parameters()}
    known: dict[str, Any] = {}
    for function, _ in info.arguments:
        known |= {key: tp for key, tp in arguments(function).items() if key in allowed}
    return known | {"normalize": arguments(interaction_model)["normalize"]}


def optimizer_arguments(name: str) -> dict[str, Any]:
    """What ``training.optimizer_args`` may name (the learning rate is ``training.lr``)."""
    cls = OPTIMIZERS.get(name.lower())
    return arguments(cls.__init__, skip=("params", "lr")) if cls is not None else {}


def scheduler_arguments(name: str | None) -> dict[str, Any]:
    """What ``training.scheduler_args`` may name: the rule's arguments (torch's names), plateau's settings (not what
    it records), nothing without a scheduler."""
    if name is None:
        return {}
    if name == "plateau":
        return arguments(Plateau, skip=PLATEAU_RECORD)
    return arguments(RULES[name])


def checked(key: str, what: str, args: Mapping[str, Any], known: Mapping[str, Any]) -> dict[str, Any]:
    """``args`` checked against the ``known`` arguments of ``what`` and converted as config values are (``1`` for a
    float is ``1.0``): an unknown name or a value of the wrong type is a ConfigError
    naming ``key.name``."""
    for name in args:
        if name not in known:
            raise ConfigError(f"{key}.{name}: {what} takes no argument {name!r}; known: "
                              f"{', '.join(known) or 'none'}")
    return {name: coerce(value, known[name], f"{key}.{name}") for name, value in args.items()}


def construct(key: str, what: str, factory: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``factory(*args, **kwargs)``; the error of a bad argument (``saving.BUILD_ERRORS``: a KgemError, TypeError,
    ValueError, (torch's) RuntimeError, ArithmeticError or IndexError) becomes a ConfigError naming ``key``."""
    try:
        return factory(*args, **kwargs)
    except torch.cuda.OutOfMemoryError:  # a RuntimeError, but not a bad argument
        raise
    except BUILD_ERRORS as e:
        raise ConfigError(f"{key}: {what}: {' '.join(str(e).split())}") from e
