"""Range checks for the numeric arguments of models, losses and regularizers.

Each raises ``ValueError("NAME must ..., got VALUE")``, one line, at construction, so a bad value fails before any
training rather than as a shape error or a NaN deep inside a step; the factories prefix the config key.
"""

from __future__ import annotations

import math
import re
from numbers import Integral, Real
from typing import Any


def positive_int(name: str, value: Any) -> int:
    """A count or size: an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def optional_positive_int(name: str, value: Any, default: str) -> int | None:
    """``None`` (meaning ``default``) or a positive integer; 0 is refused rather than read as ``None``."""
    if value is None:
        return None
    try:
        return positive_int(name, value)
    except ValueError:
        raise ValueError(f"{name} must be a positive integer (or null: {default}), got {value!r}") from None


def number(name: str, value: Any) -> float:
    """A real number that is not a bool."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def finite(name: str, value: Any) -> float:
    """A finite real number (a margin, a gamma)."""
    x = number(name, value)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return x


def positive(name: str, value: Any) -> float:
    """A finite number > 0 (a scale, a variance bound)."""
    x = number(name, value)
    if not (x > 0 and math.isfinite(x)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return x


def non_negative(name: str, value: Any) -> float:
    """A finite number >= 0 (a regularizer weight, a temperature)."""
    x = number(name, value)
    if not (x >= 0 and math.isfinite(x)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return x


def probability(name: str, value: Any) -> float:
    """A drop rate in [0, 1): at 1 every unit would be dropped."""
    x = number(name, value)
    if not 0 <= x < 1:
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
    return x


def norm_order(value: Any, power_norm: bool = False, name: str = "p") -> float:
    """The ``p`` of an Lp distance: > 0; ``inf`` (the largest coordinate) only as a norm, since ``|x|^inf`` (the
    ``power_norm`` score ``||x||_p^p``) is 0 or infinite."""
    p = number(name, value)
    if not p > 0:
        raise ValueError(f"{name} must be > 0 (the order of an Lp norm), got {value!r}")
    if power_norm and math.isinf(p):
        raise ValueError(f"{name} must be finite with power_norm=True (||x||_p^p), got {value!r}")
    return p



DURATION_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
DURATION_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)")
DURATION_HINT = "seconds or a duration such as 90s, 20m, 1.5h or 1h30m"


def duration(name: str, value: Any) -> float:
    """Seconds from a positive number of seconds or a text such as ``90s``, ``20m``, ``1.5h``, ``1h30m``."""
    if isinstance(value, Real) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text, seconds, position = value.strip().lower(), 0.0, 0
        while position < len(text):
            part = DURATION_PART.match(text, position)
            if part is None or part.group(2) not in ("", *DURATION_UNITS):
                raise ValueError(f"{name} must be {DURATION_HINT}, got {value!r}")
            seconds += float(part.group(1)) * DURATION_UNITS[part.group(2) or "s"]
            position = part.end()
        if not text:
            raise ValueError(f"{name} must be {DURATION_HINT}, got {value!r}")
    else:
        raise ValueError(f"{name} must be {DURATION_HINT}, got {value!r}")
    if not 0 < seconds < math.inf:
        raise ValueError(f"{name} must be a positive, finite duration, got {value!r}")
    return seconds
