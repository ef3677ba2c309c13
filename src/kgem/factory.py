"""Config stops here: these factories turn config sections into objects built from plain arguments (G6)."""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

import torch

from kgem.config import coerce
from kgem.configs import ModelConfig, TrainingConfig
from kgem.data.vocab import Vocabulary
from kgem.errors import ConfigError
from kgem.models import INITIALIZERS, Model, build_model, model_info
from kgem.models.model import interaction_model
from kgem.pretrained import warm_start
from kgem.training import LOSSES, REGULARIZERS, SLCWA, Approach, KvsAll, NegativeSampler, OneVsAll, Trainer
from kgem.training import build_optimizer as make_optimizer
from kgem.training import build_scheduler as make_scheduler
from kgem.training.optim import OPTIMIZERS


def model_from_config(cfg: ModelConfig, num_entities: int, num_relations: int, *, sparse: bool = False,
                      graph: torch.Tensor | None = None, entities: Vocabulary | None = None,
                      relations: Vocabulary | None = None) -> Model:
    """``sparse``: lookups give sparse gradients (for ``sparseadam``); ``graph``: the training triples, for
    encoders (R-GCN); ``entities`` and ``relations``: the labels of the ids, which ``init_from`` matches."""
    model = _build_from_config(cfg, num_entities, num_relations, sparse=sparse, graph=graph)
    if cfg.init_from is not None:
        if entities is None or relations is None:
            raise ConfigError("model.init_from matches rows by label: give the entity and relation vocabularies")
        warm_start(model, cfg.init_from, entities=entities, relations=relations)
    return model


def _build_from_config(cfg: ModelConfig, num_entities: int, num_relations: int, *, sparse: bool,
                       graph: torch.Tensor | None) -> Model:
    init = None
    if cfg.init:
        initializer = INITIALIZERS.get(cfg.init)
        init = construct("model.init_args", cfg.init, initializer,
                         **checked("model.init_args", cfg.init, cfg.init_args, arguments(initializer)))
        with torch.random.fork_rng(devices=[]):  # torch checks some arguments only when applied; the seed's draws
            construct("model.init_args", cfg.init, init, torch.empty(2, 2))  # stay the model's
    args = checked("model.args", cfg.name, cfg.args, model_arguments(cfg.name))
    model = construct("model.args", cfg.name, build_model, cfg.name, num_entities, num_relations, cfg.dim,
                      inverse=cfg.inverse, graph=graph, entity_initializer=init, relation_initializer=init,
                      sparse=sparse, **args)
    construct("model.args", cfg.name, model.probe)  # what only shows when scoring fails here, not mid-training
    return model


def approach_from_config(cfg: TrainingConfig) -> Approach:
    if cfg.approach == "slcwa":
        return SLCWA(NegativeSampler(cfg.num_negatives, bernoulli=cfg.sampler == "bernoulli", filtered=cfg.filtered,
                                     shared=cfg.shared_negatives))
    return KvsAll() if cfg.approach == "kvsall" else OneVsAll()


def trainer_from_config(cfg: TrainingConfig, model: Model, progress: bool = True) -> Trainer:
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
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), lr=cfg.lr, **optimizer_args)
    regularizer = None
    if cfg.regularizer:
        reg_cls = REGULARIZERS.get(cfg.regularizer)
        regularizer = construct("training.regularizer_args", cfg.regularizer, reg_cls,
                                **checked("training.regularizer_args", cfg.regularizer, cfg.regularizer_args,
                                          arguments(reg_cls.__init__)))
    scheduler = None
    if cfg.scheduler is not None or cfg.warmup_epochs or cfg.scheduler_args:
        try:
            scheduler = make_scheduler(cfg.scheduler, optimizer, warmup_epochs=cfg.warmup_epochs, epochs=cfg.epochs,
                                       **cfg.scheduler_args)
        except ConfigError as e:
            raise ConfigError(f"training.scheduler_args: {e}") from e
    return Trainer(model, approach_from_config(cfg), loss, optimizer, regularizer=regularizer, scheduler=scheduler,
                   batch_size=cfg.batch_size, seed=cfg.seed, progress=progress, workers=cfg.workers,
                   clip_grad_norm=cfg.clip_grad_norm)


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
    """``factory(*args, **kwargs)``; the TypeError, ValueError, (torch's) RuntimeError, ArithmeticError or
    IndexError of a bad argument becomes a ConfigError naming ``key``."""
    try:
        return factory(*args, **kwargs)
    except torch.cuda.OutOfMemoryError:  # a RuntimeError, but not a bad argument
        raise
    except (TypeError, ValueError, RuntimeError, ArithmeticError, IndexError) as e:
        raise ConfigError(f"{key}: {what}: {' '.join(str(e).split())}") from e
