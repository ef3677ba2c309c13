"""Clusters and near-duplicates of entity (or relation) embeddings, as AmpliGraph's ``find_clusters`` and
``find_duplicates``. Complex rows are compared as real ones, (re, im) interleaved (``similarity.as_real``).

``find_clusters`` hands the rows to scikit-learn (an optional dependency: ``pip install 'kgem[cluster]'``).
``find_duplicates`` needs no more than torch: it scans the pairs of rows one square block of distances at a time
within the memory budget, reading the rows a block at a time as ``kgem.inference.similarity`` does, and merges the
pairs it finds into groups as it goes, so neither the ``n x n`` distances nor the pairs are ever held at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from kgem.data.vocab import Vocabulary
from kgem.errors import ConfigError, DataError
from kgem.inference._common import device_of, inference
from kgem.inference.predictor import LinkPredictor
from kgem.inference.similarity import KINDS, Kind, Metric, num_rows, rows
from kgem.models.model import Model
from kgem.models.scan import budget_elements
from kgem.models.storage import release_entity_rows

Algorithm = Literal["kmeans", "dbscan"]
ALGORITHMS = ("kmeans", "dbscan")
DISTANCES = ("l2", "cosine")
SLACK = 1e-4  # relative error allowed to a float32 squared distance found by products, before the exact check


def require_sklearn() -> Any:
    """``sklearn.cluster``, or a one-line error naming the extra that installs it."""
    try:
        import sklearn.cluster
    except ImportError as e:
        raise ConfigError("clustering needs scikit-learn, which is not installed: pip install 'kgem[cluster]'") from e
    return sklearn.cluster


def find_clusters(model: LinkPredictor, items: Sequence[str] | None = None, *, kind: Kind = "entity",
                  algorithm: Algorithm = "kmeans", n_clusters: int = 8, eps: float = 0.5, min_samples: int = 5,
                  seed: int = 0, memory_budget_bytes: int | None = None) -> pd.DataFrame:
    """The cluster of each of ``items`` (labels; default every entity, or every relation with
    ``kind="relation"``) by scikit-learn's k-means (``n_clusters``, best of 10 starts from ``seed``) or DBSCAN
    (``eps``, ``min_samples``; noise is cluster -1) over their embedding rows, Euclidean. Columns: label,
    cluster. The rows are read a block at a time (``memory_budget_bytes``) but clustered all at once."""
    if algorithm not in ALGORITHMS:
        raise DataError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
    cluster = require_sklearn()
    embedding, vocab, ids = _selection(model, items, kind, "find_clusters")
    n = _count(embedding, kind, ids)
    if algorithm == "kmeans" and not 1 <= n_clusters <= n:
        raise DataError(f"n_clusters must lie in [1, {n}] (the rows clustered), got {n_clusters}")
    if algorithm == "dbscan" and (eps <= 0 or min_samples < 1):
        raise DataError(f"DBSCAN needs eps > 0 and min_samples >= 1, got {eps} and {min_samples}")
    with inference(embedding):
        width = _width(embedding, kind, ids, memory_budget_bytes)
        table = torch.cat([block.cpu() for _, block in _blocks(embedding, kind, "l2", ids, n, width)]).numpy()
    estimator = (cluster.KMeans(n_clusters=n_clusters, n_init=10, random_state=seed) if algorithm == "kmeans"
                 else cluster.DBSCAN(eps=eps, min_samples=min_samples))
    return pd.DataFrame({"label": _labels(vocab, ids), "cluster": estimator.fit_predict(table)})


def find_duplicates(model: LinkPredictor, items: Sequence[str] | None = None, *, kind: Kind = "entity",
                    metric: Literal["l2", "cosine"] = "l2", tolerance: float | Literal["auto"] = "auto",
                    expected_fraction: float = 0.1, memory_budget_bytes: int | None = None) -> pd.DataFrame:
    """Groups of near-identical ``items`` (labels; default every entity, or relation with ``kind="relation"``):
    the connected components, of two or more, of the graph linking the rows within ``tolerance`` of each other, by
    Euclidean distance (``l2``) or cosine distance (``cosine``: 1 - cosine similarity). As AmpliGraph's sets, a
    group may hold rows farther apart than ``tolerance``, linked through others.

    ``tolerance="auto"``: the least tolerance that puts an ``expected_fraction`` of the items in groups (AmpliGraph's
    ``expected_fraction_duplicates``), found exactly, without a search: an item is in a group when its nearest
    neighbour lies within the tolerance, so it is that quantile of the nearest-neighbour distances (a second scan).

    Columns: group (0, 1, ... by their first item), label (in item order). ``frame.attrs["tolerance"]`` is the
    tolerance used. ``frame.groupby("group")["label"].apply(set)`` gives AmpliGraph's sets.

    Distances come from products, a float32 ``(B, B)`` block at a time within ``memory_budget_bytes``, and those near
    the tolerance are recomputed from the difference of the rows: exact even for the tiny distances of duplicates,
    where products lose the digits."""
    if metric not in DISTANCES:
        raise DataError(f"unknown metric {metric!r}; choose one of {', '.join(DISTANCES)}")
    embedding, vocab, ids = _selection(model, items, kind, "find_duplicates")
    n = _count(embedding, kind, ids)
    with inference(embedding):
        width = _width(embedding, kind, ids, memory_budget_bytes)
        if tolerance == "auto":
            tolerance = _auto_tolerance(embedding, kind, metric, ids, n, width, expected_fraction)
        elif isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not tolerance >= 0:
            raise DataError(f"tolerance must be a number >= 0 or 'auto', got {tolerance!r}")
        limit = tolerance**2 if metric == "l2" else 2 * tolerance  # squared distance of (unit) rows
        parent = np.arange(n)
        for i, x, j, y in _block_pairs(embedding, kind, metric, ids, n, width):
            near = _screened(x, y, limit, diagonal=i == j)
            exact = _exact(x, y, *near) <= limit
            _union(parent, near[0][exact].cpu().numpy() + i, near[1][exact].cpu().numpy() + j)
    frame = _groups(_roots(parent, np.arange(n)), _labels(vocab, ids))
    frame.attrs["tolerance"] = float(tolerance)
    return frame


def _selection(model: LinkPredictor, items: Sequence[str] | None, kind: str,
               what: str) -> tuple[Model, Vocabulary, torch.Tensor | None]:
    """The embedding model, the vocabulary of ``kind``, and the ids of the distinct ``items`` (None: all)."""
    if kind not in KINDS:
        raise DataError(f"kind must be 'entity' or 'relation', got {kind!r}")
    vocab = model.entities if kind == "entity" else model.relations
    if items is None:
        return model._embedding_model(what), vocab, None
    ids = vocab.ids(pd.unique(np.asarray(list(items), dtype=object)))
    return model._embedding_model(what), vocab, torch.from_numpy(ids)


def _count(model: Model, kind: Kind, ids: torch.Tensor | None) -> int:
    return num_rows(model, kind) if ids is None else len(ids)


def _labels(vocab: Vocabulary, ids: torch.Tensor | None) -> np.ndarray:
    return vocab.labels if ids is None else vocab.to_labels(ids.numpy())


def _width(model: Model, kind: Kind, ids: torch.Tensor | None, memory_budget_bytes: int | None) -> int:
    """Rows per block: a square block of distances, and a block of rows, each within the budget."""
    first = torch.zeros(1, dtype=torch.int64) if ids is None else ids[:1]
    dim = rows(model, kind, first.to(device_of(model)), "l2").shape[1] if _count(model, kind, ids) else 1
    elements = budget_elements(memory_budget_bytes)
    return max(1, min(math.isqrt(elements), elements // max(1, dim)))


def _blocks(model: Model, kind: Kind, metric: Metric, ids: torch.Tensor | None, n: int, width: int,
            first: int = 0) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, rows)`` of the items ``[start, start + width)`` from ``first`` on, as ``metric`` compares them;
    a mapped entity table's pages of a block go back once the consumer asks for the next one."""
    device = device_of(model)
    for start in range(first, n, width):
        stop = min(start + width, n)
        yield start, rows(model, kind, torch.arange(start, stop, device=device) if ids is None
                          else ids[start:stop].to(device), metric)
        if ids is None and kind == "entity":
            release_entity_rows(model, start, stop)


