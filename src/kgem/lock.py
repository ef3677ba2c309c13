"""An exclusive OS lock on a run folder, held by the one run that trains into it.

``flock`` on the folder itself (no lock file to clean up): the kernel releases it when the holder closes it, exits
or dies, even by SIGKILL, so a crashed run never leaves a stale lock. Two opens of the same folder conflict even
within one process. On Windows, which has no ``flock``, the lock is not taken.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType

from kgem.errors import ConfigError, FolderLockedError


class FolderLock:
    """Create ``path`` if needed and lock it, or raise FolderLockedError at once; release with ``release()`` or by
    leaving the ``with`` block."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.fd: int | None = None
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise ConfigError(f"cannot use {self.path} as a run folder: {e.strerror}") from e
        if sys.platform == "win32":
            os.close(fd)
            return
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderLockedError(f"{self.path} is in use by another kgem run (a train or resume still running "
                                    f"there); wait for it to end or choose another output folder") from None
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the only descriptor of the open folder drops the lock
            self.fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()
