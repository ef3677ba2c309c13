"""LiteralE (Kristiadi et al. 2018, "Incorporating literals into knowledge graph embeddings", arXiv:1802.00934):
each entity's embedding ``e`` is combined with its row of numeric attributes ``l`` (``kgem.data.literals``) by a
learned function ``g(e, l)``, and the base model scores the combined rows instead of the embeddings.

The combination lives in the entity representation (``LiteralEmbedding``): a lookup of ids returns ``g`` of their
rows, so every scoring path of the base interaction (given triples, all tails and heads with their closed forms,
sampled candidates, the bounded entity scan of evaluation and prediction) works unchanged. The three models, as
PyKEEN defines them:

- ``distmult_literal``: ``g(e, l) = W [e; l] + b``, a linear map (PyKEEN's DistMultLiteral);
- ``distmult_literal_gated``: the paper's gated unit, ``z = sigmoid(W_z [e; l] + b_z)``,
  ``h = tanh(W_h [e; l] + b_h)``, ``g = z * h + (1 - z) * e``: the gate decides, per coordinate, how much of the
  embedding the attributes replace;
- ``complex_literal``: the real and imaginary parts of a complex embedding each through their own
  ``tanh(W [x; l] + b)``.

Dropout (``dropout``, PyKEEN's ``input_dropout``; 0 by default here, PyKEEN's ComplExLiteral uses 0.2) applies to
the combination in training. The attribute matrix is a non-trainable buffer, saved with the model's weights; its
width, ``num_literals``, is part of a saved model's spec (``spec_args``), so a saved model rebuilds with a buffer of
the right shape and reloads with the values it was trained with.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import torch
from torch import nn

from kgem.models.builders import ModelInfo, register_model
from kgem.models.initializers import Initializer
from kgem.models.model import Model, interaction_model
from kgem.models.representation import Embedding, Normalize, Representation

Combination = Literal["linear", "gated", "tanh"]
LITERAL_MODELS = ("complex_literal", "distmult_literal", "distmult_literal_gated")
REFERENCE = "Kristiadi et al. 2018, Incorporating literals into knowledge graph embeddings"


class Projection(nn.Module):
    """``activation(dropout(W [x; l] + b))`` back to the width of ``x``: the linear ``g`` (no activation) and the
    ``tanh`` one of each complex part."""

    def __init__(self, width: int, num_literals: int, activation: Literal["identity", "tanh"], dropout: float) -> None:
        super().__init__()
        self.linear = nn.Linear(width + num_literals, width)
        self.dropout = nn.Dropout(dropout)
        self.activation = activation

    def forward(self, x: torch.Tensor, literals: torch.Tensor) -> torch.Tensor:
        y = self.dropout(self.linear(torch.cat([x, literals], -1)))
        return torch.tanh(y) if self.activation == "tanh" else y


class Gate(nn.Module):
    """The gated unit: ``dropout(z * h + (1 - z) * x)`` with ``z = sigmoid(W_z [x; l] + b_z)`` and
    ``h = tanh(W_h [x; l] + b_h)``."""

    def __init__(self, width: int, num_literals: int, dropout: float) -> None:
        super().__init__()
        self.gate = nn.Linear(width + num_literals, width)
        self.hidden = nn.Linear(width + num_literals, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, literals: torch.Tensor) -> torch.Tensor:
        joined = torch.cat([x, literals], -1)
        z = torch.sigmoid(self.gate(joined))
        return self.dropout(z * torch.tanh(self.hidden(joined)) + (1 - z) * x)


class LiteralEmbedding(Representation):
    """The rows of ``base`` combined with the rows of ``literals (num, num_literals)`` (a buffer, not trained):
    ``forward(ids)`` is ``g(base(ids), literals[ids])``. A complex ``base`` has its real and imaginary parts
    combined separately (``combination="tanh"``: one projection each)."""

    literals: torch.Tensor

    def __init__(self, base: Embedding, literals: torch.Tensor, combination: Combination,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if base.normalize != "none":
            raise ValueError("a literal model combines the entity rows with their attributes; normalize does not "
                             f"apply to them (got {base.normalize!r})")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        if literals.dim() != 2 or literals.shape[0] != base.num or not literals.is_floating_point():
            raise ValueError(f"literals must be a float matrix of {base.num} rows (one per entity), got "
                             f"{literals.dtype} {tuple(literals.shape)}")
        self.base, self.combination = base, combination
        self.num, self.dim, self.kind, self.normalize, self.sparse = base.num, base.dim, base.kind, "none", base.sparse
        self.register_buffer("literals", literals)
        num_literals, parts = literals.shape[1], 2 if base.kind == "complex" else 1
        if combination == "gated":
            self.combine = nn.ModuleList([Gate(base.dim, num_literals, dropout) for _ in range(parts)])
        else:
            activation: Literal["identity", "tanh"] = "tanh" if combination == "tanh" else "identity"
            self.combine = nn.ModuleList([Projection(base.dim, num_literals, activation, dropout)
                                          for _ in range(parts)])

    def extra_repr(self) -> str:
        return f"num_literals={self.literals.shape[1]}, combination={self.combination}"

    def forward(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        x = self.base(ids)
        literals = self.literals if ids is None else self.literals[ids]
        if x.is_complex():
            return torch.complex(self.combine[0](x.real, literals), self.combine[1](x.imag, literals))
        return self.combine[0](x, literals)

    def spec_args(self) -> dict[str, Any]:
        """The attribute count: a saved model rebuilds its buffer from it, then loads the values."""
        return {"num_literals": self.literals.shape[1]}


def literal_model(interaction: str, combination: Combination, num_entities: int, num_relations: int, dim: int, *,
                  inverse: bool = False, literals: torch.Tensor | None = None, num_literals: int | None = None,
                  dropout: float = 0.0, graph: torch.Tensor | None = None,
                  entity_initializer: Initializer | None = None, relation_initializer: Initializer | None = None,
                  sparse: bool = False, normalize: Normalize | None = None) -> Model:
    """The ``interaction`` model (``distmult`` or ``complex``) scoring entity rows combined with ``literals
    (num_entities, num_literals)``. ``num_literals`` alone builds the buffer as a NaN placeholder, for loading a
    saved model; neither builds a model of no attributes (``g`` of the embedding alone). ``graph`` is for encoders
    and ignored; ``sparse`` lookups are refused (the combination's weights take dense gradients)."""
    if sparse:
        raise ValueError("a literal model's combination has dense gradients: build it without sparse lookups")
    base = interaction_model(interaction, num_entities, num_relations, dim, inverse=inverse,
                             entity_initializer=entity_initializer, relation_initializer=relation_initializer,
                             normalize=normalize)
    assert isinstance(base.entity, Embedding)
    weight = base.entity.weight
    if literals is None:
        literals = torch.full((num_entities, num_literals or 0), float("nan"))
    elif num_literals is not None and literals.shape[-1] != num_literals:
        raise ValueError(f"num_literals={num_literals} but literals has {literals.shape[-1]} columns")
    elif not literals.is_meta and not bool(torch.isfinite(literals).all()):
        raise ValueError("literals must be finite numbers")
    literals = literals.to(weight.device, weight.dtype, copy=True)  # the model's dtype: a saved model has one
    entity = LiteralEmbedding(base.entity, literals, combination, dropout)
    return Model(entity, base.relation, base.interaction, num_relations=num_relations, inverse=inverse)


def register(name: str, interaction: str, combination: Combination, kind: str, what: str) -> None:
    """Register the literal variant ``name`` of ``interaction``; ``kgem models`` shows ``what`` its ``g`` is."""
    register_model(name, ModelInfo(
        build=functools.partial(literal_model, interaction, combination), entities=f"{kind} + literals",
        relations=kind, normalize="none", reference=f"{REFERENCE} (LiteralE, {what})",
        arguments=((literal_model, ("interaction", "combination", "literals", "num_literals")),),
        dense_gradients=True))


register("distmult_literal", "distmult", "linear", "real", "g = W [e; l] + b")
register("distmult_literal_gated", "distmult", "gated", "real", "the paper's gated g")
register("complex_literal", "complex", "tanh", "complex", "g = tanh(W [x; l] + b) per complex part")
