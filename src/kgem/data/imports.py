"""Streaming import: label triples of any size into a dataset folder that opens memory-mapped.

``import_triples`` reads delimited label files (TSV, CSV, gzipped, DGL-KE's ``raw_udd_{order}`` layouts through
``columns``) in chunks, Parquet and Arrow files a row group at a time (``kgem.data.parquet``), twice: the first
pass collects the distinct labels (the vocabularies: sorted, so the same labels always get the same ids, as
``Vocabulary.from_labels`` gives them), the second encodes each chunk to ids and appends it to a raw int64 file of
its split. Peak memory is the vocabularies plus one chunk, whatever the file size. The folder holds:

- ``dataset.json``: the format, counts, splits (file and rows), and what the import dropped or found;
- ``entities.tsv`` / ``relations.tsv``: the vocabularies (``id<TAB>label``, as saved models keep them);
- ``train.bin`` / ``valid.bin`` / ``test.bin``: ``(rows, 3)`` int64 ids, row-major, no header.

``Dataset.from_folder`` (so ``load_dataset`` and ``--dataset FOLDER``) opens such a folder without reading the
triples: each split is a copy-on-write memory map, paged in by the OS as training and evaluation touch it.

Given one file and ``ratios``, the import splits it, seeded and in bounded memory: each triple's split is drawn from
a generator seeded by ``seed`` and its block of rows (so the draw does not depend on how the file was chunked), then
a valid or test triple naming an entity or relation that no training triple names moves to train (the "nothing
unseen" guarantee; at most one move per entity or relation). Held-out shares are therefore the ratios in
expectation, not exactly. Any import with held-out triples is checked for leakage: a valid or test triple that is
also a training triple, or whose reverse (its tail and head swapped, any relation) is one, is counted and reported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kgem.atomic import atomic_write
from kgem.data.parquet import iter_table_chunks, table_format
from kgem.data.readers import CHUNK_BYTES, ExtraColumns, iter_label_chunks
from kgem.data.split import check_ratios
from kgem.data.vocab import Vocabulary
from kgem.errors import DataError

FORMAT = "kgem-imported"
META = "dataset.json"
SPLITS = ("train", "valid", "test")
BLOCK_ROWS = 1 << 20  # rows per seeded draw of the split


@dataclass
class ReaderOptions:
    """How the label files are read (``read_triples``' options)."""

    delimiter: str | None = None
    header: bool = False
    columns: tuple[int | str, int | str, int | str] = (0, 1, 2)
    quotechar: str | None = None
    extra_columns: ExtraColumns = "error"
    chunk_bytes: int = CHUNK_BYTES

    def chunks(self, path: Path) -> Iterator[np.ndarray]:
        if table_format(path):  # Parquet or Arrow: a row group at a time
            return iter_table_chunks(path, columns=self.columns, extra_columns=self.extra_columns)
        delimiter = self.delimiter or ("," if path.name.endswith((".csv", ".csv.gz")) else "\t")
        return iter_label_chunks(path, delimiter=delimiter, header=self.header, columns=self.columns,
                                 quotechar=self.quotechar, extra_columns=self.extra_columns,
                                 chunk_bytes=self.chunk_bytes)


@dataclass
class ImportReport:
    """What an import wrote and found: rows per split, dropped triples, moved triples, leakage."""

    folder: Path
    num_entities: int
    num_relations: int
    rows: dict[str, int]
    dropped_unseen: dict[str, int] = field(default_factory=dict)
    moved_to_train: int = 0
    leakage: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "num_entities": self.num_entities, "num_relations": self.num_relations,
                "rows": self.rows, "dropped_unseen": self.dropped_unseen, "moved_to_train": self.moved_to_train,
                "leakage": self.leakage}


