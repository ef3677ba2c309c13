"""Errors that kgem raises for problems the user can fix (bad input, unknown names, bad config)."""

from __future__ import annotations


class KgemError(Exception):
    """Base class: a user-facing problem with a one-line, actionable message."""


class DataError(KgemError, ValueError):
    """Malformed or inconsistent input data: names the file, the line and the problem where known."""


class ConfigError(KgemError, ValueError):
    """An invalid configuration value, unknown key or unknown registered name."""
