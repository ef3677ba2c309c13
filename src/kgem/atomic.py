"""Atomic writes: write to a temporary file beside the target, then rename over it.

Temporary files and directories are created with the modes ``open`` and ``mkdir`` use (0o666 / 0o777 less the
umask), not ``tempfile``'s private 0o600 / 0o700, because they become the published files: a saved model or run
folder must be as readable as anything else the user writes.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

ATTEMPTS = 100


def temp_file(directory: str | os.PathLike[str], prefix: str = "", suffix: str = ".tmp") -> Path:
    """Create a new empty file with a random name in ``directory``, mode 0o666 less the umask."""
    return _create_unused(Path(directory), prefix, suffix,
                          lambda path: os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)))


def temp_dir(directory: str | os.PathLike[str], prefix: str = "", suffix: str = ".tmp") -> Path:
    """Create a new empty directory with a random name in ``directory``, mode 0o777 less the umask."""
    return _create_unused(Path(directory), prefix, suffix, lambda path: os.mkdir(path, 0o777))


def _create_unused(directory: Path, prefix: str, suffix: str, create: Callable[[Path], None]) -> Path:
    for _ in range(ATTEMPTS):
        path = directory / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            create(path)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no unused temporary name in {directory} after {ATTEMPTS} tries")


def umask() -> int:
    """The process's umask, read without changing it where Linux shows it (setting it to read it back would
    race with other threads creating files)."""
    with contextlib.suppress(OSError, ValueError, StopIteration), open("/proc/self/status", encoding="ascii") as status:
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def chmod_as_created(path: str | os.PathLike[str]) -> None:
    """Give a file written by a library that creates it privately (safetensors: 0o600) the mode ``open`` would
    have given it, 0o666 less the umask."""
    os.chmod(path, 0o666 & ~umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary file name beside ``path``, for a writer that wants a name (e.g. a compiler's ``-o``); on success
    the file replaces ``path`` in one rename, on error it is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_file(target.parent, prefix=f".{target.name}.")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file for writing; on success it replaces ``path`` in one rename, on error it is removed.

    A crash at any point leaves either the old file or the new one, never a half-written file.
    """
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else encoding) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A new empty folder beside ``path`` to fill (checkpoints, downloads, saved models); on success it takes the
    place of ``path``, on error it is removed and ``path`` is as it was. See ``swap_into_place`` for a crash."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = temp_dir(target.parent, prefix=f".{target.name}.")
    try:
        yield staging
        fsync_dir(staging)
        swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def swap_into_place(new: Path, target: Path) -> None:
    """Move an existing ``target`` aside, rename ``new`` in, then delete the old one.

    Between the two renames the old folder exists only as ``.<name>.<hex>.old`` (``old_copies`` finds it after a
    crash there); if the second rename fails, the old folder is moved back.
    """
    old: Path | None = None
    if target.exists():
        old = target.with_name(f".{target.name}.{secrets.token_hex(4)}.old")
        os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def old_copies(path: str | os.PathLike[str]) -> list[Path]:
    """The folders that a crash inside ``swap_into_place`` left aside for ``path``, oldest name first."""
    target = Path(path)
    return sorted(target.parent.glob(f".{target.name}.*.old")) if target.parent.is_dir() else []


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush directory entries (new names, renames); Windows cannot open a directory for this, so skip there."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
