"""Triples: an int64 tensor ``(n, 3)`` of (h, r, t) ids plus the entity and relation vocabularies."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
import pandas as pd
import torch

from kgem.atomic import atomic_write
from kgem.data.parquet import SUFFIXES as TABLE_SUFFIXES
from kgem.data.parquet import iter_table_chunks, table_format, write_triples
from kgem.data.readers import frame_labels, iter_label_chunks
from kgem.data.vocab import Vocabulary
from kgem.errors import DataError

log = logging.getLogger("kgem")

OnUnseen = Literal["error", "drop"]
SplitUnseen = Literal["error", "drop", "keep"]  # a dataset's valid/test: "keep" grows the vocabularies (read_splits)
OnDuplicates = Literal["keep", "drop"]
INVERSE_SUFFIX = "__inverse"


@dataclass
class Triples:
    """Triples of ids with their vocabularies. ``hrt[:, 0]`` heads, ``[:, 1]`` relations, ``[:, 2]`` tails."""

    hrt: torch.Tensor
    entities: Vocabulary
    relations: Vocabulary
    source: str = "<memory>"
    stats: dict[str, int] = field(default_factory=dict)
    weights: torch.Tensor | None = None  # (n,) float32: a numeric value per edge (importance, confidence, ...)

    def __post_init__(self) -> None:
        if self.hrt.dtype != torch.int64 or self.hrt.ndim != 2 or self.hrt.shape[1] != 3:
            raise DataError(f"{self.source}: triples must be an int64 tensor of shape (n, 3), "
                            f"got {self.hrt.dtype} {tuple(self.hrt.shape)}")
        if self.weights is not None:
            self.weights = check_weights(self.weights, len(self.hrt), self.source)
        if len(self.hrt):
            lo = self.hrt.min(dim=0).values.tolist()
            hi = self.hrt.max(dim=0).values.tolist()
            limits = (self.num_entities, self.num_relations, self.num_entities)
            if min(lo) < 0 or any(h >= n for h, n in zip(hi, limits)):
                raise DataError(f"{self.source}: ids out of range for {self.num_entities} entities and "
                                f"{self.num_relations} relations")

    def __len__(self) -> int:
        return len(self.hrt)

    def __repr__(self) -> str:
        return (f"Triples({len(self)} triples, {self.num_entities} entities, {self.num_relations} relations, "
                f"source={self.source!r})")

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    def to_df(self) -> pd.DataFrame:
        """Labels and ids as a DataFrame with columns head, relation, tail, head_id, relation_id, tail_id (and
        weight when the triples have numeric values)."""
        ids = self.hrt.numpy()
        frame = pd.DataFrame({
            "head": self.entities.to_labels(ids[:, 0]), "relation": self.relations.to_labels(ids[:, 1]),
            "tail": self.entities.to_labels(ids[:, 2]),
            "head_id": ids[:, 0], "relation_id": ids[:, 1], "tail_id": ids[:, 2],
        })
        if self.weights is not None:
            frame["weight"] = self.weights.numpy()
        return frame

    def with_hrt(self, hrt: torch.Tensor, **stats: int) -> Triples:
        """The same vocabularies with other triples (and no weights)."""
        return Triples(hrt, self.entities, self.relations, self.source, {**self.stats, **stats})

    def subset(self, index: torch.Tensor, **stats: int) -> Triples:
        """The triples (and their weights) at ``index``, a tensor of positions or a boolean mask."""
        weights = None if self.weights is None else self.weights[index]
        return Triples(self.hrt[index], self.entities, self.relations, self.source, {**self.stats, **stats}, weights)

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the triples as a label TSV file (atomic), readable by ``read_triples`` (with their weights as a
        4th column, read back with ``edge_weights=3``); a ``.parquet``/``.arrow``/``.feather`` path as a table
        (``kgem.data.parquet.write_triples``: weights in column ``weight``)."""
        if Path(path).name.endswith(TABLE_SUFFIXES):
            write_triples(self, path)
            return
        frame = self.to_df()[["head", "relation", "tail", *(["weight"] if self.weights is not None else [])]]
        with atomic_write(path) as f:
            frame.to_csv(f, sep="\t", header=False, index=False, lineterminator="\n")

    def add_inverse(self) -> Triples:
        """Add a reciprocal relation r⁻¹ = r + num_relations for every r, and the triple (t, r⁻¹, h) for each triple."""
        labels = self.relations.labels
        relations = Vocabulary(np.concatenate([labels, [f"{x}{INVERSE_SUFFIX}" for x in labels]]), kind="relation")
        weights = None if self.weights is None else torch.cat([self.weights, self.weights])
        return Triples(with_inverse(self.hrt, self.num_relations), self.entities, relations,
                       f"{self.source} + inverse", dict(self.stats), weights)


