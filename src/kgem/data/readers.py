"""Readers: delimited text files (TSV/CSV, gz, LF/CRLF), DGL-KE's formats and pandas DataFrames.

Files are read in chunks of whole lines. Each chunk is validated with vectorised numpy (field counts, empty
fields, UTF-8) so that a bad line is reported with its file, line number and text, then parsed by pandas' C
parser. Labels only live as Python strings for one chunk; what is kept is int64 ids plus the vocabularies.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from kgem.errors import DataError

CHUNK_BYTES = 32 * 2**20
NEWLINE = 10


def open_binary(path: Path) -> io.BufferedIOBase:
    """Open ``path`` for reading bytes, transparently decompressing gzip (by magic bytes, not by name)."""
    raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    if raw.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw)
    return raw


def iter_line_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, bytes]]:
    """Yield ``(number of the chunk's first line, bytes of whole lines)`` with CRLF normalised to LF."""
    lineno = 1
    rest = b""
    try:
        with open_binary(path) as f:
            while True:
                block = f.read(chunk_bytes)
                if not block:
                    break
                data = rest + block
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    rest = data
                    continue
                chunk, rest = data[:cut], data[cut:]
                yield lineno, chunk.replace(b"\r\n", b"\n")
                lineno += chunk.count(b"\n")
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read: {e}") from e
    if rest:
        yield lineno, rest.replace(b"\r\n", b"\n") + b"\n"


def _line_at(data: bytes, offset: int) -> str:
    start = data.rfind(b"\n", 0, offset) + 1
    end = data.find(b"\n", offset)
    return data[start : end if end >= 0 else len(data)].decode("utf-8", errors="replace")


def _fail(path: Path, data: bytes, first: int, offset: int, problem: str) -> DataError:
    lineno = first + data.count(b"\n", 0, offset)
    return DataError(f"{path}:{lineno}: {problem}: {_line_at(data, offset)!r}")


def validate_chunk(path: Path, data: bytes, first: int, delimiter: str, num_fields: int) -> None:
    """Raise DataError for the first line with undecodable bytes, a wrong field count or an empty field.

    Blank lines are allowed (and skipped by the parser).
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _fail(path, data, first, e.start, "undecodable bytes (not UTF-8)") from None
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == NEWLINE)
    starts = np.concatenate(([0], ends[:-1] + 1))
    delims = np.flatnonzero(buf == ord(delimiter))
    fields = np.searchsorted(delims, ends) - np.searchsorted(delims, starts) + 1
    blank = ends == starts
    wrong = np.flatnonzero((fields != num_fields) & ~blank)
    if len(wrong):
        i = int(wrong[0])
        raise _fail(path, data, first, int(starts[i]), f"expected {num_fields} fields, found {int(fields[i])}")
    # An empty field sits between two adjacent boundaries (line start, delimiter, line end) on a non-blank line.
    bounds = np.sort(np.concatenate(([-1], delims, ends)))
    gaps = np.flatnonzero(np.diff(bounds) == 1)
    both_newlines = (buf[np.maximum(bounds[gaps], 0)] == NEWLINE) | (bounds[gaps] < 0)
    both_newlines &= buf[bounds[gaps + 1]] == NEWLINE
    empty = gaps[~both_newlines]
    if len(empty):
        raise _fail(path, data, first, int(bounds[empty[0]]) + 1, "empty field")


def _count_fields(data: bytes, delimiter: str) -> int:
    for line in data.split(b"\n"):
        if line:
            return line.count(delimiter.encode()) + 1
    return 0


def _parse_chunk(data: bytes, delimiter: str) -> np.ndarray:
    """Parse a validated chunk without quoting (quoted chunks take ``_parse_quoted_chunk``)."""
    frame = pd.read_csv(
        io.BytesIO(data), sep=delimiter, header=None, dtype=str, na_filter=False, engine="c",
        quoting=csv.QUOTE_NONE, skip_blank_lines=True, encoding="utf-8",
    )
    return frame.to_numpy(dtype=object)


def _parse_quoted_chunk(path: Path, data: bytes, first: int, delimiter: str, quotechar: str,
                        num_fields: int) -> np.ndarray:
    """Slow path for chunks with quoted fields: Python's csv module, line by line."""
    rows = []
    text = data.decode("utf-8", errors="strict")
    for offset, row in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter, quotechar=quotechar)):
        if not row:
            continue
        if len(row) != num_fields or any(not x for x in row):
            problem = "empty field" if len(row) == num_fields else f"expected {num_fields} fields, found {len(row)}"
            raise DataError(f"{path}:{first + offset}: {problem}: {delimiter.join(row)!r}")
        rows.append(row)
    return np.asarray(rows, dtype=object).reshape(-1, num_fields)


