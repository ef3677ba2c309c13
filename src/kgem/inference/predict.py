"""Link prediction with labels in and labels out: the top-k tails, heads or relations of label queries, and the
scores of label triples, as pandas DataFrames.

A generative circuit's scores are log-probabilities (``log p(t | h, r)`` for tails, ``log p(h | r, t)`` for
heads, ``log p(r | h, t)`` for relations, ``log p(h, r, t)`` for triples): its tables get a ``probability`` column,
``exp(score)``, next to the score.

Queries are scored in batches by the entity scan (``kgem.models.scan``), one block of candidates at a time, and
reduced by its running top-k, so one score block stays within ``memory_budget_bytes`` (default: the scan's
``DEFAULT_MEMORY_BUDGET``) whatever the number of entities. Among tied scores the lower id ranks first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from kgem.circuits.model import AnyModel
from kgem.data.known import KnownSplits, KnownTriples
from kgem.data.vocab import Vocabulary
from kgem.errors import DataError
from kgem.inference._common import Queries, check_k, check_vocab, device_of, inference, label_columns, to_ids
from kgem.models.scan import RunningTopK, Side, budget_elements, plan, scan, topk

TRIPLE_BATCH = 2**16


def predict_tails(model: AnyModel, entities: Vocabulary, relations: Vocabulary, queries: Queries, *, k: int = 10,
                  known: KnownTriples | KnownSplits | None = None, remove_known: bool = False,
                  memory_budget_bytes: int | None = None) -> pd.DataFrame:
    """The ``k`` best tails of each ``(head, relation)`` query (a list of label pairs, or a DataFrame with ``head``
    and ``relation`` columns). Columns: query_head, query_relation, rank (1 = best), tail, score, and ``known``
    when ``known`` is given. ``remove_known`` ranks only tails not in ``known`` (fewer than k rows if too few)."""
    h, r = label_columns(queries, ("head", "relation"))
    return _predict_entities(model, entities, relations, "tail", h, r, k, known, remove_known, memory_budget_bytes)


def predict_heads(model: AnyModel, entities: Vocabulary, relations: Vocabulary, queries: Queries, *, k: int = 10,
                  known: KnownTriples | KnownSplits | None = None, remove_known: bool = False,
                  memory_budget_bytes: int | None = None) -> pd.DataFrame:
    """The ``k`` best heads of each ``(relation, tail)`` query (label pairs, or a DataFrame with ``relation`` and
    ``tail`` columns). Columns: query_relation, query_tail, rank, head, score (and ``known``). Scores are the
    model's ``score_h``: with reciprocal relations (``inverse=True``) those of ``(tail, relation⁻¹, head)``."""
    r, t = label_columns(queries, ("relation", "tail"))
    return _predict_entities(model, entities, relations, "head", t, r, k, known, remove_known, memory_budget_bytes)


