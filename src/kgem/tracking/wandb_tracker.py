"""Weights & Biases: a run's config, metrics per epoch, final metrics (the run summary) and files in a W&B project
(``pip install 'kgem[wandb]'``).

The run is a run object of its own (``reinit="create_new"``), never W&B's global run: a pipeline called inside a
user's ``wandb.init()`` leaves that run open and as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kgem.tracking.base import TRACKERS, Tracker, require


@TRACKERS.register("wandb")
class WandbTracker(Tracker):
    """The run in project ``experiment`` under the name ``run_name``, its local files in the run folder
    (``<run>/wandb``; W&B's default ``./wandb`` without one). ``mode``: online (default: needs ``wandb login``),
    offline (``wandb sync`` uploads it later) or disabled; ``entity``: the user or team (W&B's default: yours)."""

    def __init__(self, *, experiment: str, run_name: str, folder: Path | None, mode: str | None = None,
                 entity: str | None = None) -> None:
        super().__init__(experiment=experiment, run_name=run_name, folder=folder)
        (self.wandb,) = require("wandb", "wandb")
        self.mode, self.entity = mode or "online", entity
        self.run: Any = None

    def start(self, params: Mapping[str, Any]) -> None:
        self.run = self.wandb.init(project=self.experiment, name=self.run_name, entity=self.entity,
                                   dir=str(self.folder) if self.folder is not None else None, mode=self.mode,
                                   config=dict(params), reinit="create_new")

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if step is None:  # final metrics: the run's summary, W&B's place for one value per run
            self.run.summary.update(dict(metrics))
        else:
            self.run.log(dict(metrics), step=step)

    def log_artifact(self, path: Path) -> None:
        self.run.save(str(path), base_path=str(path.parent), policy="now")

    def finish(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)
