"""A model is representations plus an interaction, and nothing else (STYLE.md G1)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kgem.models.initializers import Initializer
from kgem.models.interaction import INTERACTIONS, Interaction
from kgem.models.representation import Embedding


class Model(nn.Module):
    """Looks up ids and calls the interaction.

    With ``inverse=True`` the relation table holds ``2 * num_relations`` rows and head queries ``(?, r, t)`` are
    answered as tail queries ``(t, r + num_relations, ?)`` (reciprocal relations, Lacroix et al. 2018).
    """

    def __init__(self, entity: Embedding, relation: Embedding, interaction: Interaction, *,
                 num_relations: int, inverse: bool = False) -> None:
        super().__init__()
        self.entity, self.relation, self.interaction = entity, relation, interaction
        self.num_entities = entity.num
        self.num_relations = num_relations
        self.inverse = inverse
        if relation.num != num_relations * (2 if inverse else 1):
            raise ValueError(f"relation table has {relation.num} rows for {num_relations} relations "
                             f"(inverse={inverse})")

    def score_hrt(self, hrt: torch.Tensor) -> torch.Tensor:
        """Scores of given triples ``(B, 3) -> (B,)``."""
        return self.interaction(self.entity(hrt[:, 0]), self.relation(hrt[:, 1]), self.entity(hrt[:, 2]))

    def score_t(self, h: torch.Tensor, r: torch.Tensor, tails: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of all tails (or the candidate ids ``tails (C,)``) for each ``(h, r)``: ``(B, C)``."""
        return self.interaction.score_t(self.entity(h), self.relation(r), self.entity(tails))

    def score_h(self, r: torch.Tensor, t: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of all heads (or the candidate ids ``heads (C,)``) for each ``(r, t)``: ``(B, C)``."""
        if self.inverse:
            return self.score_t(t, r + self.num_relations, heads)
        return self.interaction.score_h(self.entity(heads), self.relation(r), self.entity(t))

    def score_r(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Scores of all (forward) relations for each ``(h, t)``: ``(B, num_relations)``."""
        relations = self.relation(torch.arange(self.num_relations, device=self.relation.weight.device))
        return self.interaction(self.entity(h).unsqueeze(1), relations.unsqueeze(0), self.entity(t).unsqueeze(1))

    def score_t_sampled(self, h: torch.Tensor, r: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
        """Scores of per-row candidate tails ``tails (B, K)`` by broadcasting ``(B, 1, d)`` against ``(B, K, d)``."""
        return self.interaction(self.entity(h).unsqueeze(1), self.relation(r).unsqueeze(1), self.entity(tails))

    def score_h_sampled(self, r: torch.Tensor, t: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
        """Scores of per-row candidate heads ``heads (B, K)``."""
        if self.inverse:
            return self.score_t_sampled(t, r + self.num_relations, heads)
        return self.interaction(self.entity(heads), self.relation(r).unsqueeze(1), self.entity(t).unsqueeze(1))

    def factors(self, hrt: torch.Tensor) -> list[torch.Tensor]:
        """The embeddings of a batch, for regularizers: ``[h, r, t]``."""
        return [self.entity(hrt[:, 0]), self.relation(hrt[:, 1]), self.entity(hrt[:, 2])]


def build_model(name: str, num_entities: int, num_relations: int, dim: int, *, inverse: bool = False,
                entity_initializer: Initializer | None = None, relation_initializer: Initializer | None = None,
                sparse: bool = False, **interaction_args: Any) -> Model:
    """Build a registered model: embedding tables shaped for its interaction, plus the interaction."""
    if name.lower() == "randombaseline":
        return random_baseline(num_entities, num_relations, inverse=inverse)
    interaction = INTERACTIONS.get(name)(dim, **interaction_args)
    entity = Embedding(num_entities, interaction.entity_width(), kind=interaction.entity_kind,
                       initializer=entity_initializer, normalize=interaction.normalize_entities, sparse=sparse)
    relation = Embedding(num_relations * (2 if inverse else 1), interaction.relation_width(),
                         kind=interaction.relation_kind, initializer=relation_initializer, sparse=sparse)
    with torch.no_grad():
        if entity_initializer is None:
            interaction.reset_entity(entity.weight)
        if relation_initializer is None:
            interaction.reset_relation(relation.weight)
    return Model(entity, relation, interaction, num_relations=num_relations, inverse=inverse)


def random_baseline(num_entities: int, num_relations: int, *, inverse: bool = False, dim: int = 16,
                    seed: int = 0) -> Model:
    """AmpliGraph's RandomBaseline: scores from fixed random, untrained embeddings, so ranks are uniformly random
    but the scores of one triple are the same in every scoring mode."""
    generator = torch.Generator().manual_seed(seed)
    model = build_model("distmult", num_entities, num_relations, dim, inverse=inverse)
    for table in (model.entity, model.relation):
        table.weight.requires_grad_(False)
        table.weight.data = torch.randn(table.weight.shape, generator=generator)
    return model
