"""Readers: delimited text files (TSV/CSV, gz, LF/CRLF), DGL-KE's formats and pandas DataFrames.

Files are read in chunks of whole lines. Each chunk is validated with vectorised numpy (field counts, empty
fields, UTF-8) so that a bad line is reported with its file, line number and text, then parsed by pandas' C
parser. Labels only live as Python strings for one chunk; what is kept is int64 ids plus the vocabularies.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from kgem.data.vocab import CONTROL, encodable, label_problem
from kgem.errors import DataError

log = logging.getLogger("kgem")

CHUNK_BYTES = 32 * 2**20
NEWLINE = 10
BOM = b"\xef\xbb\xbf"
ExtraColumns = Literal["error", "ignore"]
# First-line labels that name columns rather than entities or relations (compared in lower case).
COLUMN_NAMES = frozenset({"head", "relation", "tail", "subject", "predicate", "object", "s", "p", "o", "h", "r",
                          "t", "source", "target", "src", "dst", "rel", "head_id", "relation_id", "tail_id"})


def open_binary(path: Path) -> io.BufferedIOBase:
    """Open ``path`` for reading bytes, transparently decompressing gzip (by magic bytes, not by name)."""
    raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    if raw.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw)
    return raw


def iter_line_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, bytes]]:
    """Yield ``(number of the chunk's first line, bytes of whole lines)`` with CRLF normalised to LF and a
    leading UTF-8 byte order mark removed."""
    lineno = 1
    rest = b""
    try:
        with open_binary(path) as f:
            head = f.read(len(BOM))
            rest = head.removeprefix(BOM)
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
    if rest:  # the last line has no LF; a CR there is its line ending
        yield lineno, (rest + b"\n").replace(b"\r\n", b"\n")


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
    check_text(path, data, first, delimiter)
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


def check_text(path: Path, data: bytes, first: int, delimiter: str, quoted: bool = False) -> str:
    """The chunk as text; DataError for undecodable bytes or (unless ``quoted``: the csv parser tells fields
    from quoting) a control character other than LF and the delimiter, which no label may hold."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _fail(path, data, first, e.start, "undecodable bytes (not UTF-8)") from None
    if not quoted:
        buf = np.frombuffer(data, dtype=np.uint8)
        bad = np.flatnonzero(((buf < 0x20) & (buf != NEWLINE) & (buf != ord(delimiter))) | (buf == 0x7F)
                             | _wide_controls(buf))
        if len(bad):
            char = data[bad[0]:].decode("utf-8", errors="replace")[0]
            raise _fail(path, data, first, int(bad[0]), f"control character {char!r} in a label")
    return text


def _wide_controls(buf: np.ndarray) -> np.ndarray:
    """Where the UTF-8 of a C1 control character (U+0080-U+009F: C2 80-9F) or of the line and paragraph separators
    (U+2028/9: E2 80 A8/A9) starts: line breaks to ``str.splitlines`` and to editors, so no label may hold them."""
    nxt = np.append(buf[1:], 0)
    after = np.append(buf[2:], [0, 0])
    return ((buf == 0xC2) & (nxt >= 0x80) & (nxt <= 0x9F)) | ((buf == 0xE2) & (nxt == 0x80) & ((after == 0xA8)
                                                                                            | (after == 0xA9)))


def _count_fields(data: bytes, delimiter: str, quotechar: str | None = None) -> int:
    for line in data.split(b"\n"):
        if line:
            return len(_split_line(line.decode("utf-8", errors="replace"), delimiter, quotechar))
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
    reader = csv.reader(io.StringIO(check_text(path, data, first, delimiter, quoted=True)), delimiter=delimiter,
                        quotechar=quotechar, strict=True)
    lineno = first
    try:
        for row in reader:
            if row:
                problem = _row_problem(row, num_fields)
                if problem:
                    raise DataError(f"{path}:{lineno}: {problem}: {delimiter.join(row)!r}")
                rows.append(row)
            lineno = first + reader.line_num
    except csv.Error as e:  # malformed quoting, or a CR in an unquoted field
        line = _line_at(data, _offset_of_line(data, lineno - first))
        found = CONTROL.search(line)
        problem = f"control character {found.group()!r} in a label" if found else f"bad quoting ({e})"
        raise DataError(f"{path}:{lineno}: {problem}: {line!r}") from None
    return np.asarray(rows, dtype=object).reshape(-1, num_fields)


def _row_problem(row: list[str], num_fields: int) -> str | None:
    if len(row) != num_fields:
        return f"expected {num_fields} fields, found {len(row)}"
    for field in row:
        found = CONTROL.search(field)
        if found or not field:
            return f"control character {found.group()!r} in a label" if found else "empty field"
    return None


def _offset_of_line(data: bytes, index: int) -> int:
    offset = 0
    for _ in range(index):
        offset = data.find(b"\n", offset) + 1
    return offset


def iter_label_chunks(
    path: str | os.PathLike[str], *, delimiter: str = "\t", header: bool = False,
    columns: Sequence[int | str] = (0, 1, 2), quotechar: str | None = None, extra_columns: ExtraColumns = "error",
    chunk_bytes: int = CHUNK_BYTES, weight: int | str | None = None,
) -> Iterator[np.ndarray]:
    """Yield ``(m, 3)`` object arrays of (head, relation, tail) labels from a delimited file.

    ``columns`` picks the head, relation and tail columns by position, or by name when ``header`` is true.
    ``weight`` picks one more, a number per edge: the arrays are then ``(m, 4)``, the 4th column floats (a field
    that is not a finite number is an error naming its line).
    Every line must have the same number of fields as the first one; more fields than ``columns`` uses are an
    error unless ``extra_columns="ignore"``. Without ``header``, a first line that looks like column names
    (``subject, predicate, object``, ...) found nowhere else in the file is read as a triple, with a warning.
    """
    path = Path(path)
    if len(delimiter) != 1:
        raise DataError(f"delimiter must be one character, got {delimiter!r}")
    if extra_columns not in ("error", "ignore"):
        raise DataError(f"extra_columns must be 'error' or 'ignore', got {extra_columns!r}")
    num_fields, top, empty = 0, 0, True
    picks: list[int] = []
    suspect: np.ndarray | None = None  # a first line that may be a header, until one of its labels recurs
    for first, data in iter_line_chunks(path, chunk_bytes):
        if not num_fields:
            num_fields = _count_fields(data, delimiter, quotechar)
            if not num_fields:
                continue
            stripped = data.lstrip(b"\n")
            top, data = first + len(data) - len(stripped), stripped  # top: the first non-blank line
            if b"\r" in data.split(b"\n", 1)[0].rstrip(b"\r"):  # CRLF arrives here as LF; a lone CR ends no line
                raise DataError(f"{path}:{top}: lines end with a bare CR (classic Mac OS); convert the file to LF "
                                f"or CRLF line endings")
            wanted = [*columns, *([] if weight is None else [weight])]
            data, first, picks = _resolve_header(path, data, top, delimiter, header, wanted, num_fields, quotechar)
            _check_extra_columns(path, top, num_fields, picks, wanted, extra_columns,
                                 quotes=quotechar is None and b'"' in data.split(b"\n", 1)[0])
        if quotechar and quotechar.encode() in data:
            labels = _parse_quoted_chunk(path, data, first, delimiter, quotechar, num_fields)
        else:
            validate_chunk(path, data, first, delimiter, num_fields)
            if not data.strip(b"\n"):
                continue
            labels = _parse_chunk(data, delimiter)
        if not len(labels):
            continue
        labels = rest = labels[:, picks]
        if weight is not None:
            labels[:, 3] = _numbers(path, data, first, labels[:, 3])
            rest = labels[:, :3]
        if empty and not header and _looks_like_header(labels[0, :3]):
            suspect, rest = labels[0], labels[1:]
        if suspect is not None and np.isin(rest[:, :3], suspect).any():
            suspect = None
        empty = False
        yield labels
    if empty:
        raise DataError(f"{path}: no triples in file (it is empty)")
    if suspect is not None:
        log.warning("%s:%d: the first line %s looks like a header (column names found nowhere else in the file) "
                    "and was read as a triple; pass header=True (config data.header: true, kgem train --header) "
                    "to skip it", path, top, list(suspect))


def _numbers(path: Path, data: bytes, first: int, fields: np.ndarray) -> np.ndarray:
    """The fields as float64, or a DataError naming the line of the first that is not a finite number."""
    values = pd.to_numeric(pd.Series(fields), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        lines = [i for i, line in enumerate(data.split(b"\n")) if line]  # the parser skips blank lines
        line = lines[int(bad[0])] if int(bad[0]) < len(lines) else 0
        hint = " (a header line? read it with header=True)" if first + line == 1 else ""
        raise DataError(f"{path}:{first + line}: edge weight {fields[bad[0]]!r} is not a finite number{hint}")
    return values


def _looks_like_header(row: np.ndarray) -> bool:
    names = [str(x).lower() for x in row]
    return len(set(names)) == len(names) and all(name in COLUMN_NAMES for name in names)


def _check_extra_columns(path: Path, line: int, num_fields: int, picks: list[int], columns: Sequence[int | str],
                         extra_columns: ExtraColumns, quotes: bool = False) -> None:
    """``quotes``: the first line holds a '"' that is not read as a quote, the likelier cause of extra fields."""
    if extra_columns == "error" and num_fields > len(set(picks)):
        quoting = (" If a quoted field holds the delimiter, read with quotechar='\"' (config data.quotechar, "
                   "kgem train --quotechar); otherwise" if quotes else ";")
        raise DataError(f"{path}:{line}: {num_fields} fields, but only {len(set(picks))} columns are read "
                        f"({list(columns)}).{quoting} extra columns: pass extra_columns='ignore' (config "
                        f"data.extra_columns: ignore) to read the file without them, or edge_weights=3 (config "
                        f"data.edge_weights: 3, kgem train --edge-weights 3) to read a 4th column of numbers as "
                        f"the edges' weights"
                        .replace(".; ", "; "))


def _resolve_header(path: Path, data: bytes, first: int, delimiter: str, header: bool, columns: Sequence[int | str],
                    num_fields: int, quotechar: str | None = None) -> tuple[bytes, int, list[int]]:
    """Skip the header line if there is one (``data`` starts with the first non-blank line) and turn ``columns``
    into positions."""
    names: list[str] = []
    if header:
        first_line, _, data = data.partition(b"\n")
        names = _split_line(first_line.decode("utf-8", errors="replace"), delimiter, quotechar)
        first += 1
    if len(columns) not in (3, 4):
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


def _split_line(line: str, delimiter: str, quotechar: str | None) -> list[str]:
    if quotechar:
        return next(csv.reader([line], delimiter=delimiter, quotechar=quotechar), [])
    return line.split(delimiter)


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


def read_id_triples(path: str | os.PathLike[str], *, order: str = "hrt", delimiter: str = "\t",
                    edge_weights: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read integer (h, r, t) triples (DGL-KE's ``udd_*`` formats) into an ``(n, 3)`` int64 array, and the
    ``edge_weights`` column (DGL-KE's edge importance: 3) into float64 values (None without one)."""
    parts, values = [], []
    for chunk in iter_label_chunks(path, delimiter=delimiter, columns=order_to_columns(order), weight=edge_weights):
        try:
            parts.append(chunk[:, :3].astype(np.int64))
        except ValueError:
            raise DataError(f"{path}: expected integer ids in every field") from None
        if edge_weights is not None:
            values.append(chunk[:, 3].astype(np.float64))
    return np.concatenate(parts), np.concatenate(values) if edge_weights is not None else None


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
    labels = sub.astype(str).to_numpy(dtype=object)
    flat = labels.ravel()
    for start in range(0, len(flat), 2**20):  # one regex scan per block; per label only to find the bad one
        joined = "".join(flat[start : start + 2**20])
        if CONTROL.search(joined) or not encodable(joined):
            i = next(i for i in range(start, len(flat)) if label_problem(flat[i]))
            row = i // labels.shape[1]
            raise DataError(f"DataFrame row {frame.index[row]!r}: {label_problem(flat[i])}: {sub.iloc[row].tolist()}")
    return labels
