"""Experiment trackers: where a run's parameters, per-epoch metrics, final metrics and files are reported besides the
run folder's own CSV files (``tracking.trackers`` in a config, ``kgem train --tracker``).

Every tracker has one small interface (``Tracker``) and is an optional extra, imported when it is built: a tracker
that is not installed is a ConfigError before anything trains. Once training runs, a tracker that fails (a server
gone, a full disk) is reported and switched off, and the training goes on (``Tracking``).
"""

from kgem.tracking.base import TRACKERS, Tracker, Tracking, flat_params, tracking_from_config
from kgem.tracking.mlflow_tracker import MlflowTracker
from kgem.tracking.tensorboard_tracker import TensorBoardTracker
from kgem.tracking.wandb_tracker import WandbTracker

__all__ = ["TRACKERS", "MlflowTracker", "TensorBoardTracker", "Tracker", "Tracking", "WandbTracker", "flat_params",
           "tracking_from_config"]
