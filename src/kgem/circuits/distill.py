"""Squared circuits initialised from a trained KGE: copy a CP or ComplEx model's tables into ``CP2`` or ``ComplEx2``.

A squared circuit's signed score ``phi`` is the CP or ComplEx score itself, so a trained KGE's tables are a starting
point for a generative model: the circuit begins at ``phi = score_hrt`` on every triple and is then fine-tuned with
a circuit objective (``kgem.circuits.objectives``). Only the layouts differ:

- CP: kgem's entity rows are ``[head role, tail role]``, ``CP2``'s ``[subject role, object role]``; relation rows
  are ``d`` floats in both. The rows are copied as they are.
- ComplEx: kgem stores ``d`` complex numbers per row as interleaved ``(re, im)`` float pairs; ``ComplEx2`` stores
  ``[real parts, imaginary parts]``. Entity and relation rows are de-interleaved.

The rows copied are those the interaction scores (the tables looked up through the model's representations), so a
table kept at unit norm on lookup (``normalize="forward"``) is copied normalised and ``phi`` still equals the score.
"""

from __future__ import annotations

import torch

from kgem.circuits.squared import CP2, ComplEx2
from kgem.errors import ConfigError
from kgem.models.bilinear import ComplEx
from kgem.models.factorization import CP
from kgem.models.model import Model
from kgem.models.representation import Embedding


def squared_from_model(model: Model) -> CP2 | ComplEx2:
    """A ``CP2`` (from a CP model) or ``ComplEx2`` (from a ComplEx model) with the same sizes, whose tables are
    copies of the model's, so ``circuit.phi(hrt) == model.score_hrt(hrt)`` on every triple. The circuit has the
    model's dtype and device and shares no storage with it: training one leaves the other as it was.

    Ranking caveat: the circuit's density is ``phi^2`` (plus a uniform floor), so right after the copy ranking by
    ``phi^2`` (``log_tails``, ``log_heads``) equals ranking by ``|phi|`` = ``|score|``, not by the score: the circuit
    promotes the KGE's strongly *negative* scores, its most confident "false" triples, until it is fine-tuned.

    Refused with a ``ConfigError``: anything but a plain CP or ComplEx model over embedding tables, in particular
    models with reciprocal relations (``inverse=True``). A circuit has no reciprocal relations, and such a model
    answers head queries with its inverse rows; keeping only the forward rows would silently change how it ranks
    heads, so train the KGE without reciprocal relations to distil it.
    """
    interaction = check_distillable(model)
    entities, relations = scored_tables(model)
    if isinstance(interaction, ComplEx):
        circuit: CP2 | ComplEx2 = ComplEx2(model.num_entities, model.num_relations, interaction.dim)
        entities, relations = split_complex(entities), split_complex(relations)
    else:
        circuit = CP2(model.num_entities, model.num_relations, interaction.dim)
    circuit = circuit.to(device=entities.device, dtype=entities.dtype)
    with torch.no_grad():
        circuit.entities.copy_(entities)
        circuit.relations.copy_(relations)
    return circuit


def check_distillable(model: object) -> CP | ComplEx:
    """The model's interaction, or a one-line ``ConfigError`` saying why the model has no squared circuit."""
    if not isinstance(model, Model):
        raise ConfigError(f"squared_from_model needs a kgem Model (CP or ComplEx), got {type(model).__name__}")
    interaction = model.interaction
    if not isinstance(interaction, (CP, ComplEx)) or type(interaction) not in (CP, ComplEx):  # no subclasses
        raise ConfigError(f"only CP and ComplEx models have a squared circuit, got {type(interaction).__name__}")
    if model.inverse:
        raise ConfigError("a squared circuit has no reciprocal relations: train the model with inverse=False "
                          "to distil it")
    for role, table, kind in (("entity", model.entity, interaction.entity_kind),
                              ("relation", model.relation, interaction.relation_kind)):
        if not isinstance(table, Embedding) or table.kind != kind:
            raise ConfigError(f"the model's {role} representation is {type(table).__name__} "
                              f"(kind {getattr(table, 'kind', '?')}); distillation copies plain {kind} "
                              "embedding tables")
    return interaction


def scored_tables(model: Model) -> tuple[torch.Tensor, torch.Tensor]:
    """All entity and relation rows as the interaction sees them (normalised, viewed as complex), detached."""
    with torch.no_grad():
        return model.entity().detach(), model.relation().detach()


def split_complex(rows: torch.Tensor) -> torch.Tensor:
    """Complex ``(N, d)`` -> real ``(N, 2d)`` as ``[real parts, imaginary parts]``, ``ComplEx2``'s layout."""
    return torch.cat([rows.real, rows.imag], -1)
