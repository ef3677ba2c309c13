"""Triples: an int64 tensor ``(n, 3)`` of (h, r, t) ids plus the entity and relation vocabularies."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from kgem.atomic import atomic_write
from kgem.data.readers import frame_labels, iter_label_chunks
from kgem.data.vocab import Vocabulary
from kgem.errors import DataError

log = logging.getLogger("kgem")

OnUnseen = Literal["error", "drop"]
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

    def __post_init__(self) -> None:
        if self.hrt.dtype != torch.int64 or self.hrt.ndim != 2 or self.hrt.shape[1] != 3:
            raise DataError(f"{self.source}: triples must be an int64 tensor of shape (n, 3), "
                            f"got {self.hrt.dtype} {tuple(self.hrt.shape)}")
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
        """Labels and ids as a DataFrame with columns head, relation, tail, head_id, relation_id, tail_id."""
        ids = self.hrt.numpy()
        return pd.DataFrame({
            "head": self.entities.to_labels(ids[:, 0]), "relation": self.relations.to_labels(ids[:, 1]),
            "tail": self.entities.to_labels(ids[:, 2]),
            "head_id": ids[:, 0], "relation_id": ids[:, 1], "tail_id": ids[:, 2],
        })

    def with_hrt(self, hrt: torch.Tensor, **stats: int) -> Triples:
        return Triples(hrt, self.entities, self.relations, self.source, {**self.stats, **stats})

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the triples as a label TSV file (atomic), readable by ``read_triples``."""
        frame = self.to_df()[["head", "relation", "tail"]]
        with atomic_write(path) as f:
            frame.to_csv(f, sep="\t", header=False, index=False, lineterminator="\n")

    def add_inverse(self) -> Triples:
        """Add a reciprocal relation r⁻¹ = r + num_relations for every r, and the triple (t, r⁻¹, h) for each triple."""
        labels = self.relations.labels
        relations = Vocabulary(np.concatenate([labels, [f"{x}{INVERSE_SUFFIX}" for x in labels]]), kind="relation")
        return Triples(with_inverse(self.hrt, self.num_relations), self.entities, relations,
                       f"{self.source} + inverse", dict(self.stats))


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
    if dups and on_duplicates == "drop":
        return triples.with_hrt(triples.hrt[first], duplicates=dups)
    return triples.with_hrt(triples.hrt, duplicates=dups)


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
    """Handle rows with id -1 (a label the vocabulary lacks): raise, or drop them and return the count."""
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
    return ids[~bad], count


def triples_from_labels(chunks: Iterable[np.ndarray], source: str, *, entities: Vocabulary | None = None,
                        relations: Vocabulary | None = None, on_unseen: OnUnseen = "drop",
                        on_duplicates: OnDuplicates = "keep") -> Triples:
    """Build Triples from label chunks; with vocabularies given, unseen labels follow ``on_unseen``."""
    ids, entities, relations, examples = encode_labels(chunks, entities, relations)
    ids, unseen = apply_unseen(ids, source, on_unseen, examples)
    triples = Triples(torch.from_numpy(np.ascontiguousarray(ids)), entities, relations, source,
                      {"unseen": unseen} if unseen else {})
    return handle_duplicates(triples, on_duplicates)


def read_triples(path: str | os.PathLike[str], *, entities: Vocabulary | None = None,
                 relations: Vocabulary | None = None, delimiter: str | None = None, header: bool = False,
                 columns: tuple[int | str, int | str, int | str] = (0, 1, 2), quotechar: str | None = None,
                 extra_columns: Literal["error", "ignore"] = "error", on_unseen: OnUnseen = "drop",
                 on_duplicates: OnDuplicates = "keep") -> Triples:
    """Read a delimited file of (head, relation, tail) labels (gz, CRLF and a UTF-8 BOM accepted). ``delimiter``
    defaults to a comma for ``.csv`` / ``.csv.gz`` files and a tab for every other file.

    ``header``: the first line names the columns (``columns`` may then be names); ``extra_columns="ignore"``
    reads files with more fields than the three used. With vocabularies given, a triple with a label they lack
    is dropped with a warning (``on_unseen="drop"``) or is an error (``"error"``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if delimiter is None:
        delimiter = "," if path.name.endswith((".csv", ".csv.gz")) else "\t"
    chunks = iter_label_chunks(path, delimiter=delimiter, header=header, columns=columns, quotechar=quotechar,
                               extra_columns=extra_columns)
    return triples_from_labels(chunks, str(path), entities=entities, relations=relations,
                               on_unseen=on_unseen, on_duplicates=on_duplicates)


def triples_from_df(frame: pd.DataFrame, *, columns: tuple[str, str, str] = ("head", "relation", "tail"),
                    entities: Vocabulary | None = None, relations: Vocabulary | None = None,
                    on_unseen: OnUnseen = "drop", on_duplicates: OnDuplicates = "keep",
                    source: str = "<DataFrame>") -> Triples:
    """Build Triples from a DataFrame's head, relation and tail columns."""
    if not len(frame):
        raise DataError(f"{source}: no triples (the DataFrame is empty)")
    return triples_from_labels([frame_labels(frame, columns)], source, entities=entities, relations=relations,
                               on_unseen=on_unseen, on_duplicates=on_duplicates)
