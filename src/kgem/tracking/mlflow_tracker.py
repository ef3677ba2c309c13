"""MLflow: a run's parameters, metrics per epoch, final metrics, files and status in an MLflow tracking store
(``pip install 'kgem[mlflow]'``: mlflow-skinny with SQLAlchemy and Alembic, enough for a local SQLite store).

The run is written through ``MlflowClient`` with its own run id, never through MLflow's active run: a pipeline
called inside a user's ``mlflow.start_run()`` leaves that run as it was.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kgem.tracking.base import TRACKERS, Tracker, require

DATABASES = ("sqlite:", "postgresql", "mysql", "mssql")  # the stores that need SQLAlchemy and Alembic
STORE = "mlflow"  # the default store's folder in the run folder: mlflow.db and artifacts/


@TRACKERS.register("mlflow")
class MlflowTracker(Tracker):
    """The run in experiment ``experiment`` under the name ``run_name``. The store: ``tracking_uri``, else
    ``MLFLOW_TRACKING_URI``, else a SQLite store in the run folder (``<run>/mlflow/mlflow.db``, files in
    ``<run>/mlflow/artifacts``), else MLflow's default. ``artifact_location``: where a new experiment keeps its
    files (MLflow's default: ``./mlruns``). Final metrics are written at the last epoch's step."""

    def __init__(self, *, experiment: str, run_name: str, folder: Path | None, tracking_uri: str | None = None,
                 artifact_location: str | None = None) -> None:
        super().__init__(experiment=experiment, run_name=run_name, folder=folder)
        self.uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        self.artifact_location = artifact_location
        self.store: Path | None = None  # the run folder's store, made when the run starts
        if self.uri is None and folder is not None:
            self.store = (folder / STORE).resolve()
            self.uri = f"sqlite:///{(self.store / 'mlflow.db').as_posix()}"
            self.artifact_location = artifact_location or (self.store / "artifacts").as_uri()
        database = self.uri is None or self.uri.startswith(DATABASES)  # MLflow's own default is SQLite too
        require("mlflow", "mlflow", *(("sqlalchemy", "alembic") if database else ()))
        self.step = 0
        self.client: Any = None
        self.run_id = ""

    def start(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        if self.store is not None:  # SQLite makes the database file but not its folder
            self.store.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        run = self.client.create_run(self.experiment_id(), run_name=self.run_name)
        self.run_id = run.info.run_id
        flat = [Param(key, str(value)[:MAX_PARAM_VAL_LENGTH]) for key, value in params.items()]
        for first in range(0, len(flat), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=flat[first:first + MAX_PARAMS_TAGS_PER_BATCH])

    def experiment_id(self) -> str:
        """The experiment's id, made if new (another process may make it at the same moment)."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(self.experiment, artifact_location=self.artifact_location))
        except MlflowException:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return str(found.experiment_id)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        self.step = self.step if step is None else step
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(metric_name(key), float(value), now, self.step)
                                                    for key, value in metrics.items()])

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def finish(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")


def metric_name(name: str) -> str:
    """``name`` as MLflow takes it (letters, digits, ``_-. /``): ``hits@10`` is ``hits_at_10``."""
    return re.sub(r"[^\w\-. /]", "_", name.replace("@", "_at_"))
