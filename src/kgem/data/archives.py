"""Split files from a download: the split files of a zip or tar archive (plain, gz, bz2, xz), told apart by the
archive's first bytes, not by its URL (figshare's download links have no suffix); named members of an archive; a
selection of a file's columns; and a seeded split of a dataset published as one file of facts.

No path stored in an archive is used to write a file: only regular files named like a split (``train.txt``,
``valid.tsv``, ``test.csv.gz``, ...) in the expected folder, or the members a dataset names, are read, and they are
written into the destination under a name of a split. An archive that holds an absolute path or one with ``..`` is
refused as malformed.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, cast

from kgem.data.dataset import SPLITS, SUFFIXES, Dataset
from kgem.data.imports import META
from kgem.data.readers import open_binary
from kgem.errors import DataError

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first local file header, or the end record of an empty zip
SPLIT_NAMES = frozenset(f"{split}{suffix}" for split in SPLITS for suffix in SUFFIXES)
WHOLE = "all"  # the name of a dataset's one file of facts, which ``split_whole`` splits into train/valid/test

# A member: its path in the archive, and how to open it (None for anything but a regular file).
Member = tuple[PurePosixPath, Callable[[], IO[bytes]] | None]


def has_train(folder: Path) -> bool:
    """Whether ``folder`` holds a training file under a name ``Dataset.from_folder`` reads, or is an imported
    dataset (``kgem.data.imports``: what ``DatasetInfo.prepare`` writes for OGB's datasets)."""
    return (folder / META).is_file() or any((folder / f"train{suffix}").is_file() for suffix in SUFFIXES)


def find_file(folder: Path, name: str) -> Path | None:
    """``folder/<name><suffix>`` for the first suffix ``Dataset.from_folder`` reads that is there."""
    return next((folder / f"{name}{suffix}" for suffix in SUFFIXES if (folder / f"{name}{suffix}").is_file()), None)


def extract_splits(archive: Path, dest: Path, inner: str = "", *, source: str | None = None) -> None:
    """Copy the split files in the ``inner`` folder of a zip or tar ``archive`` into ``dest``.

    ``source`` names the archive in errors (its URL; default: its path)."""
    label = source or str(archive)
    folder = PurePosixPath(inner.strip("/"))
    with safe_members(archive, label) as found:
        for path, opener in found:
            if opener is not None and path.name in SPLIT_NAMES and path.parent == folder:
                copy_member(opener, dest / path.name)
    if not has_train(dest):
        where = f"{folder}/" if folder.parts else ""
        raise DataError(f"{label}: no {where}train.txt (or .tsv, .csv) in the archive "
                        f"(it holds {[str(path) for path, _ in found][:10]})")


def extract_members(archive: Path, dest: Path, members: Mapping[str, str], *, source: str | None = None) -> None:
    """Copy the ``members`` of a zip or tar ``archive`` (split name -> path in the archive) into ``dest`` as
    ``<split>.txt``: the files of datasets whose archives do not name them like splits. They are read as
    tab-separated (gzip is recognised by its first bytes)."""
    label = source or str(archive)
    wanted = {PurePosixPath(path): split for split, path in members.items()}
    with safe_members(archive, label) as found:
        for path, opener in found:
            if opener is not None and path in wanted:
                copy_member(opener, dest / f"{wanted[path]}.txt")
    missing = [path for split, path in members.items() if not (dest / f"{split}.txt").is_file()]
    if missing:
        raise DataError(f"{label}: no {missing[0]} in the archive (it holds {[str(path) for path, _ in found][:10]})")


def copy_member(opener: Callable[[], IO[bytes]], dest: Path) -> None:
    with opener() as source_file, open(dest, "wb") as out:
        shutil.copyfileobj(source_file, out)


@contextmanager
def safe_members(archive: Path, label: str) -> Iterator[list[Member]]:
    """The archive's members, once none of their paths leaves the archive's folder; a DataError naming ``label``
    for a path that does, or an archive that is neither a readable zip nor tar."""
    try:
        with members(archive) as found:
            for path, _ in found:
                if path.is_absolute() or ".." in path.parts:
                    raise DataError(f"{label}: refused: the archive holds {str(path)!r}, a path outside its folder")
            yield found
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, NotImplementedError, OSError, EOFError) as e:
        raise DataError(f"{label}: corrupt archive (neither a readable zip nor tar): {e}") from e


@contextmanager
def members(archive: Path) -> Iterator[list[Member]]:
    """The members of a zip or a tar archive, told apart by its first bytes. Paths read ``\\`` as ``/``, as
    zips made on Windows write them."""
    with open(archive, "rb") as f:
        magic = f.read(4)
    if magic in ZIP_MAGIC:
        with zipfile.ZipFile(archive) as zf:
            yield [(member_path(i.filename),
                    None if i.is_dir() or stat.S_ISLNK(i.external_attr >> 16) else partial(zf.open, i))
                   for i in zf.infolist()]
    else:
        with tarfile.open(archive) as tar:  # a regular file's extractfile is never None
            yield [(member_path(m.name), cast(Callable[[], IO[bytes]], partial(tar.extractfile, m))
                    if m.isfile() else None) for m in tar.getmembers()]


def member_path(name: str) -> PurePosixPath:
    return PurePosixPath(name.replace("\\", "/"))


def keep_columns(folder: Path, columns: Sequence[int], *, header: bool = False) -> None:
    """Rewrite each split file in ``folder`` (and a ``WHOLE`` file) as ``<name>.tsv`` with only ``columns``, in
    that order (head, relation, tail), dropping a first line of column names if ``header``: the files of datasets
    with more columns than a triple, which may be empty (a missing score) and so unreadable as they are. Fields
    are split at tabs, or at commas in a ``.csv`` file."""
    for name in (*SPLITS, WHOLE):
        path = find_file(folder, name)
        if path is not None:
            comma = path.name.endswith((".csv", ".csv.gz"))
            target = folder / f"{name}.tsv.part"
            _select(path, target, list(columns), b"," if comma else b"\t", header)
            path.unlink()
            target.replace(folder / f"{name}.tsv")


def _select(path: Path, target: Path, columns: list[int], delimiter: bytes, header: bool) -> None:
    """Write the ``columns`` of each line of ``path`` to ``target``, tab-separated; blank lines are skipped."""
    need = max(columns) + 1
    with open_binary(path) as lines, open(target, "wb") as out:
        for number, line in enumerate(lines, start=1):
            fields = line.rstrip(b"\r\n").split(delimiter)
            if (header and number == 1) or fields == [b""]:
                continue
            if len(fields) < need:
                text = line.decode("utf-8", errors="replace").rstrip()
                raise DataError(f"{path}:{number}: expected at least {need} fields, found {len(fields)}: {text!r}")
            out.write(b"\t".join(fields[c] for c in columns) + b"\n")


def split_whole(folder: Path, ratios: Sequence[float], *, seed: int) -> None:
    """Split the ``WHOLE`` file of facts in ``folder`` into ``train.tsv``, ``valid.tsv`` and ``test.tsv`` by
    ``ratios`` (``Dataset.from_split``: duplicates dropped, one seeded shuffle, every entity and relation kept in
    train, so valid and test have nothing unseen). The same file and seed give the same split."""
    path = find_file(folder, WHOLE)
    if path is None:
        raise DataError(f"{folder}: the download holds no {WHOLE}.txt (or .tsv, .csv) to split")
    dataset = Dataset.from_split(path, ratios, seed=seed, name=folder.name)
    for split, triples in dataset.splits().items():
        triples.write(folder / f"{split}.tsv")
    path.unlink()
