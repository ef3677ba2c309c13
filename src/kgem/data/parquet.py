"""Parquet and Arrow IPC (Feather v2) tables: triples in, triples, predictions and embeddings out.

pyarrow is an optional dependency (``pip install 'kgem[parquet]'``), imported only when a table is read or written.

Reading streams a Parquet file a row group at a time (an Arrow IPC file a record batch at a time, memory-mapped),
and reads only the columns used, so ``kgem import`` of a file larger than memory holds one row group at a time. Each
group gives the label arrays the delimited reader gives (``kgem.data.readers.iter_label_chunks``: ``(m, 3)`` labels,
``(m, 4)`` with a 4th column of edge weights), so everything after that reader takes either. Label columns may be
strings or integers (an integer becomes its decimal text, as a TSV reader reads it), dictionary-encoded or not; a
null, an empty label or one holding a control character is a DataError naming the file, row group and row (rows and
groups count from 0, as Parquet tools count them).

A file is told to be Parquet or Arrow by its magic bytes, so no option names the format. Writing is atomic (a
temporary file beside the target, renamed over it); a ``.arrow``/``.feather`` path is written as Arrow IPC, any other
as Parquet.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from kgem.atomic import atomic_write
from kgem.data.vocab import CONTROL, encodable, label_problem
from kgem.errors import ConfigError, DataError

if TYPE_CHECKING:
    from kgem.data.triples import Triples

TableFormat = Literal["parquet", "arrow"]
PARQUET_SUFFIXES = (".parquet", ".pq")
ARROW_SUFFIXES = (".arrow", ".feather")
SUFFIXES = PARQUET_SUFFIXES + ARROW_SUFFIXES
MAGIC: dict[bytes, TableFormat] = {b"PAR1": "parquet", b"ARROW1": "arrow"}
ROW_GROUP_ROWS = 1 << 20  # rows per written row group (or record batch): what a reader holds at a time
ROLES = ("head", "relation", "tail", "edge weight")


def require_pyarrow() -> Any:
    """The pyarrow module (with ``pyarrow.parquet`` and ``pyarrow.ipc`` loaded), or a one-line error naming the extra
    that installs it."""
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet  # loaded: pyarrow.parquet below
    except ImportError as e:
        raise ConfigError("reading or writing Parquet/Arrow needs pyarrow, which is not installed: "
                          "pip install 'kgem[parquet]'") from e
    return pyarrow


def table_format(path: str | os.PathLike[str]) -> TableFormat | None:
    """``"parquet"`` or ``"arrow"`` (IPC file, Feather v2) by the file's magic bytes; None for anything else (a
    delimited text file) or a file that cannot be opened (its reader names the problem)."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        return None
    return next((kind for magic, kind in MAGIC.items() if head.startswith(magic)), None)


# -- reading -------------------------------------------------------------------------------------------------------


def iter_table_chunks(path: str | os.PathLike[str], *, columns: Sequence[int | str] = (0, 1, 2),
                      weight: int | str | None = None,
                      extra_columns: Literal["error", "ignore"] = "error") -> Iterator[np.ndarray]:
    """Yield ``(m, 3)`` object arrays of (head, relation, tail) labels from a Parquet or Arrow file, one per row
    group (record batch), reading only the columns used.

    ``columns`` picks the head, relation and tail columns by position or name; ``weight`` one more, a number per
    edge (integer or floating type): the arrays are then ``(m, 4)``, the 4th column floats. More columns than those
    read are an error unless ``extra_columns="ignore"``, as for a delimited file.
    """
    path = Path(path)
    if extra_columns not in ("error", "ignore"):
        raise DataError(f"extra_columns must be 'error' or 'ignore', got {extra_columns!r}")
    if len(columns) != 3:
        raise DataError(f"columns must name 3 columns (head, relation, tail), got {list(columns)}")
    pa = require_pyarrow()
    file = _TableFile(pa, path)
    wanted = [*columns, *([] if weight is None else [weight])]
    picks = [file.column_name(col) for col in wanted]
    if extra_columns == "error" and len(file.names) > len(set(picks)):
        raise DataError(f"{path}: {len(file.names)} columns {file.names}, but only {len(set(picks))} are read "
                        f"({list(wanted)}); pass extra_columns='ignore' (config data.extra_columns: ignore, kgem "
                        f"import --ignore-extra-columns) to read the file without them, or name a column of numbers "
                        f"as the edges' weights (edge_weights=NAME, config data.edge_weights, kgem train "
                        f"--edge-weights NAME)")
    first, empty = 0, True
    for where, table in file.groups(list(dict.fromkeys(picks))):
        if table.num_rows:
            at = _Where(path, where, first)
            labels = np.column_stack([at.labels(pa, table.column(name), role, name)
                                      for role, name in zip(ROLES, picks[:3])])
            at.check_labels(labels)
            if weight is not None:
                labels = np.column_stack([labels, at.weights(pa, table.column(picks[3]), picks[3]).astype(object)])
            empty = False
            yield labels
        first += table.num_rows
    if empty:
        raise DataError(f"{path}: no triples in file (it is empty)")