def check_weights(weights: torch.Tensor | np.ndarray, rows: int, source: str) -> torch.Tensor:
    """``weights`` as a float32 tensor of one finite value per triple, or a DataError naming ``source``."""
    tensor = torch.as_tensor(weights)
    if tensor.ndim != 1 or len(tensor) != rows or not (tensor.is_floating_point() or tensor.dtype == torch.int64):
        raise DataError(f"{source}: edge weights must be one number per triple ({rows}), got {tensor.dtype} "
                        f"{tuple(tensor.shape)}")
    tensor = tensor.to(torch.float32)
    bad = torch.nonzero(~torch.isfinite(tensor))
    if len(bad):
        raise DataError(f"{source}: edge weight {float(tensor[bad[0, 0]])} of triple {int(bad[0, 0])} is not finite")
    return tensor


def with_inverse(hrt: torch.Tensor, num_relations: int) -> torch.Tensor:
    """Append (t, r + num_relations, h) for every (h, r, t)."""
    return torch.cat([hrt, hrt[:, [2, 1, 0]] + torch.tensor([0, num_relations, 0])])


def unique_rows(hrt: torch.Tensor, num_entities: int, num_relations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(keys, first_index)`` of the distinct triples, keeping first-occurrence order."""
    keys = triple_keys(hrt, num_entities, num_relations)
    uniq, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((len(uniq),), len(keys), dtype=torch.int64).scatter_reduce(
        0, inverse, torch.arange(len(keys)), reduce="amin")
    return uniq, torch.sort(first).values


def triple_keys(hrt: torch.Tensor, num_entities: int, num_relations: int) -> torch.Tensor:
    """One int64 key per triple (or per row of a lexicographic rank when the key would overflow)."""
    if num_entities * num_entities * max(num_relations, 1) < 2**62:
        return (hrt[:, 0] * num_relations + hrt[:, 1]) * num_entities + hrt[:, 2]
    return torch.unique(hrt, dim=0, return_inverse=True)[1]


def handle_duplicates(triples: Triples, on_duplicates: OnDuplicates) -> Triples:
    """Count duplicate triples, log them, and keep or drop them; the count lands in ``stats['duplicates']``."""
    if on_duplicates not in ("keep", "drop"):
        raise DataError(f"on_duplicates must be 'keep' or 'drop', got {on_duplicates!r}")
    _, first = unique_rows(triples.hrt, triples.num_entities, triples.num_relations)
    dups = len(triples) - len(first)
    if dups:
        action = "dropped" if on_duplicates == "drop" else "kept"
        log.warning("%s: %d duplicate triples (%s)", triples.source, dups, action)
    if dups and on_duplicates == "drop":  # a dropped duplicate's weight goes with it: the first one's stays
        return triples.subset(first, duplicates=dups)
    return replace(triples, stats={**triples.stats, "duplicates": dups})


def encode_labels(chunks: Iterable[np.ndarray], entities: Vocabulary | None = None,
                  relations: Vocabulary | None = None) -> tuple[np.ndarray, Vocabulary, Vocabulary, list]:
    """Turn ``(m, 3)`` label chunks into ``(n, 3)`` int64 ids. Missing vocabularies are built (sorted labels);
    with given vocabularies, labels they lack get id -1 and the first few such rows are returned as examples."""
    parts: list[np.ndarray] = []
    local: list[tuple[np.ndarray, np.ndarray]] = []
    examples: list = []
    for chunk in chunks:
        if entities is not None and relations is not None:
            ids = np.stack([entities.lookup(chunk[:, 0]), relations.lookup(chunk[:, 1]),
                            entities.lookup(chunk[:, 2])], axis=1)
            examples += chunk[(ids < 0).any(axis=1)][: 3 - len(examples)].tolist()
            parts.append(ids)
            continue
        ent_codes, ent_uniq = pd.factorize(np.concatenate([chunk[:, 0], chunk[:, 2]]))
        rel_codes, rel_uniq = pd.factorize(chunk[:, 1])
        m = len(chunk)
        parts.append(np.stack([ent_codes[:m], rel_codes, ent_codes[m:]], axis=1).astype(np.int64))
        local.append((np.asarray(ent_uniq, dtype=object), np.asarray(rel_uniq, dtype=object)))
    if not parts:
        raise DataError("no triples")
    if local:
        entities = entities or Vocabulary.from_labels(np.concatenate([e for e, _ in local]), kind="entity")
        relations = relations or Vocabulary.from_labels(np.concatenate([r for _, r in local]), kind="relation")
        for ids, (ent_uniq, rel_uniq) in zip(parts, local):
            ent_map, rel_map = entities.lookup(ent_uniq), relations.lookup(rel_uniq)
            ids[:, 0], ids[:, 1], ids[:, 2] = ent_map[ids[:, 0]], rel_map[ids[:, 1]], ent_map[ids[:, 2]]
    assert entities is not None and relations is not None
    return np.concatenate(parts), entities, relations, examples


def apply_unseen(ids: np.ndarray, labels_source: str, on_unseen: OnUnseen,
                 examples: list | None = None) -> tuple[np.ndarray, int]:
    """Handle rows with id -1 (a label the vocabulary lacks): raise, or say they are dropped. Returns the mask of
    the rows kept and how many were dropped."""
    if on_unseen not in ("error", "drop"):
        raise DataError(f"on_unseen must be 'error' or 'drop', got {on_unseen!r}")
    bad = (ids < 0).any(axis=1)
    count = int(bad.sum())
    if count and on_unseen == "error":
        shown = examples if examples else ids[bad][:3].tolist()
        raise DataError(
            f"{labels_source}: {count} triples have an entity or relation that never occurs in train, "
            f"e.g. {shown}; pass on_unseen='drop' to drop them")
    if count:
        example = tuple(examples[0]) if examples else tuple(ids[bad][0].tolist())
        log.warning("%s: dropped %d of %d triples with an entity or relation unseen in train, e.g. %s "
                    "(on_unseen='error' makes this an error)", labels_source, count, len(ids), example)
    return np.logical_not(bad), count


class SplitReading(TypedDict):
    entities: Vocabulary | None
    relations: Vocabulary | None
    on_unseen: OnUnseen


def read_splits(train: Triples, read: Callable[[Any, SplitReading], Triples], others: Sequence[Any],
                on_unseen: SplitUnseen) -> tuple[Triples, list[Triples | None]]:
    """A dataset's valid/test splits, read from ``others`` (a file, a frame, ...; ``None`` stays ``None``) after
    ``train`` by ``read(source, how)``: in train's vocabularies with unseen labels dropped or an error, or, with
    ``on_unseen="keep"``, each in its own and then joined into one pair of vocabularies (``join_splits``). Returns
    train (grown by ``keep``) and the splits."""
    how = _split_reading(train, on_unseen)
    read_others = [None if source is None else read(source, how) for source in others]
    return join_splits(train, *read_others) if on_unseen == "keep" else (train, read_others)


def _split_reading(train: Triples, on_unseen: SplitUnseen) -> SplitReading:
    if on_unseen == "keep":
        return {"entities": None, "relations": None, "on_unseen": "drop"}
    if on_unseen not in ("error", "drop"):
        raise DataError(f"on_unseen must be 'error', 'drop' or 'keep', got {on_unseen!r}")
    return {"entities": train.entities, "relations": train.relations, "on_unseen": on_unseen}


def join_splits(train: Triples, *others: Triples | None) -> tuple[Triples, list[Triples | None]]:
    """``on_unseen="keep"``: splits read each in its own vocabularies, re-expressed in one pair. Train's labels keep
    their ids; the labels only valid/test hold follow, sorted, as kbc and LibKGE index every split's entities (so
    their filtered metrics rank the test triples that name them). Such an entity has no training triple: 1vsAll and
    KvsAll train its row only as a negative of every query, sLCWA when it is sampled."""
    present = [split for split in others if split is not None]
    entities = _grown(train.entities, [split.entities for split in present])
    relations = _grown(train.relations, [split.relations for split in present])
    if len(entities) > len(train.entities) or len(relations) > len(train.relations):
        log.warning("%s: %d entities and %d relations occur in valid/test only; they join the vocabularies "
                    "(on_unseen='keep')", train.source, len(entities) - len(train.entities),
                    len(relations) - len(train.relations))

    def express(split: Triples) -> Triples:
        e, r = entities.lookup(split.entities.labels), relations.lookup(split.relations.labels)
        hrt = split.hrt.numpy()
        ids = np.stack([e[hrt[:, 0]], r[hrt[:, 1]], e[hrt[:, 2]]], axis=1) if len(hrt) else hrt
        unseen = (ids[:, [0, 2]] >= len(train.entities)).any(axis=1) | (ids[:, 1] >= len(train.relations))
        return replace(split, hrt=torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)), entities=entities,
                       relations=relations, stats={**split.stats, "kept_unseen": int(unseen.sum())})

    return (replace(train, entities=entities, relations=relations),
            [None if split is None else express(split) for split in others])


def _grown(base: Vocabulary, others: list[Vocabulary]) -> Vocabulary:
    """``base`` with the labels of ``others`` it lacks appended, sorted."""
    labels = np.concatenate([v.labels for v in others]) if others else np.empty(0, dtype=object)
    new = labels[base.lookup(labels) < 0]
    if not len(new):
        return base
    return Vocabulary(np.concatenate([base.labels, np.sort(pd.unique(new.astype(object)))]), kind=base.kind)


def triples_from_labels(chunks: Iterable[np.ndarray], source: str, *, entities: Vocabulary | None = None,
                        relations: Vocabulary | None = None, on_unseen: OnUnseen = "drop",
                        on_duplicates: OnDuplicates = "keep", weighted: bool = False) -> Triples:
    """Build Triples from label chunks; with vocabularies given, unseen labels follow ``on_unseen``.
    ``weighted``: each chunk has a 4th column of numbers, the edges' weights."""
    values: list[np.ndarray] = []
    if weighted:
        chunks = _peel_weights(chunks, values)
    ids, entities, relations, examples = encode_labels(chunks, entities, relations)
    keep, unseen = apply_unseen(ids, source, on_unseen, examples)
    weights = torch.from_numpy(np.concatenate(values)[keep].astype(np.float32)) if weighted else None
    triples = Triples(torch.from_numpy(np.ascontiguousarray(ids[keep] if unseen else ids)), entities, relations,
                      source, {"unseen": unseen} if unseen else {}, weights)
    return handle_duplicates(triples, on_duplicates)


