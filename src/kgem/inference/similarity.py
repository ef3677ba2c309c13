"""Nearest neighbours of entities or relations in embedding space."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from kgem.data.vocab import Vocabulary
from kgem.errors import DataError
from kgem.inference._common import QUERY_BATCH, SCORE_BUDGET, check_k, inference, merge_topk, to_ids
from kgem.models.model import Model
from kgem.models.query import real_view

Metric = Literal["cosine", "l2", "dot"]
METRICS = ("cosine", "l2", "dot")


def real_table(model: Model, kind: Literal["entity", "relation"]) -> torch.Tensor:
    """The vectors the model scores with, ``(n, d')`` real: complex rows as their interleaved (re, im) parts.
    For relations only the forward rows (no reciprocal rows of an ``inverse`` model)."""
    return as_real(model.entity(None) if kind == "entity" else model.relation(None)[: model.num_relations])


def as_real(table: torch.Tensor) -> torch.Tensor:
    """Complex ``(n, d)`` -> real ``(n, 2d)`` with (re, im) interleaved, as the table stores them; real unchanged."""
    return real_view(table) if table.is_complex() else table


def similar(model: Model, vocab: Vocabulary, labels: list[str], *, k: int = 10, metric: Metric = "cosine",
            kind: Literal["entity", "relation"] = "entity") -> pd.DataFrame:
    """The ``k`` nearest neighbours of each label among the entities (or, with ``kind="relation"``, the relations;
    ``vocab`` is then the relation vocabulary), the label itself excluded.

    ``metric``: ``cosine`` similarity, ``dot`` product, or ``l2``, reported as the *negative* Euclidean distance so
    that higher is always more similar. Columns: query, rank (1 = nearest), neighbour, similarity.
    """
    check_k(k)
    if metric not in METRICS:
        raise DataError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if kind not in ("entity", "relation"):
        raise DataError(f"kind must be 'entity' or 'relation', got {kind!r}")
    with inference(model):
        table = real_table(model, kind)
        if len(vocab) != len(table):
            raise DataError(f"{kind} vocabulary has {len(vocab)} labels, the model {len(table)} {kind} rows")
        ids = to_ids(vocab, labels, table.device)
        width = min(k, len(table) - 1)
        if metric == "cosine":
            table = F.normalize(table, dim=-1)
        values, found = [], []
        for i in range(0, len(ids), QUERY_BATCH):
            best = _nearest(table, ids[i : i + QUERY_BATCH], metric, width)
            values.append(best[0].cpu())
            found.append(best[1].cpu())
    query = np.repeat(np.asarray(labels, dtype=object), width)
    neighbour = torch.cat(found).reshape(-1).numpy() if found else np.zeros(0, dtype=np.int64)
    return pd.DataFrame({"query": query, "rank": np.tile(np.arange(1, width + 1), len(ids)),
                         "neighbour": vocab.to_labels(neighbour),
                         "similarity": torch.cat(values).reshape(-1).numpy() if values else np.zeros(0)})


def _nearest(table: torch.Tensor, ids: torch.Tensor, metric: Metric, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Running top-k ``(similarity, id)`` ``(Q, k)`` of the rows ``ids`` against ``table``, chunk by chunk."""
    query = table[ids]  # (Q, d)
    chunk = max(1, SCORE_BUDGET // max(len(ids), 1))
    best = (torch.zeros(len(ids), 0, device=table.device), torch.zeros(len(ids), 0, dtype=torch.int64,
                                                                        device=table.device))
    if k <= 0:
        return best
    for start in range(0, len(table), chunk):
        rows = table[start : start + chunk]  # (C, d)
        sim = -torch.cdist(query, rows) if metric == "l2" else query @ rows.T  # (Q, C)
        cand = torch.arange(start, start + len(rows), device=table.device).expand(len(ids), -1)
        sim = sim.masked_fill(cand == ids[:, None], float("-inf"))  # never the query itself
        best = merge_topk(best, sim, cand, k)
    return best