def iter_label_chunks(
    path: str | os.PathLike[str], *, delimiter: str = "\t", header: bool = False,
    columns: Sequence[int | str] = (0, 1, 2), quotechar: str | None = None, chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[np.ndarray]:
    """Yield ``(m, 3)`` object arrays of (head, relation, tail) labels from a delimited file.

    ``columns`` picks the head, relation and tail columns by position, or by name when ``header`` is true.
    Every line must have the same number of fields as the first one.
    """
    path = Path(path)
    if len(delimiter) != 1:
        raise DataError(f"delimiter must be one character, got {delimiter!r}")
    num_fields = 0
    picks: list[int] = []
    empty = True
    for first, data in iter_line_chunks(path, chunk_bytes):
        if not num_fields:
            num_fields = _count_fields(data, delimiter)
            if not num_fields:
                continue
            data, first, picks = _resolve_header(path, data, first, delimiter, header, columns, num_fields)
        if quotechar and quotechar.encode() in data:
            labels = _parse_quoted_chunk(path, data, first, delimiter, quotechar, num_fields)
        else:
            validate_chunk(path, data, first, delimiter, num_fields)
            if not data.strip(b"\n"):
                continue
            labels = _parse_chunk(data, delimiter)
        if len(labels):
            empty = False
            yield labels[:, picks]
    if empty:
        raise DataError(f"{path}: no triples in file (it is empty)")


def _resolve_header(path: Path, data: bytes, first: int, delimiter: str, header: bool,
                    columns: Sequence[int | str], num_fields: int) -> tuple[bytes, int, list[int]]:
    """Skip the header line if there is one and turn ``columns`` into positions."""
    names: list[str] = []
    if header:
        data = data.lstrip(b"\n")
        first_line, _, data = data.partition(b"\n")
        names = first_line.decode("utf-8", errors="replace").split(delimiter)
        first += 1
    if len(columns) != 3:
        raise DataError(f"columns must name 3 columns (head, relation, tail), got {list(columns)}")
    picks = []
    for col in columns:
        if isinstance(col, str):
            if col not in names:
                raise DataError(f"{path}: no column {col!r} in header {names}")
            picks.append(names.index(col))
        elif not 0 <= col < num_fields:
            raise DataError(f"{path}:{first}: column {col} out of range for {num_fields} fields")
        else:
            picks.append(col)
    return data, first, picks


def order_to_columns(order: str) -> tuple[int, int, int]:
    """Column positions of h, r, t for a DGL-KE style order string such as 'hrt' or 'htr'."""
    if sorted(order) != ["h", "r", "t"]:
        raise DataError(f"order must be a permutation of 'hrt', got {order!r}")
    return order.index("h"), order.index("r"), order.index("t")


def read_id_dict(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a DGL-KE ``entities.dict``/``relations.dict`` (``id<TAB>label``) into labels indexed by id."""
    path = Path(path)
    chunks = list(iter_label_chunks(path, columns=(0, 1, 1)))
    table = np.concatenate(chunks)
    try:
        ids = table[:, 0].astype(np.int64)
    except ValueError:
        raise DataError(f"{path}: the first column must be integer ids") from None
    if len(ids) and not np.array_equal(np.sort(ids), np.arange(len(ids))):
        raise DataError(f"{path}: ids must be 0..{len(ids) - 1}, each once")
    labels = np.empty(len(ids), dtype=object)
    labels[ids] = table[:, 1]
    return labels


def read_id_triples(path: str | os.PathLike[str], *, order: str = "hrt", delimiter: str = "\t") -> np.ndarray:
    """Read integer (h, r, t) triples (DGL-KE's ``udd_*`` formats) into an ``(n, 3)`` int64 array."""
    parts = []
    for chunk in iter_label_chunks(path, delimiter=delimiter, columns=order_to_columns(order)):
        try:
            parts.append(chunk.astype(np.int64))
        except ValueError:
            raise DataError(f"{path}: expected integer ids in every field") from None
    return np.concatenate(parts)


def frame_labels(frame: pd.DataFrame, columns: Sequence[str] = ("head", "relation", "tail")) -> np.ndarray:
    """The ``(n, 3)`` label array of a DataFrame's head, relation and tail columns (checked for gaps)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"DataFrame has no column(s) {missing}; it has {list(frame.columns)}")
    sub = frame.loc[:, list(columns)]
    bad = sub.isna().any(axis=1).to_numpy() | (sub.astype(str) == "").any(axis=1).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"DataFrame row {frame.index[row]!r}: empty field: {sub.iloc[row].tolist()}")
    return sub.astype(str).to_numpy(dtype=object)
