"""Warm start from a saved model (``model.init_from``): rows of entities and relations both vocabularies know are
copied by label, every other row keeps its fresh initialisation, and the rest of the state (a core tensor,
convolution weights) is copied whole, as it does not depend on the vocabularies.

A squared generative circuit (``cp2``, ``complex2``) starts from a saved CP or ComplEx model (distillation:
``kgem.circuits.squared_from_model`` lays its tables out as the circuit's, so ``phi`` equals the model's score) or
from a saved circuit of its own kind, row by row in the same way (``warm_start_circuit``)."""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from kgem.circuits.distill import squared_from_model
from kgem.circuits.model import CircuitModel
from kgem.circuits.squared import SquaredCircuit
from kgem.circuits.typed import TypedSquared
from kgem.data.vocab import Vocabulary
from kgem.errors import ConfigError, ModelFileError
from kgem.models import Model
from kgem.models.initializers import copy_rows
from kgem.models.representation import Embedding
from kgem.saving import load_model

TABLES = ("entity.weight", "relation.weight")
log = logging.getLogger(__name__)


def warm_start(model: Model, directory: str | os.PathLike[str], *, entities: Vocabulary,
               relations: Vocabulary) -> dict[str, int]:
    """Fill ``model`` (built for ``entities`` and ``relations``) from the model saved in ``directory``; returns how
    many entity and relation rows were copied. A different model, a different embedding width, a different shape of
    any other tensor, an encoder (R-GCN, a literal model) or no shared label at all is a ConfigError."""
    where = f"model.init_from {directory}"
    try:
        saved = load_model(directory)
    except ModelFileError as e:
        raise ConfigError(f"{where}: {e}") from e
    source = saved.model
    if not isinstance(source, Model):
        raise ConfigError(f"{where}: holds the generative circuit {saved.spec['name']}; a warm start copies the "
                          f"rows of an embedding model")
    _check_compatible(model, source, saved.spec["name"], where)
    entity_rows = torch.from_numpy(saved.entities.lookup(entities.labels))
    relation_rows = _relation_rows(saved.relations.lookup(relations.labels), model, source)
    if not bool((entity_rows >= 0).any() or (relation_rows >= 0).any()):
        raise ConfigError(f"{where}: shares no entity or relation label with this dataset")
    target_state, source_state = model.state_dict(), source.state_dict()
    copied = {"entities": copy_rows(target_state["entity.weight"], source_state["entity.weight"], entity_rows),
              "relations": copy_rows(target_state["relation.weight"], source_state["relation.weight"], relation_rows)}
    with torch.no_grad():
        for key, value in target_state.items():
            if key not in TABLES:
                value.copy_(source_state[key])
    model.constrain_()
    log.info("warm start from %s: %d of %d entity rows and %d of %d relation rows", directory, copied["entities"],
             model.num_entities, copied["relations"], len(relation_rows))
    return copied


def warm_start_circuit(circuit: SquaredCircuit, directory: str | os.PathLike[str], *, entities: Vocabulary,
                       relations: Vocabulary) -> dict[str, int]:
    """Fill the squared ``circuit`` (built for ``entities`` and ``relations``) from the model saved in
    ``directory``: a CP model for ``CP2`` or a ComplEx model for ``ComplEx2`` (trained without reciprocal
    relations), or a saved circuit of the same kind; rows matched by label. Returns the rows copied."""
    where = f"model.init_from {directory}"
    try:
        saved = load_model(directory)
    except ModelFileError as e:
        raise ConfigError(f"{where}: {e}") from e
    try:
        source = _source_circuit(saved.model)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from e
    if type(source) is not type(circuit):
        raise ConfigError(f"{where}: gives a {type(source).__name__}, this circuit is a {type(circuit).__name__}")
    if source.entities.shape[1] != circuit.entities.shape[1]:
        raise ConfigError(f"{where}: its rows have width {source.entities.shape[1]}, this circuit's "
                          f"{circuit.entities.shape[1]} (check model.dim)")
    entity_rows = torch.from_numpy(saved.entities.lookup(entities.labels))
    relation_rows = torch.from_numpy(saved.relations.lookup(relations.labels))
    if not bool((entity_rows >= 0).any() or (relation_rows >= 0).any()):
        raise ConfigError(f"{where}: shares no entity or relation label with this dataset")
    with torch.no_grad():
        copied = {"entities": copy_rows(circuit.entities, source.entities.to(circuit.entities), entity_rows),
                  "relations": copy_rows(circuit.relations, source.relations.to(circuit.relations), relation_rows)}
    log.info("circuit warm start from %s: %d of %d entity rows and %d of %d relation rows", directory,
             copied["entities"], circuit.num_entities, copied["relations"], circuit.num_relations)
    return copied


def _source_circuit(model: Model | CircuitModel) -> SquaredCircuit:
    """The squared circuit a saved model gives: its own (a typed one's base), or a CP / ComplEx model's copy."""
    if isinstance(model, CircuitModel):
        circuit = model.circuit.base if isinstance(model.circuit, TypedSquared) else model.circuit
        if not isinstance(circuit, SquaredCircuit):
            raise ConfigError(f"holds the circuit {model.name}, not a squared one (cp2, complex2)")
        return circuit
    return squared_from_model(model)


def _check_compatible(model: Model, source: Model, name: str, where: str) -> None:
    if not isinstance(model.entity, Embedding) or not isinstance(source.entity, Embedding):
        encoder = type(model.entity if not isinstance(model.entity, Embedding) else source.entity).__name__
        raise ConfigError(f"{where}: entity rows computed by an encoder ({encoder}: rgcn, literal models) cannot be "
                          f"warm-started row by row")
    if type(model.interaction) is not type(source.interaction):
        raise ConfigError(f"{where}: holds a {name} model, not {type(model.interaction).__name__}")
    target_state, source_state = model.state_dict(), source.state_dict()
    for key, value in target_state.items():
        theirs = source_state.get(key)
        shape, expected = (None if theirs is None else tuple(theirs.shape)), tuple(value.shape)
        if key in TABLES and shape is not None and shape[1:] != expected[1:]:
            raise ConfigError(f"{where}: its {key} rows have width {shape[1]}, this model's {expected[1]} "
                              f"(check model.dim and model.args)")
        if key not in TABLES and shape != expected:
            raise ConfigError(f"{where}: its {key} has shape {shape}, this model's {expected} "
                              f"(check model.dim and model.args)")


def _relation_rows(forward: np.ndarray, model: Model, source: Model) -> torch.Tensor:
    """Source row of every relation row of ``model``: forward relations by label, and their reciprocal rows
    (``r + num_relations``) likewise where both models have them."""
    rows = torch.from_numpy(forward)
    if not model.inverse:
        return rows
    inverse = torch.where(rows >= 0, rows + source.num_relations, -1) if source.inverse else torch.full_like(rows, -1)
    return torch.cat([rows, inverse])
