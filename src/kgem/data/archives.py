"""The split files of a downloaded archive: zip or tar (plain, gz, bz2, xz), told apart by the archive's first bytes,
not by its URL (figshare's download links have no suffix).

No path stored in an archive is used to write a file: only regular files named like a split (``train.txt``,
``valid.tsv``, ``test.csv.gz``, ...) in the expected folder are read, and they are written into the destination
under that base name. An archive that holds an absolute path or one with ``..`` is refused as malformed.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, cast

from kgem.data.dataset import SPLITS, SUFFIXES
from kgem.errors import DataError

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first local file header, or the end record of an empty zip
SPLIT_NAMES = frozenset(f"{split}{suffix}" for split in SPLITS for suffix in SUFFIXES)

# A member: its path in the archive, and how to open it (None for anything but a regular file).
Member = tuple[PurePosixPath, Callable[[], IO[bytes]] | None]


def has_train(folder: Path) -> bool:
    """Whether ``folder`` holds a training file under a name ``Dataset.from_folder`` reads."""
    return any((folder / f"train{suffix}").is_file() for suffix in SUFFIXES)


def extract_splits(archive: Path, dest: Path, inner: str = "", *, source: str | None = None) -> None:
    """Copy the split files in the ``inner`` folder of a zip or tar ``archive`` into ``dest``.

    ``source`` names the archive in errors (its URL; default: its path)."""
    label = source or str(archive)
    folder = PurePosixPath(inner.strip("/"))
    try:
        with members(archive) as found:
            for path, _ in found:
                if path.is_absolute() or ".." in path.parts:
                    raise DataError(f"{label}: refused: the archive holds {str(path)!r}, a path outside its folder")
            for path, opener in found:
                if opener is not None and path.name in SPLIT_NAMES and path.parent == folder:
                    with opener() as source_file, open(dest / path.name, "wb") as out:
                        shutil.copyfileobj(source_file, out)
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, NotImplementedError, OSError, EOFError) as e:
        raise DataError(f"{label}: corrupt archive (neither a readable zip nor tar): {e}") from e
    if not has_train(dest):
        where = f"{folder}/" if folder.parts else ""
        raise DataError(f"{label}: no {where}train.txt (or .tsv, .csv) in the archive "
                        f"(it holds {[str(path) for path, _ in found][:10]})")


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
