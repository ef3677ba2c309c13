"""``training.time_budget``: training stops at the first epoch boundary past the budget, keeping the best validated
weights; a resumed run counts the time it already trained; durations read as 90s, 20m, 1.5h. The clock is faked:
every epoch "takes" 100 s, so the tests are exact and fast."""

from __future__ import annotations

import time

import pytest

from kgem.checks import duration
from kgem.cli import build_parser
from kgem.cli.train import overrides_from_flags
from kgem.config import apply_overrides
from kgem.configs import PipelineConfig, TrainingConfig
from kgem.errors import ConfigError
from kgem.pipeline import pipeline, resume

BASE = ["model.name=distmult", "model.dim=8", "training.batch_size=256", "training.epochs=10",
        "training.frequency=1", "training.patience=10", "evaluation.memory_budget_mb=16"]


@pytest.fixture
def clock(monkeypatch):
    """A clock that moves 100 s when ``tick`` (an epoch callback) is told of an epoch."""
    real = time.perf_counter
    offset = [0.0]

    def tick(epoch: int, loss: float, valid: float | None) -> None:
        offset[0] += 100.0

    monkeypatch.setattr(time, "perf_counter", lambda: real() + offset[0])
    return tick


def test_training_stops_at_the_first_epoch_past_the_budget_with_the_best_weights(clock) -> None:
    result = pipeline(overrides=[*BASE, "training.time_budget=250"], progress=False, callbacks=[clock])
    history = result.history
    assert len(history.losses) == 4  # 0, 100, 200 s: go on; 300 s >= 250 s after epoch 4: stop
    assert history.out_of_time and not history.stopped_early
    best = max(history.validation, key=lambda e: (history.validation[e], -e))
    assert history.best_epoch == best
    unlimited = pipeline(overrides=[*BASE, f"training.epochs={best}", "training.early_stopping=false"],
                         progress=False)
    assert result.model.state_dict().keys() == unlimited.model.state_dict().keys()
    for key, value in result.model.state_dict().items():  # the weights of the best epoch, as early stopping keeps
        assert value.equal(unlimited.model.state_dict()[key]), key


def test_the_budget_is_not_reported_when_the_epochs_end_first(clock) -> None:
    result = pipeline(overrides=[*BASE, "training.epochs=3", "training.time_budget=20m"], progress=False,
                      callbacks=[clock])
    assert len(result.history.losses) == 3 and not result.history.out_of_time


def test_a_resumed_run_counts_the_time_it_trained_and_a_larger_budget_continues_it(clock, tmp_path) -> None:
    out = tmp_path / "run"
    first = pipeline(overrides=[*BASE, "training.time_budget=150"], progress=False, output=out, callbacks=[clock])
    assert len(first.history.losses) == 3  # 0, 100 s: go on; 200 s >= 150 s after epoch 3: stop
    again = resume(out, progress=False)  # the same budget: spent, nothing more to train
    assert len(again.history.losses) == 3 and again.history.out_of_time
    config = (out / "config.yaml").read_text().replace("time_budget: 150", "time_budget: 450")
    (out / "config.yaml").write_text(config)
    longer = pipeline(out / "config.yaml", progress=False, output=out, resume=True, callbacks=[clock])
    assert len(longer.history.losses) == 7  # on from 200 s: 200, 300, 400 go on, 500 >= 450 stops after epoch 7


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("20m", 1200), ("1.5h", 5400), ("1h30m", 5400),
                                               ("600", 600), (600, 600), ("2 min", 120), (0.5, 0.5)])
def test_durations_read(text, seconds) -> None:
    assert duration("training.time_budget", text) == seconds


@pytest.mark.parametrize("bad", ["", "soon", "20x", "-5", 0, -1, "20m!", "inf", True, float("nan")])
def test_a_bad_budget_is_a_config_error_naming_the_key(bad) -> None:
    with pytest.raises(ConfigError, match="training.time_budget must be"):
        TrainingConfig(time_budget=bad)


def test_the_command_line_flag_sets_the_budget() -> None:
    args = build_parser().parse_args(["train", "--time-budget", "20m"])
    cfg = apply_overrides(PipelineConfig(), overrides_from_flags(args))
    assert cfg.training.time_budget == "20m"
