"""The tracker interface, the registry of trackers, and ``Tracking``: the trackers of one run, each guarded."""

from __future__ import annotations

import importlib
import inspect
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from kgem.config import to_dict
from kgem.configs import TrackingConfig
from kgem.errors import ConfigError
from kgem.registry import Registry

log = logging.getLogger("kgem")


class Tracker(ABC):
    """One experiment tracker. Its constructor imports the tracker's package (a missing one is a ConfigError that
    names the extra) and takes ``experiment``, ``run_name``, ``folder`` (the run folder, or None: where a tracker
    writes local files by default) and the tracker's own settings (``tracking.args``), each a keyword-only argument
    of the subclass: a setting it does not declare is a ConfigError (``build``)."""

    def __init__(self, *, experiment: str, run_name: str, folder: Path | None, **args: Any) -> None:
        self.experiment, self.run_name, self.folder = experiment, run_name, folder

    @abstractmethod
    def start(self, params: Mapping[str, Any]) -> None:
        """Open the run and record its parameters (``flat_params``: dotted config keys to scalars)."""

    @abstractmethod
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record metrics: per epoch (``step`` = the epoch) or final (``step`` None)."""

    @abstractmethod
    def log_artifact(self, path: Path) -> None:
        """Keep a file of the run (its config, its result tables) with the tracked run."""

    @abstractmethod
    def finish(self, failed: bool = False) -> None:
        """Close the run, marked failed when training raised."""


TRACKERS: Registry[type[Tracker]] = Registry("tracker")
BUILT_IN = ("experiment", "run_name", "folder")  # what every tracker is given; the rest are its own settings


def require(tracker: str, *modules: str) -> list[ModuleType]:
    """The ``modules`` a tracker needs, imported; one that is missing (or fails to import) is a one-line
    ConfigError naming the extra that installs them, ``kgem[tracker]``."""
    imported = []
    for module in modules:
        try:
            imported.append(importlib.import_module(module))
        except ImportError as e:
            why = " ".join(str(e).split())
            raise ConfigError(f"the {tracker} tracker needs {module}, which did not import ({why}): "
                              f"pip install 'kgem[{tracker}]'") from e
    return imported


def flat_params(cfg: Any) -> dict[str, Any]:
    """A config as dotted keys to scalars (``model.dim: 100``); lists and dicts as JSON text, as trackers take
    parameters as flat scalars."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value and prefix.count(".") < 1:  # a config section
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        elif isinstance(value, (dict, list)):
            flat[prefix] = json.dumps(value, sort_keys=True)
        else:
            flat[prefix] = value

    walk("", to_dict(cfg))
    return flat


class Tracking:
    """The trackers of one run. Every call reaches each tracker; one that raises is logged once and switched off
    for the rest of the run, so a tracker never stops training."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def _each(self, what: str, *args: Any) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, what)(*args)
            except Exception as e:  # whatever a tracker's library raises, training goes on
                log.warning("tracker %s failed in %s (%s: %s); it is switched off for the rest of the run",
                            type(tracker).__name__, what, type(e).__name__, " ".join(str(e).split()))
                self.trackers.remove(tracker)

    def start(self, params: Mapping[str, Any]) -> None:
        self._each("start", params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._each("log_metrics", metrics, step)

    def log_artifact(self, path: Path) -> None:
        self._each("log_artifact", path)

    def finish(self, failed: bool = False) -> None:
        self._each("finish", failed)

    def epoch(self, epoch: int, loss: float, valid: float | None) -> None:
        """An ``EpochCallback``: the epoch's loss and validation MRR."""
        self.log_metrics({"loss": loss} if valid is None else {"loss": loss, "valid_mrr": valid}, epoch)


def tracking_from_config(cfg: TrackingConfig, folder: Path | None, run_name: str) -> Tracking:
    """The trackers ``cfg`` names, built (each package imported) now: before training, so a missing one fails
    first. ``run_name``: the name when ``cfg.run_name`` is unset."""
    trackers = [build(name, cfg.args.get(name, {}), experiment=cfg.experiment, run_name=cfg.run_name or run_name,
                      folder=folder) for name in cfg.trackers]
    return Tracking(trackers)


def build(name: str, args: Mapping[str, Any], **given: Any) -> Tracker:
    """The tracker ``name`` with its settings ``args``: a setting it does not take is a ConfigError naming those it
    does, not a TypeError."""
    kind = TRACKERS.get(name)
    parameters = inspect.signature(kind).parameters.values()
    known = [p.name for p in parameters if p.name not in BUILT_IN and p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(args) - set(known))
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in parameters):
        raise ConfigError(f"tracking.args.{name}: unknown setting {', '.join(unknown)}; "
                          f"known: {', '.join(known) or 'none'}")
    return kind(**given, **args)
