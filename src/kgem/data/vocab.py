"""Vocabulary: a bijection between labels (strings) and contiguous integer ids."""

from __future__ import annotations

import difflib
import filecmp
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from kgem.atomic import atomic_write
from kgem.errors import DataError

# A label is one TSV field: C0 control characters (tab, LF, CR, NUL, ...) would split or corrupt its line.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # C0, DEL, C1, line/paragraph separators


def label_problem(label: str) -> str | None:
    """Why ``label`` cannot be a label (one field of a UTF-8 TSV line), or None."""
    if not label:
        return "empty label"
    found = CONTROL.search(label)
    if found:
        return f"control character {found.group()!r} in a label"
    if not encodable(label):
        return "not encodable as UTF-8 (a lone surrogate)"
    return None


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Vocabulary:
    """Labels in id order, with a hash index for label -> id (no Python dict per label).

    ``Vocabulary.from_labels`` sorts the labels, so the same set of labels always gets the same ids.
    """

    def __init__(self, labels: Sequence[str] | np.ndarray, *, kind: str = "label") -> None:
        index = pd.Index(np.asarray(labels, dtype=object), dtype=object)
        if not index.is_unique:
            dup = index[index.duplicated()][0]
            raise DataError(f"{kind} vocabulary has duplicate label {dup!r}")
        self.index = index
        self.kind = kind

    @classmethod
    def from_labels(cls, labels: Iterable[str] | np.ndarray, *, kind: str = "label") -> Vocabulary:
        """Build a vocabulary of the distinct labels, sorted (deterministic ids)."""
        array = labels if isinstance(labels, np.ndarray) else np.asarray(list(labels), dtype=object)
        return cls(np.sort(pd.unique(array.astype(object))), kind=kind)

    def __len__(self) -> int:
        return len(self.index)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and (other is self or self.index.equals(other.index))

    def __repr__(self) -> str:
        return f"Vocabulary({self.kind}, {len(self)} labels)"

    @property
    def labels(self) -> np.ndarray:
        """All labels, position = id."""
        return self.index.to_numpy()

    def lookup(self, labels: Sequence[str] | np.ndarray) -> np.ndarray:
        """Ids of ``labels`` as int64; unknown labels get -1."""
        return self.index.get_indexer(np.asarray(labels, dtype=object)).astype(np.int64)

    def ids(self, labels: Sequence[str] | np.ndarray) -> np.ndarray:
        """Ids of ``labels``; an unknown label raises a DataError that suggests close matches."""
        ids = self.lookup(labels)
        if (ids < 0).any():
            bad = str(np.asarray(labels, dtype=object)[int(np.flatnonzero(ids < 0)[0])])
            raise DataError(f"unknown {self.kind} {bad!r}{self.suggest(bad)}")
        return ids

    def suggest(self, label: str) -> str:
        """A ' (did you mean ...?)' hint for an unknown label, or ''."""
        pool = self.labels if len(self) <= 200_000 else self.labels[:200_000]
        close = difflib.get_close_matches(label, [str(x) for x in pool], n=3)
        return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""

    def to_labels(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        return self.labels[np.asarray(ids, dtype=np.int64)]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``id<TAB>label`` lines atomically; a label ``load`` could not read back is a DataError."""
        text = [str(x) for x in self.labels]
        joined = "".join(text)
        if CONTROL.search(joined) or not all(text) or not encodable(joined):
            i, problem = next((i, p) for i, x in enumerate(text) if (p := label_problem(x)))
            raise DataError(f"cannot save {self.kind} vocabulary as TSV to {path}: label {i} {text[i]!r}: {problem}")
        with atomic_write(path) as f:
            for i, label in enumerate(text):
                f.write(f"{i}\t{label}\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, kind: str = "label") -> Vocabulary:
        """Read a vocabulary written by ``save`` (ids must be 0..n-1 in order)."""
        path = Path(path)
        labels: list[str] = []
        with open(path, encoding="utf-8", newline="") as f:
            for lineno, line in enumerate(f, start=1):
                parts = line.rstrip("\r\n").split("\t")
                if len(parts) != 2 or parts[0] != str(lineno - 1) or not parts[1]:
                    raise DataError(f"{path}:{lineno}: expected '{lineno - 1}<TAB>label', got {line.rstrip()!r}")
                labels.append(parts[1])
        return cls(labels, kind=kind)


class FileVocabulary(Vocabulary):
    """A vocabulary saved as ``id<TAB>label`` lines whose labels are read only when first asked for: training and
    evaluation by ids never need them, and 40 million labels cost some 5 GB in memory. Its length is counted from
    the file's lines; saving it copies the file; two compare equal by their files' bytes until one is read."""

    def __init__(self, path: str | os.PathLike[str], *, kind: str = "label") -> None:
        self.path, self.kind = Path(path), kind
        self._index: pd.Index | None = None
        with open(self.path, "rb") as f:
            self._size = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b""))

    @property
    def index(self) -> pd.Index:
        if self._index is None:
            loaded = Vocabulary.load(self.path, kind=self.kind)
            if len(loaded) != self._size:
                raise DataError(f"{self.path}: changed while open ({len(loaded)} labels, {self._size} before)")
            self._index = loaded.index
        return self._index

    def __len__(self) -> int:
        return self._size

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FileVocabulary) and self._index is None and other._index is None:
            return other is self or (len(self) == len(other) and filecmp.cmp(self.path, other.path, shallow=False))
        return super().__eq__(other)

    def save(self, path: str | os.PathLike[str]) -> None:
        if self._index is not None:
            super().save(path)
            return
        with atomic_write(path, "wb") as out, open(self.path, "rb") as f:
            shutil.copyfileobj(f, out, 1 << 24)
