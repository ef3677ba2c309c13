"""Numeric attributes of entities (literals), read into a dense matrix for the LiteralE models.

A literal file has one value a line, ``entity<TAB>attribute<TAB>value`` (gz, CRLF and a UTF-8 BOM accepted, blank
lines skipped, as the triples readers read files). It is read against the entity vocabulary of a dataset into a
float32 matrix ``(num_entities, num_attributes)``: row = entity id, column = attribute id (the attributes sorted by
label), 0 where an entity has no value. Each column is then min-max normalised over all its rows, the zeros of
missing values included, as LiteralE's code does (``(x - min) / (max - min)``; a constant column becomes 0), so
every value the model sees lies in [0, 1].

A bad line is a DataError naming ``file:line``: a wrong field count or an empty field, a value that is not a finite
number, an entity the dataset lacks (with ``on_unknown="error"``; by default such lines are dropped with a
warning that counts them, as the triples readers drop unseen entities) and a second value of the same entity and
attribute (naming both lines).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kgem.data.readers import iter_line_chunks, validate_chunk
from kgem.data.triples import OnUnseen
from kgem.data.vocab import Vocabulary
from kgem.errors import DataError

log = logging.getLogger("kgem")

FIELDS = 3  # entity, attribute, value


@dataclass(frozen=True)
class Literals:
    """``values (num_entities, num_attributes)`` float32, rows in the entity vocabulary's order and columns in
    ``attributes``' order; ``source``: where they were read from."""

    values: torch.Tensor
    attributes: Vocabulary
    source: str = ""

    def __repr__(self) -> str:
        return f"Literals({self.source}: {self.values.shape[0]} entities x {len(self.attributes)} attributes)"


def read_literals(path: str | os.PathLike[str], entities: Vocabulary, *, on_unknown: OnUnseen = "drop",
                  normalize: bool = True) -> Literals:
    """The attribute file ``path`` (``entity<TAB>attribute<TAB>value`` lines) as a matrix over ``entities``.
    ``on_unknown``: lines of entities that ``entities`` lacks are dropped with a warning (``drop``) or an error;
    ``normalize``: min-max normalise each column (LiteralE), or keep the values as read."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (numeric attributes: entity<TAB>attribute<TAB>value lines)")
    fields, lines = [], []
    for first, data in iter_line_chunks(path):
        validate_chunk(path, data, first, "\t", FIELDS)
        text = data.decode("utf-8")  # validate_chunk checked it
        rows = text.split("\n")[:-1]  # every chunk ends with a LF
        numbers = [first + i for i, row in enumerate(rows) if row]
        fields += [row.split("\t") for row in rows if row]
        lines += numbers
    if not fields:
        raise DataError(f"{path}: no attribute values in file (it is empty)")
    table = np.asarray(fields, dtype=object)
    return _literals(table[:, 0], table[:, 1], table[:, 2], lambda i: f"{path}:{lines[i]}", entities,
                     on_unknown, normalize, str(path))


def literals_from_df(frame: pd.DataFrame, entities: Vocabulary, *,
                     columns: tuple[str, str, str] = ("entity", "attribute", "value"), on_unknown: OnUnseen = "drop",
                     normalize: bool = True, source: str = "<DataFrame>") -> Literals:
    """``read_literals`` for a DataFrame with entity, attribute and value ``columns``; errors name the row."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DataError(f"{source}: no column(s) {missing}; it has {list(frame.columns)}")
    if not len(frame):
        raise DataError(f"{source}: no attribute values (the DataFrame is empty)")
    entity, attribute, value = (frame[column].to_numpy(dtype=object) for column in columns)
    return _literals(entity.astype(str).astype(object), attribute.astype(str).astype(object), value,
                     lambda i: f"{source} row {frame.index[i]!r}", entities, on_unknown, normalize, source)


def _literals(entity: np.ndarray, attribute: np.ndarray, raw: np.ndarray, where: Callable[[int], str],
              entities: Vocabulary, on_unknown: OnUnseen, normalize: bool, source: str) -> Literals:
    """The matrix of rows ``(entity[i], attribute[i], raw[i])``; ``where(i)``: the place of row ``i`` in errors."""
    if on_unknown not in ("error", "drop"):
        raise DataError(f"on_unknown must be 'error' or 'drop', got {on_unknown!r}")
    values = pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        i = int(bad[0])
        hint = " (a header line? remove it)" if where(i).endswith(":1") else ""
        raise DataError(f"{where(i)}: value {raw[i]!r} of {entity[i]!r} {attribute[i]!r} is not a finite "
                        f"number{hint}")
    ids = entities.lookup(entity)
    keep = _known(ids, entity, where, entities, on_unknown, source)
    if not keep.any():
        raise DataError(f"{source}: none of its {len(ids)} values is of an entity of the dataset (e.g. "
                        f"{entity[0]!r}); is it the attribute file of another dataset?")
    rows = np.flatnonzero(keep)
    attributes = Vocabulary.from_labels(attribute[rows], kind="attribute")
    columns = attributes.lookup(attribute[rows])
    _check_duplicates(ids[rows], columns, rows, entity, attribute, where)
    matrix = np.zeros((len(entities), len(attributes)), dtype=np.float64)
    matrix[ids[rows], columns] = values[rows]
    if normalize:
        matrix = min_max(matrix)
    return Literals(torch.from_numpy(matrix.astype(np.float32)), attributes, source)


def _known(ids: np.ndarray, entity: np.ndarray, where: Callable[[int], str], entities: Vocabulary,
           on_unknown: OnUnseen, source: str) -> np.ndarray:
    """The mask of rows whose entity ``entities`` knows; the others raise (``error``) or are counted in a
    warning (``drop``)."""
    unknown = np.flatnonzero(ids < 0)
    if not len(unknown):
        return np.ones(len(ids), dtype=bool)
    i = int(unknown[0])
    if on_unknown == "error":
        raise DataError(f"{where(i)}: unknown entity {entity[i]!r}{entities.suggest(str(entity[i]))}; pass "
                        f"on_unknown='drop' to leave out the values of entities the dataset lacks")
    log.warning("%s: dropped %d of %d attribute values of entities the dataset lacks, e.g. %r at %s "
                "(on_unknown='error' makes this an error)", source, len(unknown), len(ids), entity[i], where(i))
    return ids >= 0


def _check_duplicates(ids: np.ndarray, columns: np.ndarray, rows: np.ndarray, entity: np.ndarray,
                      attribute: np.ndarray, where: Callable[[int], str]) -> None:
    """A DataError for the first (in file order) second value of an entity and attribute, naming both places."""
    keys = ids * max(1, int(columns.max()) + 1) + columns
    order = np.argsort(keys, kind="stable")  # equal keys keep their file order
    repeats = np.flatnonzero(keys[order][1:] == keys[order][:-1]) + 1
    if not len(repeats):
        return
    at = int(repeats[np.argmin(order[repeats])])
    first, second = int(rows[order[at - 1]]), int(rows[order[at]])
    raise DataError(f"{where(second)}: a second value of {entity[second]!r} {attribute[second]!r} (the first is at "
                    f"{where(first)})")


def min_max(matrix: np.ndarray) -> np.ndarray:
    """Each column mapped to [0, 1] by ``(x - min) / (max - min)``; a constant column becomes 0."""
    low, high = matrix.min(axis=0), matrix.max(axis=0)
    span = high - low
    return (matrix - low) / np.where(span > 0, span, 1.0)
