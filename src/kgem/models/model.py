"""A model is representations plus an interaction, and nothing else: no training,
evaluation or config logic lives here."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from kgem.models.initializers import Initializer
from kgem.models.interaction import INTERACTIONS, Interaction
from kgem.models.representation import Embedding, Normalize, Representation


class Model(nn.Module):
    """Looks up ids and calls the interaction.

    With ``inverse=True`` the relation table holds ``2 * num_relations`` rows and head queries ``(?, r, t)`` are
    answered as tail queries ``(t, r + num_relations, ?)`` (reciprocal relations, Lacroix et al. 2018). The entity
    representation is an embedding table or an encoder over the training graph (R-GCN).
    """

    def __init__(self, entity: Representation, relation: Representation, interaction: Interaction, *,
                 num_relations: int, inverse: bool = False) -> None:
        super().__init__()
        self.entity, self.relation, self.interaction = entity, relation, interaction
        self.num_entities = entity.num
        self.num_relations = num_relations
        self.inverse = inverse
        if relation.num != num_relations * (2 if inverse else 1):
            raise ValueError(f"relation table has {relation.num} rows for {num_relations} relations "
                             f"(inverse={inverse})")

    @property
    def device(self) -> torch.device:
        """Where the model's tensors are (the first parameter's or buffer's device; the CPU for none)."""
        tensor = next(itertools.chain(self.parameters(), self.buffers()), None)
        return torch.device("cpu") if tensor is None else tensor.device

    def constrain_(self) -> None:
        """Re-impose the constraints on stored rows (``normalize="step"`` tables); training calls it after every
        optimizer step."""
        for module in self.modules():
            if isinstance(module, Representation):
                module.constrain_()

    def invalidate_cache(self) -> None:
        """Drop every cached representation (R-GCN's propagated table). A cache notices in-process changes by the
        tensors' version counters, but not writes it cannot see: HOGWILD workers updating shared memory from
        other processes. The trainer calls this after each epoch and after loading a checkpoint."""
        for module in self.modules():
            if isinstance(module, Representation):
                module.invalidate_cache()

    @contextmanager
    def private_tables(self, enabled: bool = True) -> Iterator[None]:
        """Within: lookups of a whole table (the candidates of a batch naming more ids than there are entities,
        scores against all entities, R-GCN's input) score a copy of it, not the stored table
        (``Embedding.table``); HOGWILD workers train so, as other processes write the table meanwhile. The cost:
        one copy of the table per lookup, 0.4 ms for FB15k-237's 14505 x 200 floats on one thread."""
        tables = [module for module in self.modules() if isinstance(module, Embedding)]
        before = [table.private_table for table in tables]
        for table in tables:
            table.private_table = enabled
        try:
            yield
        finally:
            for table, value in zip(tables, before, strict=True):
                table.private_table = value

    def probe(self) -> None:
        """Score one triple now, with no side effect (no gradient, no random draw, mode and caches as they were):
        raises the error that a bad interaction argument only shows when scoring, at build time instead of
        in the middle of training or prediction."""
        if not (self.num_entities and self.num_relations):
            return
        training = self.training
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                zero = torch.zeros(1, dtype=torch.long, device=self.device)
                self.eval().score_hrt(torch.stack([zero, zero, zero], 1))
                self.score_t(zero, zero, zero)  # the all-entity paths (cdist, closed forms) over one candidate
                self.score_h(zero, zero, zero)
        finally:
            self.train(training)
            self.invalidate_cache()

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

    def score_r(self, h: torch.Tensor, t: torch.Tensor, reciprocal: bool = False) -> torch.Tensor:
        """Scores of all (forward) relations for each ``(h, t)``: ``(B, num_relations)``; with ``reciprocal`` (a
        model built with ``inverse=True``) every relation row, the reciprocal ones after them: ``(B, 2R)``."""
        rows = self.relation() if reciprocal else self.relation(torch.arange(self.num_relations, device=self.device))
        return self.interaction.score_r(self.entity(h), rows, self.entity(t))

    def score_t_sampled(self, h: torch.Tensor, r: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
        """Scores of per-row candidate tails ``tails (B, K)``: ``(B, K)``."""
        table, ids = self.candidates(tails)
        return self.interaction.score_t_sampled(self.entity(h), self.relation(r), table, ids)

    def score_h_sampled(self, r: torch.Tensor, t: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
        """Scores of per-row candidate heads ``heads (B, K)``."""
        if self.inverse:
            return self.score_t_sampled(t, r + self.num_relations, heads)
        table, ids = self.candidates(heads)
        return self.interaction.score_h_sampled(table, self.relation(r), self.entity(t), ids)

    def candidates(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The entity rows that sampled ``ids`` name, each looked up (and normalised, viewed as complex, ...) once,
        and ``ids`` re-pointed into them: the whole table when the ids outnumber the entities (dense gradients
        only), else the distinct ids."""
        if not self.entity.sparse and ids.numel() >= self.num_entities:
            return self.entity(), ids
        distinct, local = torch.unique(ids, return_inverse=True)
        return self.entity(distinct), local

    def factors(self, hrt: torch.Tensor) -> list[torch.Tensor]:
        """The embeddings of a batch, for regularizers: ``[h, r, t]``."""
        return [self.entity(hrt[:, 0]), self.relation(hrt[:, 1]), self.entity(hrt[:, 2])]

    def spec_args(self) -> dict[str, Any]:
        """Arguments ``build_model`` needs beyond the user's to rebuild this model without its data (an encoder's
        edge count); a saved spec includes them."""
        return self.entity.spec_args()


def state_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """Missing, unexpected and wrongly shaped tensors of ``state`` against ``model``'s state dict; '' if they fit."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    actual = {key: tuple(value.shape) for key, value in state.items()}
    problems = [f"missing {key}" for key in expected if key not in actual]
    problems += [f"unexpected {key}" for key in actual if key not in expected]
    problems += [f"{key} has shape {actual[key]}, expected {shape}" for key, shape in expected.items()
                 if key in actual and actual[key] != shape]
    return "; ".join(problems)


def interaction_model(name: str, num_entities: int, num_relations: int, dim: int, *, inverse: bool = False,
                      graph: torch.Tensor | None = None, entity_initializer: Initializer | None = None,
                      relation_initializer: Initializer | None = None, sparse: bool = False,
                      normalize: Normalize | None = None, **interaction_args: Any) -> Model:
    """The model of a registered interaction: embedding tables shaped for it, plus the interaction (``graph`` is
    for encoders; this ignores it). ``normalize``: how entity rows are kept at unit norm (``none`` | ``forward`` |
    ``step``, see ``Embedding``); default: ``forward`` where the paper constrains them, else ``none``."""
    interaction = INTERACTIONS.get(name)(dim, **interaction_args)
    if normalize is None:
        normalize = "forward" if interaction.normalize_entities else "none"
    entity = Embedding(num_entities, interaction.entity_width(), kind=interaction.entity_kind,
                       initializer=entity_initializer, normalize=normalize, sparse=sparse)
    relation = Embedding(num_relations * (2 if inverse else 1), interaction.relation_width(),
                         kind=interaction.relation_kind, initializer=relation_initializer, sparse=sparse)
    with torch.no_grad():
        if entity_initializer is None:
            interaction.reset_entity(entity.weight)
            entity.constrain_()
        if relation_initializer is None:
            interaction.reset_relation(relation.weight)
    return Model(entity, relation, interaction, num_relations=num_relations, inverse=inverse)