class _TableFile:
    """An open Parquet file (read a row group at a time) or Arrow IPC file (memory-mapped, a record batch at a
    time)."""

    def __init__(self, pa: Any, path: Path) -> None:
        self.pa, self.path, self.kind = pa, path, table_format(path)
        if self.kind is None:
            raise DataError(f"{path}: not a Parquet or Arrow IPC file (no PAR1 or ARROW1 magic bytes)")
        try:
            if self.kind == "parquet":
                self.source = pa.parquet.ParquetFile(path)
                self.count, schema = self.source.num_row_groups, self.source.schema_arrow
            else:
                self.source = pa.ipc.open_file(pa.memory_map(str(path)))
                self.count, schema = self.source.num_record_batches, self.source.schema
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{path}: not a readable {self.kind} file ({e})") from e
        self.names: list[str] = list(schema.names)

    def column_name(self, column: int | str) -> str:
        """The name of a column given by name or position; a DataError names the columns the file has."""
        if isinstance(column, str):
            if column not in self.names:
                raise DataError(f"{self.path}: no column {column!r}; it has {self.names}")
            return column
        if not 0 <= column < len(self.names):
            raise DataError(f"{self.path}: column {column} out of range for {len(self.names)} columns {self.names}")
        return self.names[column]

    def groups(self, columns: list[str]) -> Iterator[tuple[str, Any]]:
        """``(where, table of columns)`` per row group (record batch), ``where`` naming it for errors."""
        for index in range(self.count):
            where = f"row group {index}" if self.kind == "parquet" else f"record batch {index}"
            try:
                if self.kind == "parquet":
                    table = self.source.read_row_group(index, columns=columns)
                else:
                    table = self.source.get_batch(index).select(columns)
            except (self.pa.ArrowException, OSError) as e:
                raise DataError(f"{self.path}: {where} cannot be read ({e})") from e
            yield where, table

    def read_all(self) -> Any:
        """The whole file as one Arrow table."""
        try:
            return self.source.read() if self.kind == "parquet" else self.source.read_all()
        except (self.pa.ArrowException, OSError) as e:
            raise DataError(f"{self.path}: cannot be read ({e})") from e


class _Where:
    """One row group of a file: turns its columns into labels and weights, and names a bad row in errors."""

    def __init__(self, path: Path, group: str, first: int) -> None:
        self.path, self.group, self.first = path, group, first

    def fail(self, row: int, problem: str) -> DataError:
        return DataError(f"{self.path}: {self.group}, row {row} (file row {self.first + row}): {problem}")

    def labels(self, pa: Any, column: Any, role: str, name: str) -> np.ndarray:
        """A label column as an object array of str: strings as they are, integers as their decimal text."""
        if column.null_count:
            raise self.fail(_first(column.is_null()), f"null {role} (column {name!r})")
        kind = column.type
        if pa.types.is_dictionary(kind):
            column, kind = column.cast(kind.value_type), kind.value_type
        if pa.types.is_integer(kind):
            column, kind = column.cast(pa.string()), pa.string()
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or str(kind) == "string_view"):
            raise DataError(f"{self.path}: the {role} column {name!r} holds {kind}; labels must be strings or "
                            f"integers")
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)

    def check_labels(self, labels: np.ndarray) -> None:
        """An empty label, or one no vocabulary file can hold (a control character, a lone surrogate), is an
        error naming its row; one regex scan per group finds whether there is one."""
        flat = labels.ravel()
        joined = "".join(flat)
        if (flat == "").any() or CONTROL.search(joined) or not encodable(joined):
            i = next(i for i in range(len(flat)) if label_problem(flat[i]))
            row, role = divmod(i, labels.shape[1])
            raise self.fail(row, f"{label_problem(flat[i])} ({ROLES[role]} {flat[i]!r})")

    def weights(self, pa: Any, column: Any, name: str) -> np.ndarray:
        """The edge-weight column as float64; a null or a value that is not a finite number names its row."""
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            raise DataError(f"{self.path}: the edge weight column {name!r} holds {column.type}; expected numbers")
        if column.null_count:
            raise self.fail(_first(column.is_null()), f"null edge weight (column {name!r})")
        values = column.cast(pa.float64()).to_numpy()
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise self.fail(int(bad[0]), f"edge weight {values[bad[0]]} is not a finite number (column {name!r})")
        return values


def _first(mask: Any) -> int:
    """The position of the first true value of a boolean Arrow array."""
    return int(np.flatnonzero(mask.to_numpy(zero_copy_only=False))[0])


