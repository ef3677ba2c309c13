"""An approximate nearest-neighbour index of entities (or relations), for ``similar`` over very large tables.

``build_index`` clusters a seeded sample of the rows into ``lists`` cells (faiss IVF-Flat: inner product over the
unit rows for cosine, over the raw rows for dot, Euclidean distance for l2), then adds every row to its cell, read
from the model a block at a time as the exact scan reads them (``kgem.inference.similarity.row_blocks``): a table
memory-mapped from a file is never whole in this process's memory while the index is built, though the index itself
holds a float32 copy of every row (``rows x width x 4`` bytes). A search compares a query with the rows of the
``probes`` cells nearest to it only: ``probes = lists`` is exact, fewer trade recall for speed. ``recall`` measures
what a setting loses against the exact scan.

faiss is an optional dependency (``pip install 'kgem[index]'``), imported only when an index is built or loaded.
An index saves as two files: ``FILE`` (faiss's own format, not a pickle) and ``FILE.json`` (its settings and the
shape of the model it was built from, checked before it answers for a model).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from kgem.atomic import atomic_path, atomic_write
from kgem.data.vocab import Vocabulary
from kgem.errors import DataError, KgemError
from kgem.inference._common import check_k, device_of, inference, to_ids
from kgem.inference.similarity import (
    Kind,
    Metric,
    check_metric,
    check_vocabulary,
    nearest,
    num_rows,
    row_blocks,
    rows,
)
from kgem.models.model import Model
from kgem.models.scan import budget_elements
from kgem.models.storage import release_entity_rows

FORMAT = "kgem-neighbour-index"
VERSION = 1
POINTS_PER_LIST = 39  # faiss's k-means wants at least this many training rows per cell
SAMPLE_PER_LIST = 64  # training rows per cell by default
PROBE_FRACTION = 1 / 8  # cells searched by default, of all cells


def require_faiss() -> Any:
    """The faiss module, or a one-line error naming the extra that installs it."""
    try:
        import faiss
    except ImportError as e:
        raise KgemError("the neighbour index needs faiss, which is not installed: pip install 'kgem[index]'") from e
    return faiss


@dataclass(frozen=True)
class IndexSettings:
    """What an index was built from and how: saved beside it as JSON and checked against the model it answers for.
    ``dim`` is the width of the indexed real rows (twice the complex dimension)."""

    metric: Metric
    kind: Kind
    num_entities: int
    num_relations: int
    dim: int
    lists: int
    probes: int
    sample: int
    seed: int

    @property
    def rows(self) -> int:
        return self.num_entities if self.kind == "entity" else self.num_relations


def settings_path(path: str | os.PathLike[str]) -> Path:
    """The JSON file of an index saved at ``path``: ``path`` with ``.json`` added."""
    return Path(f"{os.fspath(path)}.json")


class NeighbourIndex:
    """A built faiss IVF-Flat index and its settings; ``source``: the file it was loaded from or saved to, named in
    errors. ``probes`` (cells searched per query) may be changed between searches."""

    def __init__(self, index: Any, settings: IndexSettings, source: Path | None = None) -> None:
        self.index, self.settings, self.source = index, settings, source
        self.probes = settings.probes

    @property
    def probes(self) -> int:
        return int(self.index.nprobe)

    @probes.setter
    def probes(self, probes: int) -> None:
        check_probes(probes, self.settings.lists)
        self.index.nprobe = probes

    @property
    def name(self) -> str:
        return str(self.source) if self.source is not None else "the neighbour index"

    def __repr__(self) -> str:
        s = self.settings
        return (f"NeighbourIndex({s.rows} {s.kind} rows x {s.dim}, {s.metric}, lists={s.lists}, "
                f"probes={self.probes})")

    def search(self, ids: Sequence[int] | np.ndarray | torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The (approximately) ``k`` nearest ``(similarities, ids)`` ``(Q, min(k, rows - 1))`` of the indexed rows
        ``ids``, each row itself excluded, as ``similar`` reports them: higher is more similar (l2 as the negative
        distance), lower id first among equal similarities. Where the probed cells hold fewer rows than asked for,
        a row ends in ids -1 with similarity -inf."""
        check_k(k)
        query = np.asarray(torch.as_tensor(ids, dtype=torch.int64).reshape(-1))
        if len(query) and (query.min() < 0 or query.max() >= self.settings.rows):
            raise DataError(f"{self.name}: ids must lie in [0, {self.settings.rows}), got {query.min()} to "
                            f"{query.max()}")
        width = min(k, self.settings.rows - 1)
        if not len(query) or width == 0:
            return torch.zeros(len(query), width), torch.zeros(len(query), width, dtype=torch.int64)
        vectors = np.stack([self.index.reconstruct(int(i)) for i in query])  # the indexed rows (unit for cosine)
        distances, found = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), width + 1)
        values = -np.sqrt(np.maximum(distances, 0)) if self.settings.metric == "l2" else distances
        values = np.where(found < 0, -np.inf, values).astype(np.float32)
        values, found = without_queries(values, found, query)
        order = np.lexsort((found, -values), axis=-1)  # similarity first, then the lower id
        return (torch.from_numpy(np.take_along_axis(values, order, 1)),
                torch.from_numpy(np.take_along_axis(found, order, 1).astype(np.int64)))

    def check(self, model: Model, *, metric: str | None = None, kind: str | None = None) -> None:
        """The index must answer for this model (its shape) and for the metric and kind asked for."""
        s = self.settings
        if kind is not None and kind != s.kind:
            raise DataError(f"{self.name}: the index holds {s.kind} rows, asked for {kind} neighbours")
        if metric is not None and metric != s.metric:
            raise DataError(f"{self.name}: the index was built for metric {s.metric}, asked for {metric} "
                            f"(build another with kgem index --metric {metric})")
        dim = row_width(model, s.kind)
        if (model.num_entities, model.num_relations, dim) != (s.num_entities, s.num_relations, s.dim):
            raise DataError(f"{self.name}: the index was built for another model ({s.num_entities} entities, "
                            f"{s.num_relations} relations, {s.kind} rows {s.dim} wide); this one has "
                            f"{model.num_entities} entities, {model.num_relations} relations, rows {dim} wide")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to ``path`` (faiss's format), then its settings to ``path.json``, each atomically. A crash
        between the two leaves the new index beside the old settings, which ``load`` accepts only if they describe
        the same rows, width, cells and metric."""
        faiss = require_faiss()
        target = Path(path)
        if target.is_dir():
            raise DataError(f"{path}: is a folder; an index is saved as a file (and its .json beside it)")
        with atomic_path(target) as tmp:
            faiss.write_index(self.index, str(tmp))
            with open(tmp, "rb") as written:
                os.fsync(written.fileno())
        with atomic_write(settings_path(target)) as f:
            json.dump({"format": FORMAT, "version": VERSION, **asdict(self.settings), "probes": self.probes,
                       "faiss": str(getattr(faiss, "__version__", "unknown"))}, f, indent=2)
            f.write("\n")
        self.source = target
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NeighbourIndex:
        """An index saved by ``save``; a missing or foreign file is a one-line DataError naming it."""
        faiss = require_faiss()
        target = Path(path)
        settings = read_settings(target)
        if not target.is_file():
            raise DataError(f"{path}: no such file" if not target.exists() else f"{path}: is not a file")
        try:
            index = faiss.read_index(str(target))
        except RuntimeError as e:
            raise DataError(f"{path}: not a faiss index ({faiss_message(e)})") from e
        found = (type(index).__name__, int(index.ntotal), int(index.d), int(getattr(index, "nlist", 0)))
        if found != ("IndexIVFFlat", settings.rows, settings.dim, settings.lists):
            raise DataError(f"{path}: the index ({found[0]}, {found[1]} rows {found[2]} wide, {found[3]} lists) "
                            f"does not match {settings_path(target).name} ({settings.rows} rows {settings.dim} wide, "
                            f"{settings.lists} lists)")
        if index.metric_type != faiss_metric(faiss, settings.metric):
            raise DataError(f"{path}: the index's faiss metric does not match {settings.metric} in "
                            f"{settings_path(target).name}")
        return cls(index, settings, target)


def read_settings(path: Path) -> IndexSettings:
    """The settings saved beside the index at ``path``."""
    file = settings_path(path)
    if not file.is_file():
        raise DataError(f"{file}: no such file; an index is saved as FILE and FILE.json (kgem index -o FILE)")
    try:
        saved = json.loads(file.read_text(encoding="utf-8"))
        if saved.get("format") != FORMAT:
            raise ValueError(f"format {saved.get('format')!r}, expected {FORMAT!r}")
        if saved.get("version") != VERSION:
            raise ValueError(f"version {saved.get('version')!r}; this kgem reads version {VERSION}")
        values = {field.name: saved[field.name] for field in fields(IndexSettings)}
    except (OSError, ValueError, KeyError, AttributeError) as e:
        raise DataError(f"{file}: not the settings of a kgem neighbour index ({e})") from e
    check_metric(values["metric"], values["kind"])
    return IndexSettings(**values)


def faiss_message(error: Exception) -> str:
    """faiss's error without its source location: ``Error in f() at file.cpp:69: Error: 'x' failed: why``."""
    message = " ".join(str(error).split())
    return re.sub(r"^Error in .*? at \S+: (Error: '.*?' failed: )?", "", message)


def faiss_metric(faiss: Any, metric: Metric) -> int:
    """faiss's metric for ``metric``: inner product for cosine (on unit rows) and dot, Euclidean for l2."""
    return int(faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT)


def without_queries(values: np.ndarray, found: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Q, k + 1)`` results less each query itself, or less the last column where the query is not among them."""
    drop = found == query[:, None]
    drop[~drop.any(1), -1] = True
    keep = ~drop
    width = found.shape[1] - 1
    return values[keep].reshape(-1, width), found[keep].reshape(-1, width)


def row_width(model: Model, kind: Kind) -> int:
    """The width of the real rows compared for ``kind`` (``2 * dim`` for complex rows)."""
    with inference(model):
        return int(rows(model, kind, torch.zeros(1, dtype=torch.int64, device=device_of(model)), "dot").shape[1])


def check_probes(probes: int, lists: int) -> None:
    if isinstance(probes, bool) or not isinstance(probes, int) or not 1 <= probes <= lists:
        raise DataError(f"probes must be a whole number from 1 to lists ({lists}), got {probes!r}")


def default_lists(num: int) -> int:
    """``4 sqrt(n)`` cells, as few as leave ``POINTS_PER_LIST`` rows to train each."""
    return max(1, min(4 * math.isqrt(num), num // POINTS_PER_LIST))


def draw_ids(num: int, count: int, seed: int) -> torch.Tensor:
    """``count`` distinct ids of ``[0, num)`` drawn with ``seed``, in ascending order (all of them if ``count`` is
    ``num`` or more): the same ids for the same arguments on any machine."""
    if count >= num:
        return torch.arange(num)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(num, generator=generator)[:count].sort().values


def build_index(model: Model, *, metric: Metric = "cosine", kind: Kind = "entity", lists: int | None = None,
                probes: int | None = None, sample: int | None = None, memory_budget_bytes: int | None = None,
                seed: int = 0) -> NeighbourIndex:
    """An IVF-Flat index of the model's entity (or relation) rows, as ``metric`` compares them.

    ``lists``: cells (default ``4 sqrt(n)``, at most ``n / 39``); ``probes``: cells a search visits (default an
    eighth of them; ``lists`` is exact); ``sample``: rows the cells are trained on, drawn with ``seed`` (default
    64 per cell, at most all). The training sample is read at once; the rows are then added one block within
    ``memory_budget_bytes`` at a time, a mapped table's pages handed back after each, so the table is never whole
    in memory. The index itself holds every row: ``rows x width x 4`` bytes (see the module docstring).
    """
    check_metric(metric, kind)
    faiss = require_faiss()
    num = num_rows(model, kind)
    if num == 0:
        raise DataError(f"the model has no {kind} rows to index")
    lists = default_lists(num) if lists is None else lists
    if isinstance(lists, bool) or not isinstance(lists, int) or not 1 <= lists <= num:
        raise DataError(f"lists must be a whole number from 1 to the {num} {kind} rows, got {lists!r}")
    sample = min(num, SAMPLE_PER_LIST * lists) if sample is None else sample
    if isinstance(sample, bool) or not isinstance(sample, int) or not lists <= sample:
        raise DataError(f"sample must be a whole number of at least lists ({lists}) rows, got {sample!r}")
    probes = max(1, math.ceil(lists * PROBE_FRACTION)) if probes is None else probes
    check_probes(probes, lists)
    dim = row_width(model, kind)
    index = faiss.IndexIVFFlat(faiss.IndexFlat(dim, faiss_metric(faiss, metric)), dim, lists,
                               faiss_metric(faiss, metric))
    index.cp.seed = seed
    if lists == 1:  # one cell is the mean of the rows: faiss's warning about too few rows per cell does not apply
        index.cp.min_points_per_centroid = 1
    with inference(model):
        index.train(training_rows(model, kind, metric, draw_ids(num, sample, seed)))
        width = max(1, budget_elements(memory_budget_bytes) // dim)
        for _, block in row_blocks(model, kind, metric, width):
            index.add(as_float32(block))
    index.make_direct_map()  # search looks the query rows up by id
    settings = IndexSettings(metric=metric, kind=kind, num_entities=model.num_entities,
                             num_relations=model.num_relations, dim=dim, lists=lists, probes=probes,
                             sample=min(sample, num), seed=seed)
    return NeighbourIndex(index, settings)


def training_rows(model: Model, kind: Kind, metric: Metric, ids: torch.Tensor) -> np.ndarray:
    """The rows the cells are trained on, as a float32 array; a mapped table's pages handed back after."""
    block = as_float32(rows(model, kind, ids.to(device_of(model)), metric))
    if kind == "entity":
        release_entity_rows(model, 0, model.num_entities)
    return block


def as_float32(block: torch.Tensor) -> np.ndarray:
    """Rows as faiss takes them: a C-contiguous float32 array on the CPU."""
    return np.ascontiguousarray(block.detach().to("cpu", torch.float32).numpy())


def recall(index: NeighbourIndex, model: Model, sample_ids: Sequence[int] | torch.Tensor, k: int = 10, *,
           memory_budget_bytes: int | None = None) -> float:
    """Recall@k of ``index`` on the queries ``sample_ids``: the fraction of their exact ``k`` nearest neighbours
    (by the exact scan of ``kgem.inference.similarity``) that the index finds. Where several rows tie at the
    k-th place the exact scan keeps the lower ids, and an index that returns another of them counts a miss."""
    s = index.settings
    index.check(model)
    ids = torch.as_tensor(sample_ids, dtype=torch.int64).reshape(-1)
    _, exact = nearest(model, ids, k=k, metric=s.metric, kind=s.kind, memory_budget_bytes=memory_budget_bytes)
    _, found = index.search(ids, k)
    if not exact.numel():
        return 1.0
    hits = (found[:, :, None] == exact[:, None, :]).any(-1).sum()
    return float(hits) / exact.numel()


def similar_indexed(index: NeighbourIndex, model: Model, vocab: Vocabulary, labels: list[str], *,
                    k: int = 10) -> pd.DataFrame:
    """``similar``'s table (query, rank, neighbour, similarity) answered by ``index`` for ``model``, whose metric
    and kind it uses; a query whose probed cells hold fewer than ``k`` other rows gets fewer neighbours."""
    check_k(k)
    index.check(model)
    check_vocabulary(model, vocab, index.settings.kind)
    values, found = index.search(to_ids(vocab, labels, torch.device("cpu")), k)
    width = found.shape[1]
    query = np.repeat(np.asarray(labels, dtype=object), width)
    rank = np.tile(np.arange(1, width + 1), len(labels))
    keep = found.reshape(-1).numpy() >= 0
    return pd.DataFrame({"query": query[keep], "rank": rank[keep],
                         "neighbour": vocab.to_labels(found.reshape(-1).numpy()[keep]),
                         "similarity": values.reshape(-1).numpy()[keep]})