def predict_relations(model: AnyModel, entities: Vocabulary, relations: Vocabulary, pairs: Queries, *, k: int = 10,
                      known: KnownTriples | KnownSplits | None = None, remove_known: bool = False,
                      memory_budget_bytes: int | None = None) -> pd.DataFrame:
    """The ``k`` best relations linking each ``(head, tail)`` pair (label pairs, or a DataFrame with ``head`` and
    ``tail`` columns). Columns: query_head, query_tail, rank, relation, score (and ``known``). ``score_r`` scores
    every relation at once: a batch holds as many pairs as fit the budget (at least one)."""
    check_k(k)
    check_vocab(model, entities, relations)
    _check_known(known, remove_known)
    device = device_of(model)
    h_labels, t_labels = label_columns(pairs, ("head", "tail"))
    h, t = to_ids(entities, h_labels, device), to_ids(entities, t_labels, device)
    num = model.num_relations
    if known is not None:  # every (h, r, t) of the pairs: all the known triples the answers can be
        every = torch.arange(num, device=device).repeat(len(h))
        known = known.for_queries(torch.stack([h.repeat_interleave(num), every, t.repeat_interleave(num)], 1))
    batch = max(1, budget_elements(memory_budget_bytes) // max(num, 1))
    values, ids = [], []
    with inference(model):
        for i in range(0, len(h), batch):
            hb, tb = h[i : i + batch], t[i : i + batch]
            scores = model.score_r(hb, tb)  # (B, R)
            if remove_known and known is not None:
                scores = scores.masked_fill(_known_relations(known, hb, tb, num).to(device), float("-inf"))
            best = RunningTopK(len(hb), k, device)
            best.add(scores)  # the columns are the relation ids
            top, found = best.result()
            values.append(top)
            ids.append(found)
    query, cand, score = _flatten(values, ids, len(h), min(k, num))
    hrt = torch.stack([h.cpu()[query], cand, t.cpu()[query]], 1)
    frame = pd.DataFrame({"query_head": h_labels[query], "query_tail": t_labels[query], "rank": 0,
                          "relation": relations.to_labels(cand.numpy()), "score": score.numpy()})
    return _finish(with_probability(frame, model), query, hrt, known, remove_known)


def score_triples(model: AnyModel, entities: Vocabulary, relations: Vocabulary, triples: Queries, *,
                  known: KnownTriples | KnownSplits | None = None) -> pd.DataFrame:
    """Scores of label triples (a list of ``(head, relation, tail)`` or a DataFrame with those columns), in input
    order. Columns: head, relation, tail, score (and ``known``)."""
    check_vocab(model, entities, relations)
    device = device_of(model)
    h_labels, r_labels, t_labels = label_columns(triples, ("head", "relation", "tail"))
    hrt = torch.stack([to_ids(entities, h_labels, device), to_ids(relations, r_labels, device),
                       to_ids(entities, t_labels, device)], 1)
    with inference(model):
        scores = [model.score_hrt(hrt[i : i + TRIPLE_BATCH]).cpu() for i in range(0, len(hrt), TRIPLE_BATCH)]
    frame = pd.DataFrame({"head": h_labels, "relation": r_labels, "tail": t_labels,
                          "score": torch.cat(scores).numpy() if scores else np.zeros(0, dtype=np.float32)})
    frame = with_probability(frame, model)
    if known is not None:
        frame["known"] = known.for_queries(hrt).contains(hrt.cpu()).numpy()
    return frame


def _predict_entities(model: AnyModel, entities: Vocabulary, relations: Vocabulary, side: Side,
                      anchor_labels: np.ndarray, r_labels: np.ndarray, k: int,
                      known: KnownTriples | KnownSplits | None,
                      remove_known: bool, memory_budget_bytes: int | None) -> pd.DataFrame:
    """Top-k entities for the hidden ``side`` ("tail" or "head"); ``anchor`` is the given entity of each query."""
    check_k(k)
    check_vocab(model, entities, relations)
    _check_known(known, remove_known)
    if not model.num_entities:
        raise DataError("the model has no entities")
    device = device_of(model)
    anchor, r = to_ids(entities, anchor_labels, device), to_ids(relations, r_labels, device)
    if known is not None:  # (anchor, r, anchor) names each query's (h, r) and (r, t): all the answers it needs
        known = known.for_queries(torch.stack([anchor, r, anchor], 1))
    batch, _ = plan(len(anchor), model.num_entities, memory_budget_bytes)
    values, ids = [], []
    with inference(model):
        for i in range(0, len(anchor), batch):
            a, rb = anchor[i : i + batch], r[i : i + batch]
            pairs = _known_answers(known, side, a, rb) if remove_known and known is not None else None
            best = topk(scan(model, side, a, rb, memory_budget_bytes=memory_budget_bytes), len(a), k, exclude=pairs,
                        device=device)
            values.append(best[0])
            ids.append(best[1])
    query, cand, score_values = _flatten(values, ids, len(anchor), min(k, model.num_entities))
    a_cpu, r_cpu = anchor.cpu()[query], r.cpu()[query]
    hrt = torch.stack([a_cpu, r_cpu, cand] if side == "tail" else [cand, r_cpu, a_cpu], 1)
    given = "query_head" if side == "tail" else "query_tail"
    frame = pd.DataFrame({given: anchor_labels[query], "query_relation": r_labels[query], "rank": 0,
                          side: entities.to_labels(cand.numpy()), "score": score_values.numpy()})
    if side == "head":
        frame = frame[["query_relation", "query_tail", "rank", "head", "score"]]
    return _finish(with_probability(frame, model), query, hrt, known, remove_known)


def with_probability(frame: pd.DataFrame, model: AnyModel) -> pd.DataFrame:
    """``frame`` with a ``probability`` column, ``exp(score)``, when the model's scores are log-probabilities (a
    generative circuit); unchanged otherwise."""
    if not getattr(model, "log_probabilities", False):
        return frame
    return frame.assign(probability=np.exp(frame["score"].to_numpy(np.float64)))


def _known_answers(known: KnownTriples, side: Side, anchor: torch.Tensor,
                   r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The known answers of each query as ``(row, entity)`` pairs, on the queries' device."""
    rows, found = known.tail_pairs(anchor.cpu(), r.cpu()) if side == "tail" else known.head_pairs(r.cpu(), anchor.cpu())
    return rows.to(anchor.device), found.to(anchor.device)


def _known_relations(known: KnownTriples, h: torch.Tensor, t: torch.Tensor, num: int) -> torch.Tensor:
    """Boolean ``(B, R)``: True where ``(h[i], r, t[i])`` is known."""
    grid = torch.stack(torch.broadcast_tensors(h.cpu()[:, None], torch.arange(num)[None, :], t.cpu()[:, None]), -1)
    return known.contains(grid.reshape(-1, 3)).view(len(h), num)


def _flatten(values: list[torch.Tensor], ids: list[torch.Tensor], num_queries: int,
             width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-batch ``(B, k)`` results -> flat (query index, candidate id, score) on the CPU, query-major."""
    if not values:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty, torch.zeros(0)
    query = torch.arange(num_queries).repeat_interleave(width)
    return query, torch.cat(ids).cpu().reshape(-1), torch.cat(values).cpu().reshape(-1)


def _finish(frame: pd.DataFrame, query: torch.Tensor, hrt: torch.Tensor, known: KnownTriples | None,
            remove_known: bool) -> pd.DataFrame:
    """Add the ``known`` flag, drop known rows if asked, and number the rows of each query 1, 2, ..."""
    query_ids = query.numpy()
    if known is not None:
        flags = known.contains(hrt).numpy() if len(hrt) else np.zeros(0, dtype=bool)
        frame = frame.assign(known=flags)
        if remove_known:
            frame, query_ids = frame[~flags], query_ids[~flags]
    rank = pd.Series(query_ids).groupby(query_ids, sort=False).cumcount().to_numpy() + 1
    return frame.assign(rank=rank).reset_index(drop=True)


def _check_known(known: KnownTriples | KnownSplits | None, remove_known: bool) -> None:
    if remove_known and known is None:
        raise DataError("remove_known=True needs the known triples (known=...)")
