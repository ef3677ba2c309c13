"""Nearest neighbours of entities or relations in embedding space."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from kgem.data.vocab import Vocabulary
from kgem.errors import DataError
from kgem.inference._common import check_k, inference, to_ids
from kgem.models.model import Model
from kgem.models.scan import Block, block_ranges, plan, topk
from kgem.ops.compare import real_view

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
            kind: Literal["entity", "relation"] = "entity", memory_budget_bytes: int | None = None) -> pd.DataFrame:
    """The ``k`` nearest neighbours of each label among the entities (or, with ``kind="relation"``, the relations;
    ``vocab`` is then the relation vocabulary), the label itself excluded.

    ``metric``: ``cosine`` similarity, ``dot`` product, or ``l2``, reported as the *negative* Euclidean distance so
    that higher is always more similar. Columns: query, rank (1 = nearest), neighbour, similarity. Among equal
    similarities the lower id ranks first. One block of similarities stays within ``memory_budget_bytes`` (default:
    the scan's ``DEFAULT_MEMORY_BUDGET``), as in prediction.
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
        batch, _ = plan(len(ids), len(table), memory_budget_bytes)
        for i in range(0, len(ids), batch):
            best = _nearest(table, ids[i : i + batch], metric, width, memory_budget_bytes)
            values.append(best[0].cpu())
            found.append(best[1].cpu())
    query = np.repeat(np.asarray(labels, dtype=object), width)
    neighbour = torch.cat(found).reshape(-1).numpy() if found else np.zeros(0, dtype=np.int64)
    return pd.DataFrame({"query": query, "rank": np.tile(np.arange(1, width + 1), len(ids)),
                         "neighbour": vocab.to_labels(neighbour),
                         "similarity": torch.cat(values).reshape(-1).numpy() if values else np.zeros(0)})


def _nearest(table: torch.Tensor, ids: torch.Tensor, metric: Metric, k: int,
             memory_budget_bytes: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k ``(similarity, id)`` ``(Q, k)`` of the rows ``ids`` against ``table``, one block of rows within the
    budget at a time, reduced by the scan's running top-k (the query itself excluded)."""
    query = table[ids]  # (Q, d)

    def blocks() -> Iterator[Block]:
        for start, stop in block_ranges(len(ids), len(table), memory_budget_bytes):
            rows = table[start:stop]  # (C, d)
            sim = -torch.cdist(query, rows) if metric == "l2" else query @ rows.T  # (Q, C)
            yield Block(start, torch.arange(start, stop, device=table.device), sim)

    itself = torch.arange(len(ids), device=table.device), ids
    return topk(blocks(), len(ids), k, exclude=itself, device=table.device)