def import_triples(files: str | os.PathLike[str] | Sequence[str | os.PathLike[str] | None],
                   output: str | os.PathLike[str], *, ratios: Sequence[float] | None = None, seed: int = 0,
                   **reader: Any) -> ImportReport:
    """Import label triples into the dataset folder ``output`` (see the module docstring). ``files``: one file
    (all of it train, or split by ``ratios``), or train, valid and test files (valid and test optional; their
    triples with a label train lacks are dropped and counted). ``reader``: ``ReaderOptions`` fields."""
    given = [files] if isinstance(files, str | os.PathLike) else list(files)
    paths = [None if f is None else Path(f) for f in given]
    if not 1 <= len(paths) <= 3 or paths[0] is None:
        raise DataError(f"give one file, or train, valid and test files (valid or test may be None); got {given}")
    if ratios is not None and len(paths) != 1:
        raise DataError("ratios split one file; the splits are already given as separate files")
    for path in paths:
        if path is not None and not path.is_file():
            raise DataError(f"{path}: no such file")
    options = ReaderOptions(**reader)
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    entities, relations = collect_vocabularies(paths[0], options)
    entities.save(folder / "entities.tsv")
    relations.save(folder / "relations.tsv")
    report = ImportReport(folder, len(entities), len(relations), {})
    if ratios is None:
        for name, path in zip(SPLITS, paths):
            if path is None:
                continue
            report.rows[name], dropped = encode_file(path, options, entities, relations, folder / f"{name}.bin")
            if dropped:
                report.dropped_unseen[name] = dropped
    else:
        encode_file(paths[0], options, entities, relations, folder / "all.bin")
        report.rows, report.moved_to_train = split_file(folder / "all.bin", folder, ratios, seed, report)
        (folder / "all.bin").unlink()
    if len(report.rows) > 1:
        report.leakage = leakage(folder, report.rows, entities, relations)
    sources = [None if p is None else str(p) for p in paths]
    write_meta(folder, report, {"sources": sources, "ratios": list(ratios) if ratios else None, "seed": seed})
    return report


def collect_vocabularies(path: Path, options: ReaderOptions) -> tuple[Vocabulary, Vocabulary]:
    """The first pass: the distinct entity and relation labels of ``path``, sorted."""
    entities: set[str] = set()
    relations: set[str] = set()
    for chunk in options.chunks(path):
        entities.update(chunk[:, 0].tolist())
        entities.update(chunk[:, 2].tolist())
        relations.update(chunk[:, 1].tolist())
    if not relations:
        raise DataError(f"{path}: no triples")
    return (Vocabulary(np.array(sorted(entities), dtype=object), kind="entity"),
            Vocabulary(np.array(sorted(relations), dtype=object), kind="relation"))


def encode_file(path: Path, options: ReaderOptions, entities: Vocabulary, relations: Vocabulary,
                out: Path) -> tuple[int, int]:
    """The second pass: ``path``'s triples as int64 ids appended to ``out``; returns (rows written, rows dropped
    for a label the vocabularies lack)."""
    rows = dropped = 0
    with atomic_write(out, "wb") as f:
        for chunk in options.chunks(path):
            ids = np.stack([entities.lookup(chunk[:, 0]), relations.lookup(chunk[:, 1]),
                            entities.lookup(chunk[:, 2])], axis=1)
            keep = (ids >= 0).all(axis=1)
            dropped += int((~keep).sum())
            f.write(np.ascontiguousarray(ids[keep], dtype=np.int64).tobytes())
            rows += int(keep.sum())
    return rows, dropped


def mapped(path: Path, rows: int, writable: bool = False) -> np.ndarray:
    """A split file as a ``(rows, 3)`` int64 memory map: copy-on-write (the file never changes), or read-write."""
    if rows == 0:
        return np.zeros((0, 3), dtype=np.int64)
    return np.memmap(path, dtype=np.int64, mode="r+" if writable else "c", shape=(rows, 3))


def blocks(rows: int) -> Iterator[slice]:
    for start in range(0, rows, BLOCK_ROWS):
        yield slice(start, min(start + BLOCK_ROWS, rows))


