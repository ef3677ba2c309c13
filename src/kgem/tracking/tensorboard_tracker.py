"""TensorBoard: a run's metrics as scalars, its parameters in the HParams dashboard, its files as text, in event
files that ``tensorboard --logdir`` reads (``pip install 'kgem[tensorboard]'``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kgem.tracking.base import TRACKERS, Tracker, require

# the metrics the HParams dashboard shows beside each run's parameters (scalars of the same names)
HPARAM_METRICS = ("loss", "valid_mrr", "test_mrr")
MAX_TEXT = 100_000  # characters of a file kept as text; TensorBoard's text view is not for more


@TRACKERS.register("tensorboard")
class TensorBoardTracker(Tracker):
    """Event files in ``<log_dir>/<run_name>``: ``log_dir`` defaults to the run folder (``<run>/tensorboard``, with
    no run-name level), else ``runs/tensorboard``. A shared ``log_dir`` keeps runs side by side, one folder each, as
    ``tensorboard --logdir`` compares them. Final metrics are written at the last epoch's step."""

    def __init__(self, *, experiment: str, run_name: str, folder: Path | None, log_dir: str | None = None) -> None:
        super().__init__(experiment=experiment, run_name=run_name, folder=folder)
        require("tensorboard", "tensorboard", "torch.utils.tensorboard")
        if log_dir is not None:
            self.log_dir = Path(log_dir) / run_name
        else:
            self.log_dir = folder / "tensorboard" if folder is not None else Path("runs", "tensorboard", run_name)
        self.step = 0
        self.writer: Any = None

    def start(self, params: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        for summary in hparams(dict(params), dict.fromkeys(HPARAM_METRICS, 0.0)):
            self.writer.file_writer.add_summary(summary)
        self.writer.flush()

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.step = self.step if step is None else step
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, self.step)
        self.writer.flush()  # an epoch's scalars show while the run goes on

    def log_artifact(self, path: Path) -> None:
        text = path.read_text(encoding="utf-8", errors="replace")
        if len(text) > MAX_TEXT:
            text = text[:MAX_TEXT] + f"\n[... {len(text) - MAX_TEXT} more characters in {path}]"
        # indented four spaces: Markdown's preformatted block, so TensorBoard shows the file as it is
        self.writer.add_text(path.name, "\n".join("    " + line for line in text.splitlines()), self.step)

    def finish(self, failed: bool = False) -> None:
        self.writer.add_text("status", "FAILED" if failed else "FINISHED", self.step)
        self.writer.close()
