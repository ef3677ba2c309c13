"""Every model by name. A model is built by a builder: every registered interaction by the one generic builder
(tables shaped for it plus the interaction); an encoder (R-GCN) or a baseline registers a builder of its own here,
with what ``kgem models`` shows of it, and the factory, the CLI and saving treat it like any model."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from kgem.errors import ConfigError
from kgem.models.initializers import Initializer
from kgem.models.interaction import INTERACTIONS
from kgem.models.model import Model, interaction_model
from kgem.models.representation import Embedding
from kgem.models.rgcn import RGCN
from kgem.registry import unknown

# what every builder takes besides model.args: the factory passes these, so they are not arguments to show or check
COMMON = ("self", "name", "num_entities", "num_relations", "dim", "inverse", "graph", "entity_initializer",
          "relation_initializer", "sparse", "normalize")


@dataclass(frozen=True)
class ModelInfo:
    """How a named model is built and what ``kgem models`` shows of it. ``arguments``: the functions whose keyword
    parameters are the model's ``model.args``, each with names to leave out. ``dense_gradients``: an encoder
    propagates over the whole graph, so its tables take no sparse lookups."""

    build: Callable[..., Model]
    entities: str
    relations: str
    normalize: str
    reference: str
    arguments: tuple[tuple[Callable[..., Any], tuple[str, ...]], ...] = ()
    dense_gradients: bool = False

    def parameters(self) -> list[inspect.Parameter]:
        """The keyword parameters ``model.args`` may name (less ``normalize``, which every model takes)."""
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [p for function, skip in self.arguments for p in inspect.signature(function).parameters.values()
                if p.kind in named and p.name not in {*COMMON, *skip}]


BUILDERS: dict[str, ModelInfo] = {}


def register_model(name: str, info: ModelInfo) -> None:
    """Register a model that is not an interaction's (an encoder, a baseline)."""
    key = name.lower()
    if key in BUILDERS or key in INTERACTIONS:
        raise ConfigError(f"model {name!r} is already registered")
    BUILDERS[key] = info


def model_names() -> list[str]:
    return sorted([*INTERACTIONS.names(), *BUILDERS])


def model_info(name: str) -> ModelInfo:
    """The builder of model ``name``; an unknown name lists the known ones."""
    key = name.lower()
    if key in BUILDERS:
        return BUILDERS[key]
    if key not in INTERACTIONS:
        raise unknown("model", name, model_names())
    cls = INTERACTIONS.get(key)
    return ModelInfo(build=lambda *args, **kwargs: interaction_model(key, *args, **kwargs),
                     entities=cls.entity_kind, relations=cls.relation_kind,
                     normalize="forward" if cls.normalize_entities else "none", reference=cls.reference,
                     arguments=((cls.__init__, ()),))


def build_model(name: str, num_entities: int, num_relations: int, dim: int, **kwargs: Any) -> Model:
    """Build the registered model ``name``. Keyword arguments: ``inverse`` (reciprocal relations), ``graph`` (the
    training triples ``(n, 3)`` an encoder propagates over), ``entity_initializer``, ``relation_initializer``,
    ``sparse`` (sparse-gradient lookups), ``normalize`` (``none`` | ``forward`` | ``step``) and the model's own
    arguments (``kgem models`` lists them)."""
    return model_info(name).build(num_entities, num_relations, dim, **kwargs)


def rgcn(num_entities: int, num_relations: int, dim: int, *, inverse: bool = False, graph: torch.Tensor | None = None,
         decoder: str = "distmult", decoder_args: dict[str, Any] | None = None,
         entity_initializer: Initializer | None = None, relation_initializer: Initializer | None = None,
         sparse: bool = False, normalize: Any = None, **encoder_args: Any) -> Model:
    """R-GCN autoencoder (Schlichtkrull et al. 2018): the ``decoder`` model's entity table becomes the input of an
    R-GCN encoder over ``graph`` (see ``RGCN`` for ``encoder_args``); the decoder scores the encoder's output with
    its own relation table. Without ``graph`` (and ``num_edges``) the encoder has no edges. The decoder keeps its
    own entity normalisation (``normalize`` is for models whose tables are looked up directly)."""
    if sparse:
        raise ValueError("rgcn propagates over the whole graph, so its gradients are dense: build it without "
                         "sparse lookups")
    INTERACTIONS.get(decoder)  # only interactions decode: a clear error for anything else
    decoded = interaction_model(decoder, num_entities, num_relations, dim, inverse=inverse,
                                entity_initializer=entity_initializer, relation_initializer=relation_initializer,
                                **(decoder_args or {}))
    assert isinstance(decoded.entity, Embedding)
    encoder = RGCN(decoded.entity, num_relations, graph=graph, **encoder_args)
    return Model(encoder, decoded.relation, decoded.interaction, num_relations=num_relations, inverse=inverse)


def random_baseline(num_entities: int, num_relations: int, dim: int = 16, *, inverse: bool = False,
                    seed: int = 0, **ignored: Any) -> Model:
    """AmpliGraph's RandomBaseline: scores from fixed random, untrained embeddings, so ranks are uniformly random
    but the scores of one triple are the same in every scoring mode. Its width is fixed (16): ``dim`` and the
    training options (``ignored``: initializers, sparse lookups, normalisation) do not apply to it."""
    generator = torch.Generator().manual_seed(seed)
    model = interaction_model("distmult", num_entities, num_relations, 16, inverse=inverse)
    for table in (model.entity, model.relation):
        assert isinstance(table, Embedding)
        table.weight.requires_grad_(False)
        table.weight.data = torch.randn(table.weight.shape, generator=generator)
    return model


register_model("rgcn", ModelInfo(
    build=rgcn, entities="R-GCN encoder", relations="real", normalize="decoder's",
    reference="Schlichtkrull et al. 2018, Modeling relational data with graph convolutional networks",
    arguments=((rgcn, ()), (RGCN.__init__, ("base", "num_edges"))), dense_gradients=True))
register_model("randombaseline", ModelInfo(
    build=random_baseline, entities="real", relations="real", normalize="none",
    reference="fixed random scores: the chance level of every metric", arguments=()))
