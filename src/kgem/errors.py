"""Every error kgem raises for a problem the user can fix (bad input, unknown names, bad config, a run that cannot
go on), in one module that imports nothing, so any layer can raise them. The CLI prints a KgemError as one line
and exits with code 2."""

from __future__ import annotations


class KgemError(Exception):
    """Base class: a user-facing problem with a one-line, actionable message."""


class DataError(KgemError, ValueError):
    """Malformed or inconsistent input data: names the file, the line and the problem where known."""


class ConfigError(KgemError, ValueError):
    """An invalid configuration value, unknown key or unknown registered name."""


class ModelFileError(KgemError, ValueError):
    """A model directory that cannot be saved to or loaded from: names the file and the problem."""


class CheckpointError(KgemError):
    """A checkpoint is missing, truncated or corrupt, or no longer fits the model."""


class TrainingError(KgemError):
    """Training cannot go on (e.g. the loss became NaN or infinite, a HOGWILD worker failed)."""


class TrainingInterrupted(KgemError):
    """Training stopped on SIGTERM/SIGINT after saving a checkpoint."""


class EvaluationError(KgemError, ValueError):
    """Evaluation cannot produce meaningful ranks: NaN scores, bad query ids or inconsistent inputs."""


class FolderLockedError(KgemError):
    """Another run holds the run folder."""


class UnknownLabel(DataError):
    """A label the model does not know, with the ``suggestions`` closest to it (``kgem serve`` answers 404)."""

    def __init__(self, kind: str, label: str, suggestions: list[str]) -> None:
        hint = f" (did you mean {', '.join(map(repr, suggestions))}?)" if suggestions else ""
        super().__init__(f"unknown {kind} {label!r}{hint}")
        self.kind, self.label, self.suggestions = kind, label, suggestions


class TooLarge(KgemError):
    """A request beyond the server's limits (``k``, a batch, the cost of a scan); ``kgem serve`` answers 422."""
