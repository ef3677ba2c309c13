"""Config stops here: these factories turn config sections into objects built from plain arguments (G6)."""

from __future__ import annotations

import torch

from kgem.configs import ModelConfig, TrainingConfig
from kgem.models import INITIALIZERS, Model, build_model
from kgem.training import LOSSES, REGULARIZERS, SLCWA, Approach, KvsAll, NegativeSampler, OneVsAll, Trainer
from kgem.training import build_optimizer as make_optimizer


def model_from_config(cfg: ModelConfig, num_entities: int, num_relations: int, *, sparse: bool = False,
                      graph: torch.Tensor | None = None) -> Model:
    """``sparse``: lookups give sparse gradients (for ``sparseadam``); ``graph``: the training triples, for
    encoders (R-GCN)."""
    init = INITIALIZERS.get(cfg.init)(**cfg.init_args) if cfg.init else None
    return build_model(cfg.name, num_entities, num_relations, cfg.dim, inverse=cfg.inverse, graph=graph,
                       entity_initializer=init, relation_initializer=init, sparse=sparse, **cfg.args)


def approach_from_config(cfg: TrainingConfig) -> Approach:
    if cfg.approach == "slcwa":
        return SLCWA(NegativeSampler(cfg.num_negatives, bernoulli=cfg.sampler == "bernoulli", filtered=cfg.filtered,
                                     shared=cfg.shared_negatives))
    return KvsAll() if cfg.approach == "kvsall" else OneVsAll()


def trainer_from_config(cfg: TrainingConfig, model: Model, progress: bool = True) -> Trainer:
    loss = LOSSES.get(cfg.loss)(**cfg.loss_args)
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), lr=cfg.lr, **cfg.optimizer_args)
    regularizer = REGULARIZERS.get(cfg.regularizer)(**cfg.regularizer_args) if cfg.regularizer else None
    return Trainer(model, approach_from_config(cfg), loss, optimizer, regularizer=regularizer,
                   batch_size=cfg.batch_size, seed=cfg.seed, progress=progress, workers=cfg.workers)