def read_frame(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A whole Parquet or Arrow file as a DataFrame (queries, written predictions)."""
    return _TableFile(require_pyarrow(), Path(path)).read_all().to_pandas()


def read_embeddings(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """The labels (row ``i``: id ``i``) and the ``(n, d)`` vectors of a table written by ``write_embeddings``."""
    pa = require_pyarrow()
    file = _TableFile(pa, Path(path))
    for name in ("label", "embedding"):
        file.column_name(name)
    table = file.read_all()
    vectors = table.column("embedding").combine_chunks()
    if not pa.types.is_fixed_size_list(vectors.type):
        raise DataError(f"{path}: column 'embedding' holds {vectors.type}; expected a fixed-size list of floats")
    dim = vectors.type.list_size
    values = vectors.flatten().to_numpy(zero_copy_only=False).reshape(len(vectors), dim)
    return np.asarray(table.column("label").to_numpy(zero_copy_only=False), dtype=object), values


# -- writing -------------------------------------------------------------------------------------------------------


def write_triples(triples: Triples, path: str | os.PathLike[str], *, ids: bool = False,
                  row_group_rows: int = ROW_GROUP_ROWS) -> Path:
    """Write triples as a table of their labels: columns head, relation, tail (strings); with ``ids`` also head_id,
    relation_id, tail_id (int64: the vocabularies' ids, which an exported embedding table's ``id`` column joins);
    and weight (float32) when they have weights. A row group of ``row_group_rows`` triples at a time, so only one
    group's labels are ever Python strings. ``read_triples`` reads it back (with ``ids``: ``extra_columns="ignore"``,
    or ``edge_weights="weight"`` for the weights)."""
    pa = require_pyarrow()
    names = ("head", "relation", "tail")
    fields = [pa.field(name, pa.string(), nullable=False) for name in names]
    if ids:
        fields += [pa.field(f"{name}_id", pa.int64(), nullable=False) for name in names]
    if triples.weights is not None:
        fields.append(pa.field("weight", pa.float32(), nullable=False))
    schema = pa.schema(fields)
    hrt = triples.hrt.numpy()
    weights = None if triples.weights is None else triples.weights.numpy()

    def batches() -> Iterator[Any]:
        for start in range(0, len(hrt), max(1, row_group_rows)):
            block = hrt[start : start + max(1, row_group_rows)]
            vocabs = (triples.entities, triples.relations, triples.entities)
            arrays = [pa.array(vocab.to_labels(block[:, i]), type=pa.string()) for i, vocab in enumerate(vocabs)]
            if ids:
                arrays += [pa.array(block[:, i]) for i in range(3)]
            if weights is not None:
                arrays.append(pa.array(weights[start : start + len(block)]))
            yield pa.record_batch(arrays, schema=schema)

    return _write(pa, Path(path), schema, batches())


def write_frame(frame: pd.DataFrame, path: str | os.PathLike[str], *, index: bool = False) -> Path:
    """Write a DataFrame (predictions, neighbours, metrics) as a table; ``index``: its index becomes the first
    column(s). ``read_frame`` reads it back equal."""
    pa = require_pyarrow()
    frame = frame.reset_index() if index else frame
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, ValueError) as e:
        raise DataError(f"{path}: cannot write the table as {'Arrow' if _arrow(Path(path)) else 'Parquet'} "
                        f"({e})") from e
    return _write(pa, Path(path), table.schema, table.to_batches(max_chunksize=ROW_GROUP_ROWS))


def write_embeddings(path: str | os.PathLike[str], labels: Sequence[str], table: np.ndarray) -> Path:
    """Write one row per entity (or relation): ``id`` (int64, the row), ``label`` and ``embedding``, a fixed-size
    list of the ``table`` row's values in its dtype (float32 stays float32: the values read back bit-exact)."""
    pa = require_pyarrow()
    rows, dim = table.shape
    if len(labels) != rows:
        raise DataError(f"{path}: {len(labels)} labels for {rows} embedding rows")
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("label", pa.string(), nullable=False),
                        pa.field("embedding", pa.list_(pa.from_numpy_dtype(table.dtype), dim), nullable=False)])
    step = max(1, (64 << 20) // max(1, dim * table.dtype.itemsize))  # about 64 MiB of vectors per row group

    def batches() -> Iterator[Any]:
        for start in range(0, rows, step):
            block = np.ascontiguousarray(table[start : start + step])
            vectors = pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), dim)
            yield pa.record_batch([pa.array(np.arange(start, start + len(block), dtype=np.int64)),
                                   pa.array(list(labels[start : start + len(block)]), type=pa.string()), vectors],
                                  schema=schema)

    return _write(pa, Path(path), schema, batches())


def _arrow(path: Path) -> bool:
    return path.name.endswith(ARROW_SUFFIXES)


def _write(pa: Any, path: Path, schema: Any, batches: Iterator[Any]) -> Path:
    """Write record batches (each a Parquet row group) atomically: Arrow IPC for a ``.arrow``/``.feather`` path,
    Parquet otherwise."""
    with atomic_write(path, "wb") as f:
        writer = pa.ipc.new_file(f, schema) if _arrow(path) else pa.parquet.ParquetWriter(f, schema)
        with writer:
            for batch in batches:
                writer.write_batch(batch)
    return path
