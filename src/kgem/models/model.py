"""A model is representations plus an interaction, and nothing else: no training,
evaluation or config logic lives here."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from kgem.models.initializers import Initializer
from kgem.models.interaction import INTERACTIONS, Interaction
from kgem.models.query import QueryInteraction
from kgem.models.representation import Embedding, Normalize
from kgem.models.rgcn import RGCN
from kgem.ops.sampled import dense_gradient_last, rows_sparse_grad


class Model(nn.Module):
    """Looks up ids and calls the interaction.

    With ``inverse=True`` the relation table holds ``2 * num_relations`` rows and head queries ``(?, r, t)`` are
    answered as tail queries ``(t, r + num_relations, ?)`` (reciprocal relations, Lacroix et al. 2018). The entity
    representation is an embedding table or an encoder over the training graph (R-GCN).
    """

    def __init__(self, entity: Embedding | RGCN, relation: Embedding, interaction: Interaction, *,
                 num_relations: int, inverse: bool = False) -> None:
        super().__init__()
        self.entity, self.relation, self.interaction = entity, relation, interaction
        self.num_entities = entity.num
        self.num_relations = num_relations
        self.inverse = inverse
        if relation.num != num_relations * (2 if inverse else 1):
            raise ValueError(f"relation table has {relation.num} rows for {num_relations} relations "
                             f"(inverse={inverse})")

    def constrain_(self) -> None:
        """Re-impose the constraints on stored rows (``normalize="step"`` tables); training calls it after every
        optimizer step."""
        for module in self.modules():
            if isinstance(module, Embedding):
                module.constrain_()

    def invalidate_cache(self) -> None:
        """Drop every cached representation (R-GCN's propagated table). A cache notices in-process changes by the
        tensors' version counters, but not writes it cannot see: HOGWILD workers updating shared memory from
        other processes. The trainer calls this after each epoch and after loading a checkpoint."""
        for module in self.modules():
            if isinstance(module, RGCN):  # the one cached representation
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
                zero = torch.zeros(1, dtype=torch.long, device=self.relation.weight.device)
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

    def score_r(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Scores of all (forward) relations for each ``(h, t)``: ``(B, num_relations)``."""
        relations = self.relation(torch.arange(self.num_relations, device=self.relation.weight.device))
        return self.interaction(self.entity(h).unsqueeze(1), relations.unsqueeze(0), self.entity(t).unsqueeze(1))

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

    def score_sampled(self, hrt: torch.Tensor, ids: torch.Tensor,
                      corrupt_head: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Negative sampling in one call: the positives' scores ``(B,)``, the scores ``(B, K)`` of their corruptions
        (row ``b`` replaces its head if ``corrupt_head[b]``, else its tail, by each of ``ids[b]``; ``ids (1, K)``
        is shared by all rows) and the factors ``[h, r, t]`` for regularizers. With reciprocal relations a
        head-corrupting row is the tail query ``(t, r + R, ?)``, for its positive as for its negatives.

        Every entity the batch names, positive or negative, is looked up (normalised, ...) once; the scores equal
        ``score_t_sampled`` / ``score_h_sampled`` row by row (a test checks it)."""
        batch = len(hrt)
        table, local = self.candidates(torch.cat([hrt[:, 0], hrt[:, 2], ids.reshape(-1)]))
        negatives = local[2 * batch :].view(ids.shape)
        factors = [rows_of(table, local[:batch]), self.relation(hrt[:, 1]), rows_of(table, local[batch : 2 * batch])]
        if isinstance(self.interaction, QueryInteraction):
            pos, neg = self._score_queries(table, local[:batch], hrt[:, 1], local[batch : 2 * batch], negatives,
                                           corrupt_head)
            return pos, neg, factors
        pos = self.interaction(*factors)
        if self.inverse and corrupt_head.any():  # such a row is the query (t, r + R, ?), its positive too
            flipped = self.interaction(factors[2], self.relation(hrt[:, 1] + self.num_relations), factors[0])
            pos = torch.where(corrupt_head, flipped, pos)
        tail_rows, head_rows = torch.nonzero(~corrupt_head).squeeze(1), torch.nonzero(corrupt_head).squeeze(1)
        parts = [self._corrupt(table, factors, hrt[:, 1], tail_rows, negatives, head=False),
                 self._corrupt(table, factors, hrt[:, 1], head_rows, negatives, head=True)]
        if not len(head_rows) or not len(tail_rows):
            return pos, parts[0] if len(tail_rows) else parts[1], factors
        return pos, torch.cat(parts)[torch.argsort(torch.cat([tail_rows, head_rows]))], factors

    def _score_queries(self, table: torch.Tensor, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor,
                       negatives: torch.Tensor, corrupt_head: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``score_sampled`` for a query-form interaction: each row's query (``(h, r, ?)``, or ``(?, r, t)`` where
        it corrupts the head) against its true entity and its negatives, all rows in one sampled product."""
        interaction = self.interaction
        assert isinstance(interaction, QueryInteraction)
        side = corrupt_head.unsqueeze(1)
        candidates = interaction.rows(table)
        dense = dense_gradient_last(candidates)  # the products' table, before the sparse gathers (see there)
        kept = interaction.entities(few_rows_of(candidates, torch.where(corrupt_head, t, h)))
        if self.inverse:  # (?, r, t) is (t, r + R, ?): every query is a tail query
            queries = interaction.tail_query(kept, self.relation(r + self.num_relations * corrupt_head))
        else:  # (?, r, t) is the tail query of t with r read backwards
            queries = interaction.tail_query(kept, interaction.reverse_rows(self.relation(r), side))
        answers = torch.where(corrupt_head, h, t).unsqueeze(1)
        if negatives.shape[0] == 1:  # shared negatives: one (B, K) product with the K candidate rows
            pos = interaction.compare_pairs(queries, few_rows_of(candidates, answers[:, 0]))
            return pos, interaction.compare(queries, rows_of(dense, negatives[0]))
        scores = interaction.compare_sampled(queries, dense, torch.cat([answers, negatives], 1))
        return scores[:, 0], scores[:, 1:]

    def _corrupt(self, table: torch.Tensor, factors: list[torch.Tensor], r_ids: torch.Tensor, rows: torch.Tensor,
                 negatives: torch.Tensor, *, head: bool) -> torch.Tensor:
        """Scores ``(len(rows), K)`` of the batch ``rows`` with their head (``head``) or tail replaced."""
        h, r, t = (f[rows] for f in factors)
        ids = negatives if negatives.shape[0] == 1 else negatives[rows]
        if head and self.inverse:  # (?, r, t) is (t, r + R, ?)
            h, r, head = t, self.relation(r_ids[rows] + self.num_relations), False
        if negatives.shape[0] == 1:  # shared: one candidate table for every row
            candidates = table[ids[0]]
            return self.interaction.score_h(candidates, r, t) if head else self.interaction.score_t(h, r, candidates)
        if head:
            return self.interaction.score_h_sampled(table, r, t, ids)
        return self.interaction.score_t_sampled(h, r, table, ids)

    def candidates(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The entity rows that sampled ``ids`` name, each looked up (and normalised, viewed as complex, ...) once,
        and ``ids`` re-pointed into them: the whole table when the ids outnumber the entities (dense gradients
        only), else the distinct ids."""
        if isinstance(self.entity, Embedding) and not self.entity.sparse and ids.numel() >= self.num_entities:
            return self.entity(), ids
        distinct, local = torch.unique(ids, return_inverse=True)
        return self.entity(distinct), local

    def factors(self, hrt: torch.Tensor) -> list[torch.Tensor]:
        """The embeddings of a batch, for regularizers: ``[h, r, t]``."""
        return [self.entity(hrt[:, 0]), self.relation(hrt[:, 1]), self.entity(hrt[:, 2])]

    def spec_args(self) -> dict[str, Any]:
        """Arguments ``build_model`` needs beyond the user's to rebuild this model without its data (an encoder's
        edge count); a saved spec includes them."""
        return self.entity.spec_args() if isinstance(self.entity, RGCN) else {}


def state_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """Missing, unexpected and wrongly shaped tensors of ``state`` against ``model``'s state dict; '' if they fit."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    actual = {key: tuple(value.shape) for key, value in state.items()}
    problems = [f"missing {key}" for key in expected if key not in actual]
    problems += [f"unexpected {key}" for key in actual if key not in expected]
    problems += [f"{key} has shape {actual[key]}, expected {shape}" for key, shape in expected.items()
                 if key in actual and actual[key] != shape]
    return "; ".join(problems)


def rows_of(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``table[ids]`` for a 1-d ``ids``; ``index_select``'s backward is an ``index_add``, several times faster
    on the CPU than the accumulating ``index_put`` behind ``table[ids]``."""
    return table.index_select(0, ids)


def few_rows_of(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``rows_of`` for a gather that names few of the table's rows, where the table also gets a dense gradient
    (the sampled product's): with a sparse gradient, added into that one, instead of a dense table of its own
    (zero-filled, index-added, then added: three passes over the table for a few rows)."""
    return rows_sparse_grad(table, ids) if 4 * len(ids) <= len(table) else rows_of(table, ids)


def interaction_model(name: str, num_entities: int, num_relations: int, dim: int, *, inverse: bool = False,
                      graph: torch.Tensor | None = None, entity_initializer: Initializer | None = None,
                      relation_initializer: Initializer | None = None, sparse: bool = False,
                      normalize: Normalize | None = None, **interaction_args: Any) -> Model:
    """The model of a registered interaction: embedding tables shaped for it, plus the interaction (``graph`` is
    for encoders; this ignores it). ``normalize``: how entity rows are kept at unit norm (``none`` | ``forward`` |
    ``step``, see ``Embedding``); default: ``forward`` where the paper constrains them, else ``none``."""
    interaction = INTERACTIONS.get(name)(dim, **interaction_args)
    if normalize is not None:
        interaction.normalize = normalize
    entity = Embedding(num_entities, interaction.entity_width(), kind=interaction.entity_kind,
                       initializer=entity_initializer, normalize=interaction.normalize, sparse=sparse)
    relation = Embedding(num_relations * (2 if inverse else 1), interaction.relation_width(),
                         kind=interaction.relation_kind, initializer=relation_initializer, sparse=sparse)
    with torch.no_grad():
        if entity_initializer is None:
            interaction.reset_entity(entity.weight)
            entity.constrain_()
        if relation_initializer is None:
            interaction.reset_relation(relation.weight)
    return Model(entity, relation, interaction, num_relations=num_relations, inverse=inverse)