def drawn_splits(rows: slice, ratios: tuple[float, float, float], seed: int) -> np.ndarray:
    """0 (train), 1 (valid) or 2 (test) for each row of a block, seeded by ``seed`` and the block."""
    assert rows.start % BLOCK_ROWS == 0
    u = np.random.default_rng([seed, rows.start // BLOCK_ROWS]).random(rows.stop - rows.start)
    return (u >= ratios[0]).astype(np.int8) + (u >= ratios[0] + ratios[1]).astype(np.int8)


def split_file(source: Path, folder: Path, ratios: Sequence[float], seed: int,
               report: ImportReport) -> tuple[dict[str, int], int]:
    """Split ``source`` into the three split files (see the module docstring); returns rows per split and the
    number of held-out triples moved to train."""
    shares = check_ratios(ratios)
    total = source.stat().st_size // 24
    hrt = mapped(source, total)
    covered_e = np.zeros(report.num_entities, dtype=bool)
    covered_r = np.zeros(report.num_relations, dtype=bool)
    for part in blocks(total):
        ids, split = hrt[part], drawn_splits(part, shares, seed)
        train = ids[split == 0]
        covered_e[train[:, 0]] = covered_e[train[:, 2]] = True
        covered_r[train[:, 1]] = True
    moved: list[np.ndarray] = []
    for part in blocks(total):  # held-out rows naming something train lacks move there, in file order
        ids, split = np.asarray(hrt[part]), drawn_splits(part, shares, seed)
        lacking = (split > 0) & ~(covered_e[ids[:, 0]] & covered_e[ids[:, 2]] & covered_r[ids[:, 1]])
        for row in np.flatnonzero(lacking):  # few: each move covers at least one entity or relation
            h, r, t = ids[row]
            if not (covered_e[h] and covered_e[t] and covered_r[r]):
                covered_e[h] = covered_e[t] = covered_r[r] = True
                moved.append(np.array([part.start + row]))
    moves = np.sort(np.concatenate(moved)) if moved else np.zeros(0, dtype=np.int64)
    rows = dict.fromkeys(SPLITS, 0)
    with (atomic_write(folder / "train.bin", "wb") as train, atomic_write(folder / "valid.bin", "wb") as valid,
          atomic_write(folder / "test.bin", "wb") as test):
        for part in blocks(total):
            ids, split = np.asarray(hrt[part]), drawn_splits(part, shares, seed)
            here = moves[(moves >= part.start) & (moves < part.stop)] - part.start
            split[here] = 0
            for number, (name, f) in enumerate(zip(SPLITS, (train, valid, test))):
                chosen = ids[split == number]
                f.write(np.ascontiguousarray(chosen).tobytes())
                rows[name] += len(chosen)
    for name in ("valid", "test"):
        if not rows[name]:
            del rows[name]
            (folder / f"{name}.bin").unlink()
    return rows, len(moves)


def leakage(folder: Path, rows: dict[str, int], entities: Vocabulary,
            relations: Vocabulary) -> dict[str, dict[str, Any]]:
    """For each held-out split: how many of its triples are training triples (``duplicates``) or have a training
    triple from their tail to their head (``reverses``), with up to three examples; memory is the held-out keys."""
    n, keys = np.int64(len(entities)), (len(entities), len(relations))
    train = mapped(folder / "train.bin", rows["train"])
    found: dict[str, dict[str, Any]] = {}
    for name in ("valid", "test"):
        if name not in rows:
            continue
        held = np.asarray(mapped(folder / f"{name}.bin", rows[name]))
        triple_keys = np.sort(_triple_keys(held, *keys))
        pair_keys = np.sort(held[:, 2] * n + held[:, 0])  # (t, h): a train triple h' = t, t' = h reverses it
        dup_hit = np.zeros(len(triple_keys), dtype=bool)
        rev_hit = np.zeros(len(pair_keys), dtype=bool)
        for part in blocks(rows["train"]):
            ids = np.asarray(train[part])
            _mark(triple_keys, _triple_keys(ids, *keys), dup_hit)
            _mark(pair_keys, ids[:, 0] * n + ids[:, 2], rev_hit)
        duplicates = held[np.isin(_triple_keys(held, *keys), triple_keys[dup_hit])]
        reverses = held[np.isin(held[:, 2] * n + held[:, 0], pair_keys[rev_hit])]
        found[name] = {"duplicates": len(duplicates), "reverses": len(reverses),
                       "examples": [[str(entities.labels[h]), str(relations.labels[r]), str(entities.labels[t])]
                                    for h, r, t in np.concatenate([duplicates[:3], reverses[:3]])[:3].tolist()]}
    return found


def _triple_keys(ids: np.ndarray, num_entities: int, num_relations: int) -> np.ndarray:
    """One int64 per triple: ``(h * R + r) * E + t`` where that fits, else a 64-bit hash of the three ids (two
    triples sharing a hash are then counted alike: a chance of about one in 2**64 per pair)."""
    e, r = np.int64(num_entities), np.int64(num_relations)
    if float(num_entities) ** 2 * float(num_relations) < 2**62:
        return (ids[:, 0] * r + ids[:, 1]) * e + ids[:, 2]
    u = ids.astype(np.uint64)
    with np.errstate(over="ignore"):
        mixed = (u[:, 0] * np.uint64(0x9E3779B97F4A7C15)) ^ (u[:, 1] * np.uint64(0xC2B2AE3D27D4EB4F))
        return ((mixed ^ u[:, 2]) * np.uint64(0x165667B19E3779F9)).view(np.int64)


def _mark(sorted_keys: np.ndarray, keys: np.ndarray, hit: np.ndarray) -> None:
    """Set ``hit`` at the positions of ``sorted_keys`` that occur in ``keys``."""
    if not len(sorted_keys) or not len(keys):
        return
    positions = np.searchsorted(sorted_keys, keys)
    inside = positions < len(sorted_keys)
    equal = np.zeros(len(keys), dtype=bool)
    equal[inside] = sorted_keys[positions[inside]] == keys[inside]
    hit[positions[equal]] = True


def write_meta(folder: Path, report: ImportReport, settings: dict[str, Any]) -> None:
    meta = {"format": FORMAT, "version": 1, "dtype": "int64", "num_entities": report.num_entities,
            "num_relations": report.num_relations,
            "splits": {name: {"file": f"{name}.bin", "rows": rows} for name, rows in report.rows.items()},
            "dropped_unseen": report.dropped_unseen, "moved_to_train": report.moved_to_train,
            "leakage": report.leakage, **settings}
    with atomic_write(folder / META) as f:
        f.write(json.dumps(meta, indent=2) + "\n")


def read_meta(folder: Path) -> dict[str, Any] | None:
    """An imported folder's ``dataset.json``, checked; None when the folder is not one."""
    path = folder / META
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable dataset description ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return None
    splits = meta.get("splits")
    if meta.get("version") != 1 or not isinstance(splits, dict) or "train" not in splits:
        raise DataError(f"{path}: an imported dataset of an unknown version or without a train split")
    for name, split in splits.items():
        file = folder / str(split.get("file", ""))
        rows = split.get("rows")
        if name not in SPLITS or not isinstance(rows, int) or rows < 0:
            raise DataError(f"{path}: split {name!r} is not described by a file and a row count")
        if not file.is_file() and rows:
            raise DataError(f"{file}: missing (the import that wrote {path} did not finish?)")
        if rows and file.stat().st_size != rows * 24:
            raise DataError(f"{file}: {file.stat().st_size} bytes, expected {rows} rows of 3 int64 ids "
                            f"({rows * 24} bytes): truncated or replaced")
    return meta
