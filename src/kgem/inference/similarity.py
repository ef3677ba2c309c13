"""Nearest neighbours of entities or relations in embedding space, by an exact blocked scan.

The entity table is never materialised whole: the candidates are read ``model.entity(ids)`` a block of rows at a
time, and a mapped table's rows go back to the page cache after each block (``release_entity_rows``), so a table
memory-mapped from a file larger than memory is scanned within the budget. Relation tables are small and read at
once. ``kgem.inference.index`` answers the same question approximately, from an index built over the same blocks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from kgem.data.vocab import Vocabulary
from kgem.errors import DataError
from kgem.inference._common import check_k, device_of, inference, to_ids
from kgem.models.model import Model
from kgem.models.scan import RunningTopK, block_width, budget_elements, plan, within
from kgem.models.storage import release_entity_rows
from kgem.ops.compare import real_view

Metric = Literal["cosine", "l2", "dot"]
Kind = Literal["entity", "relation"]
METRICS = ("cosine", "l2", "dot")
KINDS = ("entity", "relation")


def as_real(table: torch.Tensor) -> torch.Tensor:
    """Complex ``(n, d)`` -> real ``(n, 2d)`` with (re, im) interleaved, as the table stores them; real unchanged."""
    return real_view(table) if table.is_complex() else table


def check_metric(metric: str, kind: str) -> None:
    if metric not in METRICS:
        raise DataError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if kind not in KINDS:
        raise DataError(f"kind must be 'entity' or 'relation', got {kind!r}")


def num_rows(model: Model, kind: Kind) -> int:
    """How many rows of ``kind`` the neighbours are drawn from (forward relations only)."""
    return model.num_entities if kind == "entity" else model.num_relations


def check_vocabulary(model: Model, vocab: Vocabulary, kind: Kind) -> None:
    if len(vocab) != num_rows(model, kind):
        raise DataError(f"{kind} vocabulary has {len(vocab)} labels, the model {num_rows(model, kind)} {kind} rows")


def rows(model: Model, kind: Kind, ids: torch.Tensor, metric: Metric) -> torch.Tensor:
    """The real rows ``(len(ids), d')`` of ``ids``, as compared by ``metric`` (unit length for cosine)."""
    table = model.entity(ids) if kind == "entity" else model.relation(ids)
    return compared(as_real(table), metric)


def compared(table: torch.Tensor, metric: Metric) -> torch.Tensor:
    """Rows as ``metric`` compares them: normalised per row for cosine (so a block's rows are exactly the whole
    normalised table's), as they are for dot and l2."""
    return F.normalize(table, dim=-1) if metric == "cosine" else table


def row_blocks(model: Model, kind: Kind, metric: Metric, width: int) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, rows (C, d'))`` of the rows ``[start, start + C)`` as ``metric`` compares them, ``width`` rows at a
    time, in order. Entities are read a block at a time and a mapped table's pages of the block are handed back
    once the consumer asks for the next one; the (small) relation table is read once and sliced."""
    device = device_of(model)
    table = None if kind == "entity" else rows(model, kind, torch.arange(model.num_relations, device=device), metric)
    for start in range(0, num_rows(model, kind), width):
        stop = min(start + width, num_rows(model, kind))
        if table is not None:
            yield start, table[start:stop]
            continue
        yield start, rows(model, kind, torch.arange(start, stop, device=device), metric)
        release_entity_rows(model, start, stop)


def block_rows(num_queries: int, num_candidates: int, dim: int, memory_budget_bytes: int | None) -> int:
    """Candidates per block: the ``(num_queries, width)`` similarities and the ``(width, dim)`` rows each within
    the budget (the rows bound matters for few queries, which would otherwise take the whole table at once)."""
    width = block_width(num_queries, num_candidates, memory_budget_bytes)
    return max(1, min(width, budget_elements(memory_budget_bytes) // max(1, dim)))


def nearest(model: Model, ids: torch.Tensor, *, k: int, metric: Metric = "cosine", kind: Kind = "entity",
            memory_budget_bytes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest ``(similarity, id)`` ``(Q, k)`` on the CPU of the rows ``ids``, each row itself excluded
    (``k`` at most the other rows); ordered as ``similar`` says.

    One pass over the candidate rows, a block at a time: each block is compared with every batch of queries and
    merged into that batch's running top-k, so a mapped table is read once whatever the number of queries."""
    width = min(k, num_rows(model, kind) - 1)
    with inference(model):
        query = rows(model, kind, ids.to(device_of(model)), metric)  # (Q, d')
        batch, _ = plan(len(ids), num_rows(model, kind), memory_budget_bytes)
        batches = [(i, query[i : i + batch], ids[i : i + batch].to(query.device)) for i in range(0, len(ids), batch)]
        best = [RunningTopK(len(q), width, query.device) for _, q, _ in batches]
        size = block_rows(batch, num_rows(model, kind), query.shape[1], memory_budget_bytes)
        for start, candidates in row_blocks(model, kind, metric, size) if batches else ():
            for (_, q, own), top in zip(batches, best, strict=True):
                sim = -torch.cdist(q, candidates) if metric == "l2" else q @ candidates.T  # (B, C)
                itself = within((torch.arange(len(own), device=own.device), own), start, start + len(candidates))
                sim[itself] = float("-inf")
                top.add(sim, start)
                del sim
        found = [top.result() for top in best]
    if not found:
        return torch.zeros(0, width), torch.zeros(0, width, dtype=torch.int64)
    return torch.cat([v for v, _ in found]).cpu(), torch.cat([p for _, p in found]).cpu()


def neighbour_frame(vocab: Vocabulary, labels: Sequence[str], values: torch.Tensor | np.ndarray,
                    found: torch.Tensor | np.ndarray) -> pd.DataFrame:
    """The answer of ``similar``: ``(Q, k)`` similarities and neighbour ids as a table, a row per neighbour."""
    values, found = np.asarray(values), np.asarray(found, dtype=np.int64)
    width = found.shape[1] if found.ndim == 2 else 0
    return pd.DataFrame({"query": np.repeat(np.asarray(labels, dtype=object), width),
                         "rank": np.tile(np.arange(1, width + 1), len(labels)),
                         "neighbour": vocab.to_labels(found.reshape(-1)),
                         "similarity": values.reshape(-1)})


def similar(model: Model, vocab: Vocabulary, labels: list[str], *, k: int = 10, metric: Metric = "cosine",
            kind: Kind = "entity", memory_budget_bytes: int | None = None) -> pd.DataFrame:
    """The ``k`` nearest neighbours of each label among the entities (or, with ``kind="relation"``, the relations;
    ``vocab`` is then the relation vocabulary), the label itself excluded.

    ``metric``: ``cosine`` similarity, ``dot`` product, or ``l2``, reported as the *negative* Euclidean distance so
    that higher is always more similar. Columns: query, rank (1 = nearest), neighbour, similarity. Among equal
    similarities the lower id ranks first. One block of similarities, and one block of candidate rows, stays within
    ``memory_budget_bytes`` (default: the scan's ``DEFAULT_MEMORY_BUDGET``), as in prediction: the entity table is
    read a block at a time, never whole (see the module docstring).
    """
    check_k(k)
    check_metric(metric, kind)
    check_vocabulary(model, vocab, kind)
    ids = to_ids(vocab, labels, torch.device("cpu"))
    values, found = nearest(model, ids, k=k, metric=metric, kind=kind, memory_budget_bytes=memory_budget_bytes)
    return neighbour_frame(vocab, labels, values, found)
