"""DGL-KE's ``dglke_emb_sim`` in kgem: the most similar pairs of entity (or relation) embeddings over a left and a
right list, in bounded memory. ``kgem emb-sim`` is its command line.

A side given as None is every row of the table (DGL-KE's ``*``; formats ``l_r``, ``l_*``, ``*_r``, ``*``).
``exec_mode`` says which pairs compete for the top ``k``:

- ``pairwise``: the i-th left and i-th right items form one pair; the k most similar pairs. The lists must have
  one length (``*`` counts as all its rows, as in DGL-KE).
- ``all``: every pair ``(l, r)``; the k most similar of them all.
- ``batch_left``: the k most similar right items of each left item, in list order.

``sim_func``, higher always more similar, as DGL-KE's (which negates the distances): ``cosine`` ``x·y / (|x| |y|)``,
``l2`` ``-|x - y|₂``, ``l1`` ``-|x - y|₁``, ``dot`` ``x·y`` and ``ext_jaccard`` ``x·y / (|x|² + |y|² - x·y)``. Where
DGL-KE divides zero by zero (a zero row's cosine, the extended Jaccard of two zero rows) kgem answers 0. Complex
rows are compared as real rows of interleaved (re, im), as ``kgem.inference.similarity`` does. An item is its own
most similar pair if it is on both sides (DGL-KE does not leave it out; ``similar`` does). Ties: the pair earlier
in row-major (left, right) list order first. Items are labels, or ids with ``ids=True``; the result is in the
space of the input.

l2 and l1 are computed coordinate by coordinate (exact, but slower than the matrix product of dot, cosine and
ext_jaccard). Memory: the left rows are compared in batches with the right rows a block at a time (``block_rows``: the
similarities and the rows of a block each within ``memory_budget_bytes``); a ``*`` right side reads the entity
table a block at a time (``row_blocks``), a mapped table's pages handed back after each.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import torch

from kgem.circuits.model import CircuitModel
from kgem.errors import DataError
from kgem.inference._common import check_k, device_of, inference
from kgem.inference.lists import GroupTopK, ListSource, Slot, resolve
from kgem.inference.predictor import LinkPredictor
from kgem.inference.similarity import KINDS, Kind, Metric, block_rows, check_vocabulary, num_rows, row_blocks, rows
from kgem.models.model import Model
from kgem.models.scan import block_topk, plan

SIM_FUNCS = ("cosine", "l2", "l1", "dot", "ext_jaccard")
SIM_MODES = ("pairwise", "all", "batch_left")


def embedding_similarity(model: LinkPredictor, left: ListSource | None = None, right: ListSource | None = None, *,
                         sim_func: str = "cosine", exec_mode: str = "all", k: int = 10, kind: Kind = "entity",
                         ids: bool = False, memory_budget_bytes: int | None = None) -> pd.DataFrame:
    """The ``k`` most similar pairs of ``left`` and ``right`` rows (each a list file's path, a sequence of labels
    or, with ``ids``, of ids; None for every row) of the entity (or relation) table, as ``exec_mode`` groups them;
    see the module docstring. Columns: left, right, similarity; by group, most similar first. ``kgem emb-sim``
    writes DGL-KE's column names (left, right, score)."""
    check_k(k)
    if sim_func not in SIM_FUNCS:
        raise DataError(f"unknown sim_func {sim_func!r}; choose one of {', '.join(SIM_FUNCS)}")
    if exec_mode not in SIM_MODES:
        raise DataError(f"unknown exec_mode {exec_mode!r}; choose one of {', '.join(SIM_MODES)}")
    if kind not in KINDS:
        raise DataError(f"kind must be 'entity' or 'relation', got {kind!r}")
    net = model.model
    if isinstance(net, CircuitModel):
        raise DataError(f"embedding similarity compares embedding rows; the generative circuit {net.name} keeps "
                        f"its own factors")
    vocab = model.entities if kind == "entity" else model.relations
    check_vocabulary(net, vocab, kind)
    size = num_rows(net, kind)
    sides = [Slot(None, size) if source is None else resolve(vocab, source, ids=ids, kind=kind, name=name)
             for source, name in ((left, "left"), (right, "right"))]
    lhs, rhs = sides
    with inference(net):
        if exec_mode == "pairwise":
            group, value, position = _pairwise(net, kind, lhs, rhs, sim_func, k, memory_budget_bytes)
            lp = rp = position
        else:
            group, value, position = _cross(net, kind, lhs, rhs, sim_func, exec_mode, k, memory_budget_bytes)
            lp, rp = (position // rhs.size, position % rhs.size) if exec_mode == "all" else (group, position)
    found = [side.at(p).numpy() for side, p in ((lhs, lp), (rhs, rp))]
    return pd.DataFrame({"left": found[0] if ids else vocab.to_labels(found[0]),
                         "right": found[1] if ids else vocab.to_labels(found[1]), "similarity": value.numpy()})


def cross_similarity(x: torch.Tensor, y: torch.Tensor, sim_func: str) -> torch.Tensor:
    """``(B, C)`` similarities of rows ``x (B, d)`` and ``y (C, d)``, as ``table_rows`` gives them (unit length
    for cosine)."""
    if sim_func in ("l2", "l1"):  # 0 - distance: a distance of 0 is a similarity of 0.0, not -0.0
        # coordinate by coordinate, as DGL-KE: exact (a row's distance to itself is 0), where the matrix product's
        # |x|² + |y|² - 2 x·y loses near neighbours' digits to cancellation; slower, as l1 always is
        return 0.0 - torch.cdist(x, y, p=2 if sim_func == "l2" else 1, compute_mode="donot_use_mm_for_euclid_dist")
    dot = x @ y.T
    if sim_func == "ext_jaccard":
        return _jaccard(dot, x.square().sum(1)[:, None] + y.square().sum(1)[None, :])
    return dot  # dot, and cosine of unit rows


def pair_similarity(x: torch.Tensor, y: torch.Tensor, sim_func: str) -> torch.Tensor:
    """``(n,)`` similarities of the row pairs ``(x[i], y[i])``."""
    if sim_func in ("l2", "l1"):
        return 0.0 - (x - y).norm(p=2 if sim_func == "l2" else 1, dim=1)
    dot = (x * y).sum(1)
    return _jaccard(dot, x.square().sum(1) + y.square().sum(1)) if sim_func == "ext_jaccard" else dot


def _jaccard(dot: torch.Tensor, squares: torch.Tensor) -> torch.Tensor:
    """``dot / (squares - dot)``; 0 where both rows are zero (the only zero denominator)."""
    denominator = squares - dot
    return torch.where(denominator > 0, dot / denominator.clamp_min(torch.finfo(dot.dtype).tiny), 0.0)


def table_rows(model: Model, kind: Kind, ids: torch.Tensor, sim_func: str) -> torch.Tensor:
    """Real rows as ``sim_func`` compares them: unit length for cosine (a zero row stays zero), as stored else."""
    return rows(model, kind, ids, _metric(sim_func))


def _metric(sim_func: str) -> Metric:
    return "cosine" if sim_func == "cosine" else "dot"  # "dot": the rows as they are


def _pairwise(model: Model, kind: Kind, lhs: Slot, rhs: Slot, sim_func: str, k: int,
              memory_budget_bytes: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k most similar pairs ``(left[i], right[i])``: position = i."""
    if lhs.size != rhs.size:
        raise DataError(f"pairwise pairs the i-th items of the lists, which must have one length: {lhs.size} left, "
                        f"{rhs.size} right ('*' counts as all of them)")
    device = device_of(model)
    best = GroupTopK(1, k, device)
    dim = table_rows(model, kind, torch.zeros(1, dtype=torch.int64, device=device), sim_func).shape[1]
    batch = block_rows(1, lhs.size, dim, memory_budget_bytes)
    for start in range(0, lhs.size, batch):
        pos = torch.arange(start, min(start + batch, lhs.size), device=device)
        sim = pair_similarity(table_rows(model, kind, lhs.at(pos), sim_func),
                              table_rows(model, kind, rhs.at(pos), sim_func), sim_func)
        values, cols = block_topk(sim[None, :], k)
        best.add(torch.zeros_like(cols[0]), values[0], start + cols[0])
    return best.result()


def _cross(model: Model, kind: Kind, lhs: Slot, rhs: Slot, sim_func: str, exec_mode: str, k: int,
           memory_budget_bytes: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k most similar pairs over every (left, right) pair (``all``: one group, position ``l * len(right) +
    r``) or of each left item (``batch_left``: group ``l``, position ``r``)."""
    device = device_of(model)
    best = GroupTopK(1 if exec_mode == "all" else lhs.size, k, device)
    batch, _ = plan(lhs.size, rhs.size, memory_budget_bytes)
    for start in range(0, lhs.size, batch):
        lp = torch.arange(start, min(start + batch, lhs.size), device=device)
        x = table_rows(model, kind, lhs.at(lp), sim_func)
        width = block_rows(len(x), rhs.size, x.shape[1], memory_budget_bytes)
        for first, y in _right_blocks(model, kind, rhs, sim_func, width):
            values, cols = block_topk(cross_similarity(x, y, sim_func), k)  # (B, k'): right positions first + cols
            if exec_mode == "all":
                group, position = torch.zeros_like(cols), lp[:, None] * rhs.size + first + cols
            else:
                group, position = lp[:, None].expand_as(cols), first + cols
            best.add(group.reshape(-1), values.reshape(-1), position.reshape(-1))
    return best.result()


def _right_blocks(model: Model, kind: Kind, rhs: Slot, sim_func: str, width: int) -> Iterator[tuple[int, torch.Tensor]]:
    """``(first position, rows)`` of the right side, ``width`` rows at a time: the table's own blocks for ``*``."""
    if rhs.ids is None:
        yield from row_blocks(model, kind, _metric(sim_func), width)
        return
    for start in range(0, rhs.size, width):
        yield start, table_rows(model, kind, rhs.ids[start : start + width].to(device_of(model)), sim_func)
