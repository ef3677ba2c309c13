"""Experiment trackers: a tiny nations run reported to TensorBoard, MLflow and W&B (offline), each read back with the
tracker's own reader and compared with the run folder's losses.csv / metrics.csv."""

from __future__ import annotations

import json
import logging
import struct
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from kgem.cli import build_parser, main
from kgem.cli.train import overrides_from_flags
from kgem.errors import ConfigError
from kgem.pipeline import pipeline, resolve_config
from kgem.tracking import TensorBoardTracker

FAST = ["training.epochs=3", "model.dim=8", "training.batch_size=4096", "training.frequency=1", "training.patience=10"]


def train(run: Path, tracking: dict[str, Any], **kwargs: Any) -> Any:
    return pipeline({"data": {"dataset": "nations"}, "tracking": tracking}, overrides=FAST, progress=False,
                    output=run, **kwargs)


def losses(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "losses.csv", index_col="epoch")


def final_mrr(run: Path) -> float:
    return float(pd.read_csv(run / "metrics.csv", index_col="side").loc["both", "mrr"])


def events(folder: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def scalars(accumulator: Any, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def test_tensorboard_event_file_holds_the_runs_losses_metrics_params_and_files(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = tmp_path / "run"
    train(run, {"trackers": ["tensorboard"]})
    table, found = losses(run), events(run / "tensorboard")
    assert scalars(found, "loss") == [(epoch, pytest.approx(loss, rel=1e-6)) for epoch, loss in table["loss"].items()]
    assert scalars(found, "valid_mrr") == [(epoch, pytest.approx(mrr, rel=1e-6))
                                           for epoch, mrr in table["valid_mrr"].items()]
    assert scalars(found, "test_mrr") == [(3, pytest.approx(final_mrr(run), rel=1e-6))]  # at the last epoch's step
    assert {"test_head_hits@10", "time_train"} <= set(found.Tags()["scalars"])
    texts = {"config.yaml/text_summary", "metrics.csv/text_summary", "losses.csv/text_summary", "status/text_summary"}
    assert texts <= set(found.Tags()["tensors"])
    config = found.Tensors("config.yaml/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "    model:" in config and "dim: 8" in config  # the file, as a preformatted block
    start = plugin_data_pb2.HParamsPluginData.FromString(
        found.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["model.dim"].number_value == 8 and start.hparams["data.dataset"].string_value == "nations"


def test_mlflow_run_in_the_run_folders_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = tmp_path / "run"
    train(run, {"trackers": ["mlflow"], "experiment": "nations-test"})
    client = MlflowClient(f"sqlite:///{run / 'mlflow' / 'mlflow.db'}")
    [found] = client.search_runs([client.get_experiment_by_name("nations-test").experiment_id])
    assert found.info.run_name == "run" and found.info.status == "FINISHED"
    assert found.data.params["model.dim"] == "8" and found.data.params["data.dataset"] == "nations"
    history = client.get_metric_history(found.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == list(losses(run)["loss"].items())
    assert found.data.metrics["test_mrr"] == final_mrr(run) and "test_hits_at_10" in found.data.metrics
    assert sorted(f.path for f in client.list_artifacts(found.info.run_id)) == ["config.yaml", "losses.csv",
                                                                                  "metrics.csv"]
    assert (run / "mlflow" / "artifacts").is_dir()  # the files stay in the run folder too


def test_mlflow_run_whose_training_raises_is_failed_and_the_users_own_run_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()  # the user's store: MLflow's file store (no database to set up)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # which the tracker takes over a store in the run folder

    def stop(epoch: int, loss: float, valid: float | None) -> None:
        if epoch == 2:
            raise RuntimeError("stop")

    with mlflow.start_run(run_name="mine") as mine:
        with pytest.raises(RuntimeError, match="stop"):
            train(tmp_path / "run", {"trackers": ["mlflow"]}, callbacks=[stop])
        assert mlflow.active_run().info.run_id == mine.info.run_id
        client = MlflowClient(uri)
        assert client.get_run(mine.info.run_id).info.status == "RUNNING"
    [found] = client.search_runs([client.get_experiment_by_name("kgem").experiment_id])
    assert found.info.status == "FAILED" and [m.step for m in client.get_metric_history(found.info.run_id, "loss")] \
        == [1, 2]
    assert not (tmp_path / "run" / "mlflow").exists()


def wandb_records(path: Path) -> list[Any]:
    """The records of a W&B run file (``run-ID.wandb``): a 7-byte header, then LevelDB's log format (32 KiB blocks
    of chunks: crc32, length, type; a record in one FULL chunk or FIRST, MIDDLE..., LAST) of protobuf records."""
    from wandb.proto import wandb_internal_pb2

    data, block, position, pending, records = path.read_bytes(), 32768, 7, b"", []
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a chunk header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # FULL or LAST: the record is whole
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def test_wandb_offline_run_holds_the_history_summary_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wandb = pytest.importorskip("wandb")
    for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "home"))  # nothing written outside tmp_path
    run = tmp_path / "run"
    train(run, {"trackers": ["wandb"], "args": {"wandb": {"mode": "offline"}}})
    wandb.teardown()  # W&B's service writes the run file out as it stops
    [folder] = (run / "wandb").glob("offline-run-*")
    assert {"config.yaml", "losses.csv", "metrics.csv"} <= {p.name for p in (folder / "files").iterdir()}
    [path] = folder.glob("run-*.wandb")
    history, summary, exit_code = {}, {}, None
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {item.key or ".".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            history[row["_step"]] = row
        elif kind == "summary":
            summary |= {item.key or ".".join(item.nested_key): item.value_json for item in record.summary.update}
        elif kind == "run":
            assert record.run.display_name == "run" and record.run.project == "kgem"
            config = {item.key: json.loads(item.value_json) for item in record.run.config.update}
            assert config["model.dim"] == 8 and config["data.dataset"] == "nations"
        elif kind == "exit":
            exit_code = record.exit.exit_code
    table = losses(run)
    assert {step: (row["loss"], row["valid_mrr"]) for step, row in history.items()} == {
        epoch: (row.loss, row.valid_mrr) for epoch, row in table.iterrows()}
    assert json.loads(summary["test_mrr"]) == final_mrr(run) and exit_code == 0


@pytest.mark.parametrize(("tracker", "module"), [("tensorboard", "tensorboard"), ("mlflow", "mlflow"),
                                                 ("mlflow", "sqlalchemy"), ("wandb", "wandb")])
def test_a_missing_package_is_a_one_line_error_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               tracker: str, module: str) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setitem(sys.modules, module, None)  # what Python does for a package that is not installed
    with pytest.raises(ConfigError, match=rf"needs {module}, .*: pip install 'kgem\[{tracker}\]'$") as error:
        train(tmp_path / "run", {"trackers": [tracker]})
    assert "\n" not in str(error.value) and not (tmp_path / "run").exists()  # nothing trained, nothing left


def test_an_unknown_tracker_setting_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tracking.args.tensorboard: unknown setting logdir; known: log_dir"):
        train(tmp_path / "run", {"trackers": ["tensorboard"], "args": {"tensorboard": {"logdir": "tb"}}})


def test_a_tracker_failing_mid_run_is_switched_off_and_training_finishes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("tensorboard")
    log_metrics = TensorBoardTracker.log_metrics

    def full_disk(self: TensorBoardTracker, metrics: Any, step: int | None = None) -> None:
        if step == 2:
            raise OSError("No space\nleft on device")
        log_metrics(self, metrics, step)

    monkeypatch.setattr(TensorBoardTracker, "log_metrics", full_disk)
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="kgem"):
        result = train(run, {"trackers": ["tensorboard"]})
    assert len(result.history.losses) == 3 and (run / "metrics.csv").is_file()
    assert ("tracker TensorBoardTracker failed in log_metrics (OSError: No space left on device); it is switched "
            "off for the rest of the run") in caplog.text
    found = events(run / "tensorboard")
    assert [step for step, _ in scalars(found, "loss")] == [1] and found.Tags()["tensors"] == []  # nothing after


def test_cli_train_with_tracker_experiment_and_a_shared_log_dir(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorboard")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dataset", "nations", "--dim", "8", "--epochs", "2", "--batch-size", "4096", "-q",
                 "--output", "run", "--tracker", "tensorboard", "--experiment", "cli-test",
                 "--set", "tracking.run_name=first", "--set", "tracking.args={tensorboard: {log_dir: tb}}"]) == 0
    assert [step for step, _ in scalars(events(tmp_path / "tb" / "first"), "loss")] == [1, 2]  # one folder a run
    assert not (tmp_path / "run" / "tensorboard").exists()
    tracking = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["tracking"]
    assert tracking["trackers"] == ["tensorboard"] and tracking["experiment"] == "cli-test"
    args = build_parser().parse_args(["train", "--tracker", "tensorboard", "--tracker", "mlflow"])
    assert resolve_config(None, overrides_from_flags(args)).tracking.trackers == ["tensorboard", "mlflow"]
