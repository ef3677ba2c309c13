"""A test helper: an approach that sends SIGTERM to this process during one of its steps."""

from __future__ import annotations

import os
import signal
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