def _block_pairs(model: Model, kind: Kind, metric: Metric, ids: torch.Tensor | None, n: int,
                 width: int) -> Iterator[tuple[int, torch.Tensor, int, torch.Tensor]]:
    """``(i, rows i.., j, rows j..)`` for every pair of blocks with ``j >= i``: each pair of items once."""
    for i, x in _blocks(model, kind, metric, ids, n, width):
        for j, y in _blocks(model, kind, metric, ids, n, width, first=i):
            yield i, x, j, y


def _products(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distances ``(B, C)`` from products (fast, inexact near 0), and their scale ``|x|² + |y|²``."""
    scale = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :]
    return (scale - 2 * x @ y.T).clamp_(min=0), scale


def _screened(x: torch.Tensor, y: torch.Tensor, limit: float, diagonal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(row, column)`` of the pairs that may lie within ``limit`` (squared), each pair of a diagonal block once."""
    squared, scale = _products(x, y)
    near = squared <= limit + SLACK * scale
    r, c = torch.nonzero(near.triu(1) if diagonal else near, as_tuple=True)
    return r, c


def _exact(x: torch.Tensor, y: torch.Tensor, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared distances of the pairs ``(x[r], y[c])``, from the differences."""
    return (x[r] - y[c]).pow(2).sum(1)


def _auto_tolerance(model: Model, kind: Kind, metric: Metric, ids: torch.Tensor | None, n: int, width: int,
                    fraction: float) -> float:
    """The tolerance within which an item's nearest neighbour lies for a ``fraction`` of the items."""
    if not 0 < fraction <= 1:
        raise DataError(f"expected_fraction must lie in (0, 1], got {fraction}")
    if n < 2:
        raise DataError(f"tolerance='auto' compares items with their nearest neighbour; there are {n}")
    nearest = torch.full((n,), math.inf, dtype=torch.float64)
    for i, x, j, y in _block_pairs(model, kind, metric, ids, n, width):
        squared, _ = _products(x, y)
        if i == j:
            squared.fill_diagonal_(math.inf)
        for start, axis, (r, c) in ((i, 1, _argmin_pairs(squared, 1)), (j, 0, _argmin_pairs(squared, 0))):
            best = _exact(x, y, r, c).double().cpu()  # exact distance of each row's (column's) nearest in the block
            part = nearest[start : start + squared.shape[1 - axis]]
            torch.minimum(part, best, out=part)
    squared_tolerance = float(np.quantile(nearest.numpy(), fraction, method="inverted_cdf"))
    return math.sqrt(squared_tolerance) if metric == "l2" else squared_tolerance / 2


def _argmin_pairs(squared: torch.Tensor, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(row, column)`` of the smallest entry of each row (``axis=1``) or column (``axis=0``)."""
    best = squared.argmin(axis)
    own = torch.arange(len(best), device=best.device)
    return (own, best) if axis == 1 else (best, own)


def _roots(parent: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The root of each of ``x`` in the forest ``parent`` (``parent[v] <= v``; roots point to themselves), each of
    ``x`` then pointed straight at it."""
    root = parent[x]
    while True:
        up = parent[root]
        if np.array_equal(up, root):
            parent[x] = root
            return root
        root = up


def _union(parent: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Merge the groups of each pair ``(a[i], b[i])``: each round hooks every root to the least root it is paired
    with, until the pairs share their roots. A group's root is its least item."""
    while len(a):
        ra, rb = _roots(parent, a), _roots(parent, b)
        apart = ra != rb
        a, b, ra, rb = a[apart], b[apart], ra[apart], rb[apart]
        np.minimum.at(parent, np.maximum(ra, rb), np.minimum(ra, rb))


def _groups(roots: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """The groups of two or more items as a table: group numbers by least item, the items in order."""
    shared = np.bincount(roots, minlength=len(roots))[roots] >= 2
    members = np.flatnonzero(shared)
    _, group = np.unique(roots[members], return_inverse=True)
    frame = pd.DataFrame({"group": group.astype(np.int64), "label": labels[members]})
    return frame.sort_values("group", kind="stable").reset_index(drop=True)