def _peel_weights(chunks: Iterable[np.ndarray], values: list[np.ndarray]) -> Iterator[np.ndarray]:
    """The label columns of ``(m, 4)`` chunks, their 4th column (already numbers) appended to ``values``."""
    for chunk in chunks:
        values.append(chunk[:, 3].astype(np.float64))
        yield chunk[:, :3]


def read_triples(path: str | os.PathLike[str], *, entities: Vocabulary | None = None,
                 relations: Vocabulary | None = None, delimiter: str | None = None, header: bool = False,
                 columns: tuple[int | str, int | str, int | str] = (0, 1, 2), quotechar: str | None = None,
                 extra_columns: Literal["error", "ignore"] = "error", on_unseen: OnUnseen = "drop",
                 on_duplicates: OnDuplicates = "keep", edge_weights: int | str | None = None) -> Triples:
    """Read a delimited file of (head, relation, tail) labels (gz, CRLF and a UTF-8 BOM accepted). ``delimiter``
    defaults to a comma for ``.csv`` / ``.csv.gz`` files and a tab for every other file.

    ``header``: the first line names the columns (``columns`` may then be names); ``extra_columns="ignore"``
    reads files with more fields than the three used. ``edge_weights``: the column (a position, or a name with
    ``header``) of a numeric value per edge, read into ``Triples.weights`` (3: a 4th column, DGL-KE's edge
    importance). With vocabularies given, a triple with a label they lack is dropped with a warning
    (``on_unseen="drop"``) or is an error (``"error"``). A Parquet or Arrow file (told by its magic bytes) is read
    a row group at a time by ``kgem.data.parquet``: columns by position or name, string or integer labels;
    ``delimiter``, ``header`` and ``quotechar`` do not apply."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if delimiter is None:
        delimiter = "," if path.name.endswith((".csv", ".csv.gz")) else "\t"
    if table_format(path):  # Parquet or Arrow, by its magic bytes
        chunks = iter_table_chunks(path, columns=columns, extra_columns=extra_columns, weight=edge_weights)
    else:
        chunks = iter_label_chunks(path, delimiter=delimiter, header=header, columns=columns, quotechar=quotechar,
                                   extra_columns=extra_columns, weight=edge_weights)
    return triples_from_labels(chunks, str(path), entities=entities, relations=relations,
                               on_unseen=on_unseen, on_duplicates=on_duplicates, weighted=edge_weights is not None)


def triples_from_df(frame: pd.DataFrame, *, columns: tuple[str, str, str] = ("head", "relation", "tail"),
                    entities: Vocabulary | None = None, relations: Vocabulary | None = None,
                    on_unseen: OnUnseen = "drop", on_duplicates: OnDuplicates = "keep",
                    source: str = "<DataFrame>", edge_weights: str | None = None) -> Triples:
    """Build Triples from a DataFrame's head, relation and tail columns (and ``edge_weights``: a column of a
    number per edge, read into ``Triples.weights``)."""
    if not len(frame):
        raise DataError(f"{source}: no triples (the DataFrame is empty)")
    labels = frame_labels(frame, columns)
    if edge_weights is not None:
        labels = np.column_stack([labels, frame_numbers(frame, edge_weights, source).astype(object)])
    return triples_from_labels([labels], source, entities=entities, relations=relations, on_unseen=on_unseen,
                               on_duplicates=on_duplicates, weighted=edge_weights is not None)


def frame_numbers(frame: pd.DataFrame, column: str, source: str) -> np.ndarray:
    """A DataFrame column as float64, or a DataError naming the first row that is not a finite number."""
    if column not in frame.columns:
        raise DataError(f"{source}: no column {column!r} (edge weights); it has {list(frame.columns)}")
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise DataError(f"{source} row {frame.index[bad[0]]!r}: edge weight {frame[column].iloc[bad[0]]!r} is not "
                        f"a finite number")
    return values
