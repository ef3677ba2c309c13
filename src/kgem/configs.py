"""The pipeline's typed configuration: one frozen dataclass per section, read by the factories in ``factory.py``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from kgem.checks import duration
from kgem.config import help_field
from kgem.errors import ConfigError

RDF_FORMATS = ("ntriples", "nquads", "turtle", "rdfxml")  # kgem.data.rdf.FORMATS
FLOAT32_MAX = 3.4028234663852886e38  # a larger learning rate overflows the float32 parameters' update


def check_device_name(name: str) -> None:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto``; anything else is a ConfigError (whether the GPU exists is checked
    when the model is built)."""
    kind, _, index = name.partition(":")
    if name == "auto" or (kind in ("cpu", "cuda") and (not index or (kind == "cuda" and index.isdigit()))):
        return
    raise ConfigError(f"training.device must be cpu, cuda, cuda:N or auto, got {name!r}")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    dataset: str = help_field("nations", "registered dataset name, or a folder with train/valid/test files")
    path: str | None = help_field(None, "read the dataset from this local folder instead of the cache")
    on_unseen: Literal["error", "drop", "keep"] = help_field(
        "drop", "valid/test triples with entities unseen in train: drop, error, or keep (the entities join the "
        "vocabulary, as kbc and LibKGE count them)")
    on_duplicates: Literal["keep", "drop"] = help_field("keep", "duplicate triples")
    format: str = help_field("raw_udd_hrt", "DGL-KE file format: raw_udd_{order} (label triples, columns in "
                             "that order, e.g. raw_udd_htr) or udd_{order} (ids + entities.dict/relations.dict); "
                             "or RDF: ntriples, nquads, turtle, rdfxml (files named .nt, .nq, .ttl, .rdf/.owl/.xml "
                             "are read as RDF without it)")
    header: bool = help_field(False, "the label files' first line names the columns (skip it)")
    extra_columns: Literal["error", "ignore"] = help_field("error", "label files with more than the columns read: "
                                                           "error or ignore them")
    edge_weights: int | str | None = help_field(None, "the column of a number per edge (importance, confidence, "
                                                      "...): 3 for a 4th column (DGL-KE's has_edge_importance), or "
                                                      "its name with header; read into the triples' weights, which "
                                                      "training uses as training.edge_weights says")
    literals: str | None = help_field(None, "numeric attributes of the entities for the literal models "
                                            "(distmult_literal, distmult_literal_gated, complex_literal): a file of "
                                            "entity<TAB>attribute<TAB>value lines (gz too), min-max normalised per "
                                            "attribute, values of entities the dataset lacks dropped")
    rdf_literals: Literal["drop", "entities", "attributes"] = help_field(
        "drop", "RDF triples whose object is a literal: drop them, keep the literals as entities, or read the numeric "
                "ones as numeric attributes for the literal models (in place of data.literals)")
    quotechar: str | None = help_field(None, "quote character of fields that hold the delimiter, as CSV writers "
                                             "quote them (e.g. '\"'); null: no quoting")
    files: list[str] = help_field([], "train [valid [test]] file names inside path (default: train/valid/test.*)")
    split: list[float] = help_field([0.8, 0.1, 0.1], "train/valid/test fractions for one DataFrame or file of facts")
    split_seed: int = help_field(0, "seed of that split")

    def __post_init__(self) -> None:
        order = self.format.removeprefix("raw_udd_").removeprefix("udd_")
        if self.format not in RDF_FORMATS and (order == self.format or sorted(order) != ["h", "r", "t"]):
            raise ConfigError(f"data.format must be raw_udd_{{order}} or udd_{{order}} with order a permutation of "
                              f"hrt (e.g. raw_udd_hrt, udd_htr), or an RDF syntax ({', '.join(RDF_FORMATS)}), got "
                              f"{self.format!r}")
        if len(self.files) > 3:
            raise ConfigError(f"data.files takes at most 3 names (train, valid, test), got {len(self.files)}")
        if self.quotechar is not None and len(self.quotechar) != 1:
            raise ConfigError(f"data.quotechar must be one character or null, got {self.quotechar!r}")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    name: str = help_field("complex", "registered model name (see `kgem models`)")
    dim: int = help_field(100, "embedding dimension (complex models: complex dimension)")
    inverse: bool = help_field(True, "reciprocal relations: one extra relation r⁻¹ per relation")
    args: dict[str, Any] = help_field({}, "interaction arguments, e.g. {p: 1} for TransE L1")
    init: str | None = help_field(None, "initializer name for both tables, e.g. normal or xavier_uniform "
                                         "(default: the model's own)")
    init_args: dict[str, Any] = help_field({}, "initializer arguments, e.g. {std: 0.001}")
    init_from: str | None = help_field(None, "warm start from a saved model directory: rows of entities and relations "
                                             "it knows (by label) are copied, the others keep the fresh init")
    constraints: str | None = help_field(None, "squared circuits (cp2, complex2) only: give probability exactly 0 "
                                               "to triples outside each relation's domain and range, 'derived' "
                                               "(those seen in the training triples) or a folder holding "
                                               "entity_types.tsv and relation_signatures.tsv")

    storage: Literal["memory", "mapped"] = help_field("memory", "where the entity table lives: memory, or mapped "
                                                                 "(a file the OS pages in and out: tables larger "
                                                                 "than RAM; same results)")
    storage_resident_mb: int | None = help_field(None, "mapped storage: hand the table's pages back to the OS "
                                                       "whenever the process's resident memory passes this many MB "
                                                       "(default: at the end of every epoch only)")
    storage_dir: str | None = help_field(None, "mapped storage: the folder of the table files (default: tables/ in "
                                               "the run folder, else a temporary folder)")

    def __post_init__(self) -> None:
        if self.dim <= 0:
            raise ConfigError(f"model.dim must be positive, got {self.dim}")
        if self.storage_resident_mb is not None and (self.storage != "mapped" or self.storage_resident_mb <= 0):
            raise ConfigError("model.storage_resident_mb bounds a mapped table's resident pages: a positive number "
                              "of MB, with model.storage: mapped")
        if self.storage_dir is not None and self.storage != "mapped":
            raise ConfigError("model.storage_dir is where mapped tables go: set model.storage: mapped")
        if self.init_args and self.init is None:  # they would be ignored: the model's own initializer takes none
            raise ConfigError(f"model.init_args {self.init_args!r} needs model.init (an initializer name)")

    def spec(self, **args: Any) -> dict[str, Any]:
        """What a saved model needs to be rebuilt; ``args``: more than the user's (``Model.spec_args()``)."""
        return {"name": self.name, "dim": self.dim, "inverse": self.inverse, "args": {**self.args, **args}}


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    approach: Literal["slcwa", "kvsall", "1vsall"] = help_field("1vsall", "how batches are built")
    loss: str = help_field("cross_entropy", "loss name")
    loss_args: dict[str, Any] = help_field({}, "loss arguments, e.g. {margin: 1}")
    num_negatives: int = help_field(64, "negatives per positive (slcwa)")
    sampler: Literal["uniform", "bernoulli"] = help_field("uniform", "which side to corrupt (slcwa)")
    filtered: bool = help_field(False, "resample negatives that are training triples (slcwa; shared negatives: "
                                       "masked out of the rows they are true for)")
    shared_negatives: bool = help_field(False, "one set of negatives per batch (slcwa; PyTorch-BigGraph style)")
    optimizer: str = help_field("adagrad", "adam, adamw, adagrad, rowadagrad (PyTorch-BigGraph's), sgd or sparseadam")
    lr: float = help_field(0.1, "learning rate")
    optimizer_args: dict[str, Any] = help_field({}, "optimizer arguments, e.g. {weight_decay: 1e-5}")
    scheduler: Literal["step", "multistep", "exponential", "cosine", "linear", "plateau"] | None = help_field(
        None, "learning-rate schedule per epoch (plateau: on the validation MRR), or null for a constant rate")
    scheduler_args: dict[str, Any] = help_field({}, "schedule arguments (torch's names), e.g. {step_size: 10, gamma: "
                                                    "0.5}; cosine/linear default to the epochs after warm-up")
    warmup_epochs: int = help_field(0, "linear warm-up: epoch e <= warmup_epochs trains at lr * e / "
                                       "(warmup_epochs + 1), then the schedule starts at lr")
    clip_grad_norm: float | None = help_field(None, "clip the gradients' joint L2 norm to this (sparse ones too), "
                                                    "or null")
    objective: Literal["pll", "mle"] = help_field("pll", "generative circuits (--model complex2, cp2, ...) train on "
                                                  "this instead of approach/loss/regularizer: pll (pseudo-"
                                                  "log-likelihood) or mle (exact log-likelihood)")
    objective_weights: list[float] = help_field([1.0, 1.0, 1.0], "pll's weights of log p(t|h,r), log p(r|h,t) "
                                                                 "and log p(h|r,t)")
    edge_weights: Literal["loss", "focuse", "ignore"] = help_field(
        "loss", "what the training triples' numeric values (data.edge_weights) do: weigh each edge's terms in the "
                "loss (loss: DGL-KE's edge importance, PyTorch-BigGraph's weight), modulate its scores (focuse: "
                "AmpliGraph's FocusE, slcwa only) or nothing (ignore)")
    focuse_args: dict[str, Any] = help_field({}, "FocusE settings: non_linearity (linear, softplus, sigmoid, tanh), "
                                                 "stop_epoch (251), structural_wt (0.001), normalize (true)")
    relation_prediction: float = help_field(0.0, "1vsall: weight of relation prediction (Chen et al. 2021), a second "
                                                 "cross-entropy term scoring every relation for each training "
                                                 "triple's (h, t); 0: off")
    regularizer: str | None = help_field("n3", "lp or n3, or null")
    regularizer_args: dict[str, Any] = help_field({"weight": 0.01}, "regularizer arguments")
    epochs: int = help_field(50, "maximum number of epochs")
    time_budget: float | str | None = help_field(None, "stop at the first epoch boundary past this much training "
                                                       "time (validations included), keeping the best validated "
                                                       "weights: seconds, or 90s, 20m, 1.5h, 1h30m; null: no limit")
    batch_size: int = help_field(256, "positives (or queries) per batch")
    seed: int = help_field(0, "fixes initialisation, data order and sampling")
    peer_timeout: float = help_field(600.0, "multi-process training (torchrun, --nproc): seconds a process waits "
                                            "for the others before it stops with an error")
    distributed: Literal["replicated", "sharded"] = help_field(
        "replicated", "multi-process training (--nproc): replicated (every rank holds the model, gradients summed "
                      "every step: exactly one process's result) or sharded (PyTorch-BigGraph's buckets: each rank "
                      "trains edges among its own entity partitions, rows exchanged once a round; slcwa with "
                      "rowadagrad or sgd)")
    partitions: int | None = help_field(None, "sharded training: entity partitions (default twice the processes)")
    round_checkpoints: int = help_field(0, "sharded training: also checkpoint every this many rounds (0: at epoch "
                                           "ends only), so a killed run resumes at its last round")
    bucket_passes: int = help_field(1, "sharded training: passes per epoch over a slice of every bucket (more: an "
                                       "order nearer a single process's shuffle, more exchanges)")
    shard_negatives: Literal["graph", "bucket"] = help_field(
        "graph", "sharded training: negatives from the whole graph (rows outside the bucket read, not updated) or "
                 "from the bucket's two partitions (PyTorch-BigGraph's way: partitions are ranges of ids, and only "
                 "the bucket's two are in memory while it trains: with model.storage mapped, a table larger than "
                 "memory trains in the memory of two partitions)")
    bucket_order: Literal["random", "affinity"] = help_field(
        "random", "sharded training: buckets in a random order, or each next bucket sharing a partition with the "
                  "last where it can (affinity: half the copying of partitions in and out of memory)")
    mixed: bool = help_field(False, "mixed CPU-GPU (DGL-KE's mix_cpu_gpu): the entity table and its optimizer state "
                                    "stay in CPU memory, everything else on the device; negative sampling with "
                                    "rowadagrad only")
    async_update: bool = help_field(False, "mixed CPU-GPU (DGL-KE's async_update): the CPU rows' update runs in a "
                                           "background thread while the next batch computes (faster, not "
                                           "reproducible)")
    device: str = help_field("cpu", "where the model trains and computes: cpu, cuda, cuda:N, or auto (the first GPU "
                                    "if there is one, else the CPU)")
    workers: int = help_field(1, "HOGWILD processes of one thread each; >1 is not reproducible and needs "
                                 "rowadagrad, adagrad or sgd")
    precision: Literal["float32", "bfloat16"] = help_field(
        "float32", "bfloat16: each training step's matrix products (scoring the candidates) in bfloat16 through "
                   "torch.autocast, parameters, gradients and optimizer state float32 (1vsAll/KvsAll steps ~1.6x "
                   "faster on CPUs with AVX-512 BF16 or AMX, and on GPUs; validation and evaluation stay float32)")
    retain_memory: bool = help_field(False, "keep memory freed in training and evaluation for reuse (glibc's mallopt) "
                                            "instead of returning it to the OS: faster steps with large score blocks "
                                            "(KvsAll ~1.4x), the memory stays with the process until it ends; "
                                            "KGEM_RETAIN_MEMORY=1 turns it on too")
    early_stopping: bool = help_field(True, "stop on validation MRR (ranked as the evaluation section says) and "
                                            "restore the best weights")
    frequency: int = help_field(5, "validate every this many epochs")
    patience: int = help_field(2, "validations without improvement before stopping")
    min_delta: float = help_field(0.0, "smallest improvement that counts")

    def __post_init__(self) -> None:
        if self.partitions is not None and self.distributed != "sharded":
            raise ConfigError("training.partitions is an option of sharded training: set training.distributed: "
                              "sharded")
        if self.async_update and not self.mixed:
            raise ConfigError("training.async_update is an option of mixed CPU-GPU training: set training.mixed too")
        if self.async_update and self.clip_grad_norm is not None:
            raise ConfigError("training.async_update steps the CPU rows in the background, outside the gradient "
                              "clipping: set training.clip_grad_norm to null")
        if self.round_checkpoints and self.distributed != "sharded":
            raise ConfigError("training.round_checkpoints is an option of sharded training: set "
                              "training.distributed: sharded")
        if self.round_checkpoints < 0:
            raise ConfigError(f"training.round_checkpoints must be 0 or more, got {self.round_checkpoints}")
        if self.bucket_order != "random" and self.distributed != "sharded":
            raise ConfigError("training.bucket_order is an option of sharded training: set "
                              "training.distributed: sharded")
        if self.shard_negatives != "graph" and self.distributed != "sharded":
            raise ConfigError("training.shard_negatives is an option of sharded training: set "
                              "training.distributed: sharded")
        if self.partitions is not None and self.partitions <= 0:
            raise ConfigError(f"training.partitions must be positive, got {self.partitions}")
        for name in ("epochs", "batch_size", "num_negatives", "frequency", "patience", "workers", "bucket_passes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"training.{name} must be positive, got {getattr(self, name)}")
        if self.time_budget is not None:
            try:
                duration("training.time_budget", self.time_budget)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if self.warmup_epochs < 0:
            raise ConfigError(f"training.warmup_epochs must not be negative, got {self.warmup_epochs}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ConfigError(f"training.clip_grad_norm must be positive or null, got {self.clip_grad_norm}")
        if not 0 < self.lr < FLOAT32_MAX:  # NaN fails too
            raise ConfigError(f"training.lr must be positive and finite, got {self.lr}")
        check_device_name(self.device)
        if not 0 < self.peer_timeout < math.inf:
            raise ConfigError(f"training.peer_timeout must be a positive number of seconds, got {self.peer_timeout}")
        if not 0 <= self.min_delta < math.inf:
            raise ConfigError(f"training.min_delta must be zero or positive, got {self.min_delta}")
        if self.edge_weights == "focuse" and self.approach != "slcwa":
            raise ConfigError(f"training.edge_weights: focuse modulates a positive's and its sampled negatives' "
                              f"scores: train with approach slcwa (not {self.approach})")
        if self.focuse_args and self.edge_weights != "focuse":
            raise ConfigError("training.focuse_args are FocusE's settings: set training.edge_weights: focuse")
        if not 0 <= self.relation_prediction < math.inf:
            raise ConfigError(f"training.relation_prediction must be a finite weight >= 0, got "
                              f"{self.relation_prediction}")
        if self.relation_prediction and self.approach != "1vsall":
            raise ConfigError(f"training.relation_prediction is a term of 1vsAll training: set training.approach: "
                              f"1vsall (not {self.approach}), or the weight to 0")
        sampling = [name for name in ("filtered", "shared_negatives") if getattr(self, name)]
        if sampling and self.approach != "slcwa":
            raise ConfigError(f"training.{sampling[0]} is an option of negative sampling (approach slcwa); "
                              f"approach {self.approach} scores every entity")


@dataclass(frozen=True, kw_only=True)
class EvaluationConfig:
    filter: list[str] = help_field(["train", "valid", "test"], "splits whose triples are filtered out; [] = raw")
    sides: Literal["both", "head", "tail"] = help_field("both", "which side of each test triple to rank")
    rank_type: Literal["realistic", "optimistic", "pessimistic"] = help_field("realistic", "tie handling")
    memory_budget_mb: int = help_field(256, "MB of one score block, in test evaluation, early-stopping validation "
                                            "and kgem evaluate")
    num_negatives: int | None = help_field(None, "rank against this many sampled entities (filtered, seeded; DGL-KE's "
                                                 "neg_sample_size_eval) instead of all; null = all")
    negative_sampler: Literal["uniform", "degree"] = help_field(
        "uniform", "with num_negatives: draw them uniformly, or in proportion to training degree + 1 (priority "
                   "sampling: popular entities, the usual competitors, drawn more often; a narrower estimate of the "
                   "full-ranking metrics where popularity drives the scores)")
    fraction: float = help_field(1.0, "evaluate a seeded random fraction of the triples (DGL-KE's eval_percent)")
    seed: int = help_field(0, "seed of the sampled negatives and of the fraction")
    protocol: Literal["standard", "ogb"] = help_field(
        "standard", "standard: rank against every entity (or num_negatives sampled ones), filtered as filter says; "
                    "ogb: against the head and tail negatives given with each triple (OGB's protocol: unfiltered, "
                    "realistic ranks; ogbl-biokg, ogbl-wikikg2)")

    def __post_init__(self) -> None:
        if self.protocol == "ogb" and self.num_negatives is not None:
            raise ConfigError("evaluation.num_negatives draws negatives; protocol ogb ranks against those given "
                              "with each triple: set num_negatives to null, or protocol to standard")
        if self.memory_budget_mb <= 0:
            raise ConfigError(f"evaluation.memory_budget_mb must be positive, got {self.memory_budget_mb}")
        if self.num_negatives is not None and self.num_negatives <= 0:
            raise ConfigError(f"evaluation.num_negatives must be positive or null (all entities), "
                              f"got {self.num_negatives}")
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"evaluation.fraction must lie in (0, 1], got {self.fraction}")


@dataclass(frozen=True, kw_only=True)
class TrackingConfig:
    trackers: list[str] = help_field([], "experiment trackers besides the run folder's CSV files: tensorboard, "
                                         "mlflow, wandb (each an optional extra)")
    experiment: str = help_field("kgem", "the experiment (MLflow) or project (W&B) the run is filed under")
    run_name: str | None = help_field(None, "the run's name in the trackers (default: the run folder's name)")
    args: dict[str, dict[str, Any]] = help_field({}, "settings per tracker, e.g. {tensorboard: {log_dir: tb}, "
                                                     "mlflow: {tracking_uri: 'sqlite:///mlflow.db'}, "
                                                     "wandb: {mode: offline}}")

    def __post_init__(self) -> None:
        unused = sorted(set(self.args) - set(self.trackers))
        if unused:
            raise ConfigError(f"tracking.args has settings for {', '.join(unused)}, which is not in "
                              f"tracking.trackers ({', '.join(self.trackers) or 'empty'})")


@dataclass(frozen=True, kw_only=True)
class HpoConfig:
    search_space: dict[str, dict[str, Any]] = help_field(
        {}, "kgem optimize: the ranges to search, by config key, e.g. {model.dim: {type: int, low: 32, high: 256, "
            "log: true}, training.lr: {type: float, low: 0.001, high: 0.1, log: true}, training.loss: "
            "{type: categorical, choices: [softplus, cross_entropy]}}")
    trials: int = help_field(20, "kgem optimize: trials to finish (a resumed search counts the finished ones)")
    sampler: Literal["tpe", "random", "grid"] = help_field("tpe", "kgem optimize: how trials are drawn (grid: "
                                                                  "every combination of the categorical choices and "
                                                                  "int ranges by their step)")
    pruner: Literal["none", "median", "percentile", "successive_halving", "hyperband", "threshold"] = help_field(
        "median", "kgem optimize: stops trials whose validation MRR at a check is poor")
    pruner_args: dict[str, Any] = help_field({}, "the pruner's settings (Optuna's names), e.g. {n_warmup_steps: 5} "
                                                 "or {lower: 0.1} for threshold")
    seed: int = help_field(0, "kgem optimize: the sampler's seed")
    timeout: float | None = help_field(None, "kgem optimize: stop starting trials after this many seconds")

    def __post_init__(self) -> None:
        if self.trials <= 0:
            raise ConfigError(f"hpo.trials must be positive, got {self.trials}")
        if self.timeout is not None and not 0 < self.timeout < math.inf:
            raise ConfigError(f"hpo.timeout must be a positive number of seconds or null, got {self.timeout}")


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    hpo: HpoConfig = field(default_factory=HpoConfig)
