"""Hyper-parameter search: trials are run folders, a killed search resumes, pruning stops poor trials, the best
config re-runs to the same metrics, and bad search spaces are refused before anything trains."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import kgem
from kgem.cli import main
from kgem.errors import ConfigError
from kgem.hpo import hpo
from kgem.training import Checkpoints

pytest.importorskip("optuna")

BASE = {"model": {"name": "distmult", "dim": 16}, "evaluation": {"memory_budget_mb": 16},
        "training": {"epochs": 6, "frequency": 2, "patience": 5, "batch_size": 128, "regularizer": None}}


def search(**hpo_section) -> dict:
    return {**BASE, "hpo": {"trials": 2, **hpo_section}}


def write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_killed_search_resumes_to_its_trials_and_the_cut_trial_continues_in_its_folder(tmp_path) -> None:
    config = {**BASE, "training": {**BASE["training"], "epochs": 30, "frequency": 5, "patience": 20},
              "hpo": {"trials": 3, "sampler": "random", "pruner": "none",
                      "search_space": {"training.lr": {"type": "float", "low": 0.05, "high": 0.2, "log": True}}}}
    path = write(tmp_path / "search.yaml", config)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "kgem", "optimize", str(path), "-o", str(out), "-q"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    second = out / "trials" / "trial-0001" / "checkpoints"
    deadline = time.monotonic() + 120
    while not (second.is_dir() and Checkpoints(second).all()):
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # no clean-up at all: the trial stays "running" in the study
    process.wait()

    result = hpo(path, output=out, progress=False)
    table = result.trials
    assert (table["state"].isin(["complete", "pruned"])).sum() == 3
    assert (table["state"] == "fail").sum() == 1
    failed = table[table["state"] == "fail"].iloc[0]
    assert failed["run_folder"] == "trials/trial-0001"
    resumed = table[(table["state"] == "complete") & (table["run_folder"] == "trials/trial-0001")]
    assert len(resumed) == 1  # the cut trial continued in its own folder with its own values
    assert resumed["training.lr"].iloc[0] == failed["training.lr"]
    # trial 2 continued trial-0001; a folder is named by the trial that started it
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["trial-0000", "trial-0001", "trial-0003"]

    # the continued trial ends as an uninterrupted run of its config would (a run folder resumes exactly)
    cfg = yaml.safe_load((out / "trials" / "trial-0001" / "config.yaml").read_text())
    fresh = kgem.pipeline(cfg, progress=False)
    assert max(fresh.history.validation.values()) == pytest.approx(resumed["valid_mrr"].iloc[0], abs=1e-6)

    again = hpo(path, output=out, progress=False)  # nothing left to do: the same table
    assert len(again.trials) == len(table)


def test_the_pruner_stops_a_trial_with_a_poor_validation_at_its_first_check(tmp_path) -> None:
    config = search(sampler="grid", pruner="threshold", pruner_args={"lower": 0.5},
                    search_space={"training.lr": {"type": "categorical", "choices": [0.1, 1e-6]}})
    result = hpo(config, output=tmp_path / "out", progress=False)
    table = result.trials.set_index("training.lr")
    assert table.loc[0.1, "state"] == "complete" and table.loc[0.1, "valid_mrr"] > 0.5
    assert table.loc[1e-6, "state"] == "pruned"
    pruned = tmp_path / "out" / table.loc[1e-6, "run_folder"] / "checkpoints"
    epochs = sorted(int(state["epoch"]) for state in (Checkpoints(pruned).load(p) for p in Checkpoints(pruned).all()))
    assert epochs[-1] == 2  # stopped at its first validation (every 2 epochs), not after 6
    trial = result.study.trials[int(result.trials.index[result.trials["training.lr"] == 1e-6][0])]
    assert list(trial.intermediate_values) == [2]


def test_the_best_config_retrains_to_identical_metrics(tmp_path) -> None:
    config = search(trials=3, sampler="random", pruner="none",
                    search_space={"model.dim": {"type": "int", "low": 8, "high": 32, "step": 8},
                                  "training.lr": {"type": "float", "low": 0.02, "high": 0.2, "log": True},
                                  "training.loss": {"type": "categorical", "choices": ["cross_entropy", "bce"]}})
    result = hpo(config, output=tmp_path / "out", progress=False)
    assert len(result.trials) == 3 and set(result.trials["state"]) == {"complete"}
    assert result.best_trial == int(result.trials["valid_mrr"].idxmax())
    best_file = tmp_path / "out" / "best_config.yaml"
    saved = yaml.safe_load(best_file.read_text())
    row = result.trials.loc[result.best_trial]
    assert saved["model"]["dim"] == row["model.dim"] and saved["training"]["loss"] == row["training.loss"]
    assert saved["hpo"]["search_space"] == {}  # a plain training config
    again = kgem.pipeline(best_file, progress=False)
    assert max(again.history.validation.values()) == row["valid_mrr"]
    assert float(again.metrics().loc["both", "mrr"]) == row["test_mrr"]
    trial_metrics = (tmp_path / "out" / row["run_folder"] / "metrics.csv").read_text()
    assert trial_metrics.splitlines()[0].startswith("side,")  # every trial is a normal run folder


def test_more_trials_on_resume_and_another_search_in_the_folder_is_refused(tmp_path) -> None:
    space = {"training.lr": {"type": "float", "low": 0.05, "high": 0.2}}
    out = tmp_path / "out"
    hpo(search(trials=1, sampler="random", search_space=space), output=out, progress=False)
    more = hpo(search(trials=1, sampler="random", search_space=space), output=out, progress=False, n_trials=2)
    assert len(more.trials) == 2
    assert more.trials["training.lr"].nunique() == 2  # the resumed sampler draws anew, not its first value again
    other = {"training.lr": {"type": "float", "low": 0.01, "high": 0.2}}
    with pytest.raises(ConfigError, match="holds a search of another config"):
        hpo(search(trials=3, search_space=other), output=out, progress=False)


@pytest.mark.parametrize(("space", "message"), [
    ({}, "search_space is empty"),
    ({"model.dimension": {"type": "int", "low": 8, "high": 16}}, "unknown key 'model.dimension'"),
    ({"model.dim": {"type": "int", "low": 16, "high": 8}}, "low <= high"),
    ({"training.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}, "log range must be positive"),
    ({"training.lr": {"type": "uniform", "low": 0.0, "high": 0.1}}, "type must be one of"),
    ({"training.lr": {"type": "float", "low": 0.01, "high": 0.1, "base": 2}}, "unknown setting"),
    ({"training.approach": {"type": "categorical", "choices": ["slcwa", "lcwa"]}}, "'lcwa' is not one of"),
    ({"model.dim": {"type": "categorical", "choices": []}}, "non-empty list"),
])
def test_bad_search_spaces_are_refused_before_any_trial(tmp_path, space, message) -> None:
    with pytest.raises(ConfigError, match=message):
        hpo(search(search_space=space), output=tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "trials").exists()


def test_grid_needs_finite_values_and_the_pruner_its_arguments(tmp_path) -> None:
    space = {"training.lr": {"type": "float", "low": 0.01, "high": 0.1}}
    with pytest.raises(ConfigError, match="grid search needs finite values"):
        hpo(search(sampler="grid", search_space=space), output=tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="pruner_args for the threshold pruner"):
        hpo(search(pruner="threshold", pruner_args={"lowest": 1}, search_space=space), output=tmp_path / "b",
            progress=False)


def test_without_optuna_one_line_names_the_extra(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    space = {"training.lr": {"type": "float", "low": 0.01, "high": 0.1}}
    with pytest.raises(ConfigError, match=r"pip install 'kgem\[hpo\]'"):
        hpo(search(search_space=space), output=tmp_path / "out", progress=False)


def test_kgem_optimize_runs_and_prints_its_table(tmp_path, capsys) -> None:
    space = {"model.dim": {"type": "int", "low": 8, "high": 16, "step": 8}}
    path = write(tmp_path / "search.yaml", search(trials=2, sampler="grid", search_space=space))
    out = tmp_path / "out"
    assert main(["optimize", str(path), "-o", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "best: trial" in printed and "best_config.yaml" in printed
    assert main(["optimize", str(path), "-o", str(out), "--table"]) == 0
    table = capsys.readouterr().out
    assert "model.dim" in table and table.count("complete") == 2
    assert main(["optimize", str(path), "-o", str(tmp_path / "none"), "--table"]) == 2
    assert "holds no search" in capsys.readouterr().err
