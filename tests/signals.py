"""Test helpers: an approach that sends SIGTERM to this process during one of its steps, and a subprocess
killed once it has saved a checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def sigterm_at(approach: Any, at: int) -> Any:
    """``approach``, sending SIGTERM to this process during its ``at``-th step (the same maths otherwise)."""
    step, calls = approach.step, [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == at:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(*args, **kwargs)

    approach.step = counted
    return approach


def kill_when_saved(code: str, folder: Path, pattern: str, timeout: float = 120) -> None:
    """Run ``code`` in a Python subprocess and SIGKILL it as soon as a file matching ``pattern`` appears in
    ``folder`` (a checkpoint it saved); failing if it ends first or ``timeout`` seconds pass."""
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + timeout
    while not list(folder.glob(pattern)):
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
