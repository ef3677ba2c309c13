"""The negative-sampling engine: the scores of a batch's positives and of their corruptions, in one call.

Every entity the batch names, positive or negative, is looked up (normalised, ...) once. A factorised model whose
keys are its entity rows and whose relations read backwards (``FactorInteraction.keys_are_rows``) scores the whole
batch, head- and tail-corrupting rows alike and positives included, with *one* sampled product of stacked queries
against the candidate rows; any other model scores the tail-corrupting and the head-corrupting rows with its
``score_t_sampled`` / ``score_h_sampled`` (sampled products again where it factorises).
"""

from __future__ import annotations

import torch

from kgem.models.factor import FactorInteraction
from kgem.models.model import Model
from kgem.ops.sampled import dense_gradient_last, few_rows_of, rows_of


def score_sampled(model: Model, hrt: torch.Tensor, ids: torch.Tensor,
                  corrupt_head: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Negative sampling in one call: the positives' scores ``(B,)``, the scores ``(B, K)`` of their corruptions
    (row ``b`` replaces its head if ``corrupt_head[b]``, else its tail, by each of ``ids[b]``; ``ids (1, K)``
    is shared by all rows) and the factors ``[h, r, t]`` for regularizers. With reciprocal relations a
    head-corrupting row is the tail query ``(t, r + R, ?)``, for its positive as for its negatives.

    Every entity the batch names, positive or negative, is looked up (normalised, ...) once; the scores equal
    ``score_t_sampled`` / ``score_h_sampled`` row by row (a test checks it)."""
    batch = len(hrt)
    table, local = model.candidates(torch.cat([hrt[:, 0], hrt[:, 2], ids.reshape(-1)]))
    negatives = local[2 * batch :].view(ids.shape)
    factors = [rows_of(table, local[:batch]), model.relation(hrt[:, 1]), rows_of(table, local[batch : 2 * batch])]
    if stacks_queries(model.interaction):
        pos, neg = _score_queries(model, table, local[:batch], hrt[:, 1], local[batch : 2 * batch], negatives,
                                  corrupt_head)
        return pos, neg, factors
    pos = model.interaction(*factors)
    if model.inverse and corrupt_head.any():  # such a row is the query (t, r + R, ?), its positive too
        flipped = model.interaction(factors[2], model.relation(hrt[:, 1] + model.num_relations), factors[0])
        pos = torch.where(corrupt_head, flipped, pos)
    tail_rows, head_rows = torch.nonzero(~corrupt_head).squeeze(1), torch.nonzero(corrupt_head).squeeze(1)
    parts = [_corrupt(model, table, factors, hrt[:, 1], tail_rows, negatives, head=False),
             _corrupt(model, table, factors, hrt[:, 1], head_rows, negatives, head=True)]
    if not len(head_rows) or not len(tail_rows):
        return pos, parts[0] if len(tail_rows) else parts[1], factors
    return pos, torch.cat(parts)[torch.argsort(torch.cat([tail_rows, head_rows]))], factors


def stacks_queries(interaction: object) -> bool:
    """Whether a batch's head and tail queries can be stacked into one sampled product (see the module)."""
    return isinstance(interaction, FactorInteraction) and interaction.keys_are_rows and interaction.factorised


def _score_queries(model: Model, table: torch.Tensor, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor,
                   negatives: torch.Tensor, corrupt_head: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``score_sampled`` where ``stacks_queries``: each row's query (``(h, r, ?)``, or ``(?, r, t)`` where
    it corrupts the head) against its true entity and its negatives, all rows in one sampled product."""
    interaction = model.interaction
    assert isinstance(interaction, FactorInteraction)
    side, compare = corrupt_head.unsqueeze(1), interaction.comparator("tail")
    candidates = interaction.keys(table, "tail")
    dense = dense_gradient_last(candidates)  # the products' table, before the sparse gathers (see there)
    kept = interaction.rows_of_keys(few_rows_of(candidates, torch.where(corrupt_head, t, h)))
    if model.inverse:  # (?, r, t) is (t, r + R, ?): every query is a tail query
        queries = interaction.tail_query(kept, model.relation(r + model.num_relations * corrupt_head))
    else:  # (?, r, t) is the tail query of t with r read backwards
        queries = interaction.tail_query(kept, interaction.reverse_rows(model.relation(r), side))
    answers = torch.where(corrupt_head, h, t).unsqueeze(1)
    if negatives.shape[0] == 1:  # shared negatives: one (B, K) product with the K candidate rows
        pos = compare.pairs(queries, few_rows_of(candidates, answers[:, 0]))
        return pos, compare.all(queries, rows_of(dense, negatives[0]))
    scores = compare.sampled(queries, dense, torch.cat([answers, negatives], 1))
    return scores[:, 0], scores[:, 1:]


def _corrupt(model: Model, table: torch.Tensor, factors: list[torch.Tensor], r_ids: torch.Tensor, rows: torch.Tensor,
             negatives: torch.Tensor, *, head: bool) -> torch.Tensor:
    """Scores ``(len(rows), K)`` of the batch ``rows`` with their head (``head``) or tail replaced."""
    h, r, t = (f[rows] for f in factors)
    ids = negatives if negatives.shape[0] == 1 else negatives[rows]
    if head and model.inverse:  # (?, r, t) is (t, r + R, ?)
        h, r, head = t, model.relation(r_ids[rows] + model.num_relations), False
    if negatives.shape[0] == 1:  # shared: one candidate table for every row
        candidates = table[ids[0]]
        return model.interaction.score_h(candidates, r, t) if head else model.interaction.score_t(h, r, candidates)
    if head:
        return model.interaction.score_h_sampled(table, r, t, ids)
    return model.interaction.score_t_sampled(h, r, table, ids)

