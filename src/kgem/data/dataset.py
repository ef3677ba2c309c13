"""A dataset: train / valid / test triples sharing the vocabularies of the training split."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from kgem.data.imports import META, mapped, read_meta
from kgem.data.known import LAZY_ROWS, KnownSplits, KnownTriples
from kgem.data.negatives import GivenNegatives, read_negatives
from kgem.data.parquet import SUFFIXES as TABLE_SUFFIXES
from kgem.data.prefixes import Prefixes
from kgem.data.rdf import SUFFIXES as RDF_SUFFIXES
from kgem.data.rdf import rdf_options, read_rdf
from kgem.data.readers import read_id_dict, read_id_triples
from kgem.data.split import split_indices
from kgem.data.stats import CATEGORIES, degree_stats, relation_categories
from kgem.data.triples import (
    OnDuplicates,
    SplitReading,
    SplitUnseen,
    Triples,
    read_splits,
    read_triples,
    triples_from_df,
)
from kgem.data.vocab import FileVocabulary, Vocabulary
from kgem.errors import DataError
from kgem.ops.pages import register

SPLITS = ("train", "valid", "test")
SUFFIXES = (".txt", ".tsv", ".txt.gz", ".tsv.gz", ".csv", ".csv.gz", *TABLE_SUFFIXES,  # tables: kgem.data.parquet
            *RDF_SUFFIXES)  # .nt, .nq, .ttl, .rdf, ...: kgem.data.rdf


@dataclass
class Dataset:
    """Train/valid/test splits; the vocabularies are those of ``train`` (valid and test use the same ids).
    ``negatives``: the entities each triple of a split is ranked against where the dataset gives them (OGB's, by
    split name; ``kgem.data.negatives``), for ``evaluation.protocol: ogb``. A dataset read from RDF keeps the
    ``prefixes`` that shortened its labels and the numeric ``attributes`` of its literals (``kgem.data.rdf``)."""

    train: Triples
    valid: Triples | None = None
    test: Triples | None = None
    name: str = "dataset"
    negatives: dict[str, GivenNegatives] = field(default_factory=dict, repr=False, compare=False)
    prefixes: Prefixes | None = field(default=None, repr=False, compare=False)
    attributes: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for split in (self.valid, self.test):
            if split is not None and (split.entities != self.entities or split.relations != self.relations):
                raise DataError(f"{self.name}: {split.source} does not share the training vocabularies")

    @property
    def entities(self) -> Vocabulary:
        return self.train.entities

    @property
    def relations(self) -> Vocabulary:
        return self.train.relations

    @property
    def num_entities(self) -> int:
        return self.train.num_entities

    @property
    def num_relations(self) -> int:
        return self.train.num_relations

    def splits(self) -> dict[str, Triples]:
        """The present splits by name."""
        return {name: t for name, t in zip(SPLITS, (self.train, self.valid, self.test)) if t is not None}

    def known(self, splits: Sequence[str] = SPLITS) -> KnownTriples:
        """Index of the true triples of ``splits`` (default all three: the standard filtered setting)."""
        hrt = torch.cat(self._known_parts(splits))
        return KnownTriples(hrt, self.num_entities, self.num_relations)

    def known_for_evaluation(self, splits: Sequence[str] = SPLITS) -> KnownTriples | KnownSplits:
        """What filtered evaluation filters with: the index of ``splits``' true triples, or, for ``LAZY_ROWS``
        triples or more, ``KnownSplits``, which indexes only those the evaluated queries need."""
        parts = self._known_parts(splits)
        if sum(len(part) for part in parts) >= LAZY_ROWS:
            return KnownSplits(parts, self.num_entities, self.num_relations)
        return KnownTriples(torch.cat(parts), self.num_entities, self.num_relations)

    def _known_parts(self, splits: Sequence[str]) -> list[torch.Tensor]:
        present = self.splits()
        unknown = [s for s in splits if s not in SPLITS]
        if unknown:
            raise DataError(f"unknown split(s) {unknown}; choose from {list(SPLITS)}")
        return [present[s].hrt for s in splits if s in present]

    def summary(self) -> pd.DataFrame:
        """One row per split: triples, distinct entities and relations used, duplicates and dropped unseen (and,
        where unseen ones were kept, ``kept_unseen``: the triples naming a label train lacks)."""
        rows = []
        kept = any("kept_unseen" in split.stats for split in self.splits().values())
        for name, t in self.splits().items():
            rows.append({"split": name, "triples": len(t),
                         "entities": int(torch.unique(t.hrt[:, [0, 2]]).numel()),
                         "relations": int(torch.unique(t.hrt[:, 1]).numel()),
                         "duplicates": t.stats.get("duplicates", 0), "dropped_unseen": t.stats.get("unseen", 0)})
            if kept:
                rows[-1]["kept_unseen"] = t.stats.get("kept_unseen", 0)
        return pd.DataFrame(rows).set_index("split")

    def describe(self) -> dict[str, Any]:
        """Counts, relation categories and degree statistics of the training graph."""
        categories = relation_categories(self.train.hrt, self.num_relations)
        counts = pd.Series(categories).value_counts().reindex(list(CATEGORIES), fill_value=0)
        return {"name": self.name, "num_entities": self.num_entities, "num_relations": self.num_relations,
                "splits": self.summary(), "relation_categories": counts,
                "degrees": degree_stats(self.train.hrt, self.num_entities)}

    def __str__(self) -> str:
        info = self.describe()
        cats = ", ".join(f"{k}: {v}" for k, v in info["relation_categories"].items())
        return (f"Dataset {self.name}: {self.num_entities} entities, {self.num_relations} relations\n"
                f"{info['splits'].to_string()}\n\nrelation categories (train): {cats}\n\n"
                f"entity degrees (train):\n{info['degrees'].to_string()}")

    @classmethod
    def from_files(cls, train: str | os.PathLike[str], valid: str | os.PathLike[str] | None = None,
                   test: str | os.PathLike[str] | None = None, *, name: str | None = None,
                   on_unseen: SplitUnseen = "drop", on_duplicates: OnDuplicates = "keep",
                   **reader: Any) -> Dataset:
        """Read the splits from delimited files (``reader`` options go to ``read_triples``), or from RDF files (by
        ``format`` or suffix: ``from_rdf_files``)."""
        rdf = rdf_options(train, reader)
        if rdf is not None:
            return cls.from_rdf_files(train, valid, test, name=name, on_unseen=on_unseen, on_duplicates=on_duplicates,
                                      **rdf)

        def read(path: str | os.PathLike[str], how: SplitReading) -> Triples:
            return read_triples(path, on_duplicates=on_duplicates, **how, **reader)

        tr, (va, te) = read_splits(read_triples(train, on_duplicates=on_duplicates, **reader), read, [valid, test],
                                   on_unseen)
        return cls(tr, va, te, name=name or Path(train).parent.name)

    @classmethod
    def from_rdf_files(cls, train: str | os.PathLike[str], valid: str | os.PathLike[str] | None = None,
                       test: str | os.PathLike[str] | None = None, *, name: str | None = None,
                       on_unseen: SplitUnseen = "drop", on_duplicates: OnDuplicates = "keep",
                       **options: Any) -> Dataset:
        """Read the splits from RDF files (``options`` go to ``kgem.data.rdf.read_rdf``); valid and test are read with
        train's prefix map, and the numeric attributes of all three are kept together."""
        tr = read_rdf(train, on_duplicates=on_duplicates, **options)
        parts = [tr]

        def read(path: str | os.PathLike[str], how: SplitReading) -> Triples:
            parts.append(read_rdf(path, on_duplicates=on_duplicates, **how, **{**options, "prefixes": tr.prefixes}))
            return parts[-1].triples

        train_t, (valid_t, test_t) = read_splits(tr.triples, read, [valid, test], on_unseen)
        attributes = pd.concat([part.attributes for part in parts], ignore_index=True)
        repeated = attributes.duplicated(["entity", "attribute"]).to_numpy()
        return cls(train_t, valid_t, test_t, name=name or Path(train).parent.name, prefixes=tr.prefixes,
                   attributes=attributes[~repeated].reset_index(drop=True))

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str], *, name: str | None = None, **options: Any) -> Dataset:
        """Read ``train``/``valid``/``test`` files (``.txt``, ``.tsv``, ``.csv``, optionally gzipped; ``.parquet``,
        ``.pq``, ``.arrow``, ``.feather``; RDF: ``.nt``, ``.nq``, ``.ttl``, ``.rdf``, ...) from a folder, and the
        negatives given with a split (``<split>.negatives.safetensors``, ``kgem.data.negatives``)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder")
        meta = read_meta(folder)
        if meta is not None:  # written by ``kgem import``: the splits open memory-mapped
            dataset = cls.from_imported(folder, meta, name=name or folder.name)
        else:
            found = {split: _find_split(folder, split) for split in SPLITS}
            if found["train"] is None:
                raise DataError(f"{folder}: no training file (expected one of "
                                f"{', '.join('train' + s for s in SUFFIXES)})")
            dataset = cls.from_files(found["train"], found["valid"], found["test"], name=name or folder.name,
                                     **options)
        dataset.negatives = read_negatives(folder, dataset.splits())
        return dataset

    @classmethod
    def from_imported(cls, folder: Path, meta: dict[str, Any], *, name: str) -> Dataset:
        """A folder written by ``import_triples``: vocabularies read, each split a copy-on-write memory map of its
        id file (``kgem.data.imports``)."""
        entities = FileVocabulary(folder / "entities.tsv", kind="entity")  # labels read on first use
        relations = Vocabulary.load(folder / "relations.tsv", kind="relation")
        if (len(entities), len(relations)) != (meta.get("num_entities"), meta.get("num_relations")):
            raise DataError(f"{folder}: the vocabularies hold {len(entities)} entities and {len(relations)} "
                            f"relations, {META} says {meta.get('num_entities')} and {meta.get('num_relations')}")
        splits: dict[str, Triples] = {}
        for split, info in meta["splits"].items():
            array = mapped(folder / info["file"], info["rows"])
            ids = torch.from_numpy(array)
            if isinstance(array, np.memmap):
                register(ids, array, private=True)  # a scan hands its pages back (kgem.ops.pages)
            splits[split] = Triples(ids, entities, relations, str(folder / info["file"]))
        return cls(splits["train"], splits.get("valid"), splits.get("test"), name=name)

    @classmethod
    def from_dfs(cls, train: pd.DataFrame, valid: pd.DataFrame | None = None, test: pd.DataFrame | None = None,
                 *, name: str = "dataframe", columns: tuple[str, str, str] = ("head", "relation", "tail"),
                 on_unseen: SplitUnseen = "drop", on_duplicates: OnDuplicates = "keep",
                 edge_weights: str | None = None) -> Dataset:
        """Build a dataset from DataFrames with head, relation and tail columns (and ``edge_weights``, a column of
        a number per edge)."""
        tr = triples_from_df(train, columns=columns, on_duplicates=on_duplicates, source=f"{name}/train",
                             edge_weights=edge_weights)

        def read(named: tuple[str, pd.DataFrame], how: SplitReading) -> Triples:
            split, df = named
            return triples_from_df(df, columns=columns, on_duplicates=on_duplicates, source=f"{name}/{split}",
                                   edge_weights=edge_weights, **how)

        named = [None if df is None else (split, df) for split, df in (("valid", valid), ("test", test))]
        tr, (va, te) = read_splits(tr, read, named, on_unseen)
        return cls(tr, va, te, name=name)

    @classmethod
    def from_split(cls, facts: pd.DataFrame | Triples | str | os.PathLike[str],
                   ratios: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int = 0, name: str | None = None,
                   columns: tuple[str, str, str] = ("head", "relation", "tail"),
                   on_duplicates: OnDuplicates = "drop", **read_options: Any) -> Dataset:
        """Split one set of facts (a DataFrame, Triples, or a triples file) into train/valid/test by ``ratios``
        (seeded), keeping every entity and relation in train, so valid and test have nothing unseen."""
        extras: dict[str, Any] = {}  # a file of RDF: its prefixes and attributes
        if isinstance(facts, pd.DataFrame):
            weights = read_options.get("edge_weights")  # a column name, or its position
            if isinstance(weights, int) and not 0 <= weights < len(facts.columns):
                raise DataError(f"edge_weights: no column {weights} in a DataFrame of {len(facts.columns)} columns")
            triples = triples_from_df(facts, columns=columns, on_duplicates=on_duplicates, source=name or "dataframe",
                                      edge_weights=facts.columns[weights] if isinstance(weights, int) else weights)
        elif isinstance(facts, Triples):
            triples = facts
        elif (rdf := rdf_options(facts, read_options)) is not None:
            read = read_rdf(facts, on_duplicates=on_duplicates, **rdf)
            triples, extras = read.triples, {"prefixes": read.prefixes, "attributes": read.attributes}
        else:
            triples = read_triples(facts, on_duplicates=on_duplicates, **read_options)
        label = name or Path(triples.source).stem
        parts = [replace(triples.subset(ids), source=f"{label}/{split}", stats={})
                 for split, ids in zip(SPLITS, split_indices(triples.hrt, ratios, seed=seed))]
        return cls(parts[0], parts[1] if len(parts[1]) else None, parts[2] if len(parts[2]) else None, name=label,
                   **extras)

    @classmethod
    def from_id_files(cls, folder: str | os.PathLike[str], *, order: str = "hrt",
                      files: tuple[str, str, str] = ("train.tsv", "valid.tsv", "test.tsv"),
                      name: str | None = None, edge_weights: int | None = None) -> Dataset:
        """DGL-KE's ``udd_{order}`` format: integer triple files plus ``entities.dict`` and ``relations.dict``
        (``edge_weights``: the column of each edge's importance, DGL-KE's ``--has_edge_importance``: 3)."""
        folder = Path(folder)
        entities = Vocabulary(read_id_dict(folder / "entities.dict"), kind="entity")
        relations = Vocabulary(read_id_dict(folder / "relations.dict"), kind="relation")
        splits: list[Triples | None] = []
        for file in files:
            path = folder / file
            if not path.exists():
                splits.append(None)
                continue
            ids, values = read_id_triples(path, order=order, edge_weights=edge_weights)
            weights = None if values is None else torch.from_numpy(values.astype(np.float32))
            splits.append(Triples(torch.from_numpy(np.ascontiguousarray(ids)), entities, relations, str(path),
                                  weights=weights))
        if splits[0] is None:
            raise DataError(f"{folder / files[0]}: no such file")
        return cls(splits[0], splits[1], splits[2], name=name or folder.name)


def _find_split(folder: Path, split: str) -> Path | None:
    for suffix in SUFFIXES:
        path = folder / f"{split}{suffix}"
        if path.is_file():
            return path
    return None
