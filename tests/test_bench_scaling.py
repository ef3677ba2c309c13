"""bench/scaling.py reports what it measured and nothing else: a run's throughput from its run folder, a failed run
as failed (never as a number), and medians and speedups over the runs that worked."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def scaling(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("scaling")


def settings(**changes: object) -> argparse.Namespace:
    base = {"dataset": "nations", "dim": 8, "batch_size": 256, "negatives": 8, "epochs": 1, "rounds": 1}
    return argparse.Namespace(**{**base, **changes})


def test_one_process_run_reports_the_throughput_its_run_folder_records(scaling) -> None:
    record = scaling.run_one(settings(), "transe", "1 process", 1)
    assert record["status"] == "ok" and record["examples_per_second"] > 0


def test_a_run_that_fails_is_reported_as_failed(scaling, tmp_path) -> None:
    record = scaling.run_one(settings(dataset=str(tmp_path / "missing")), "transe", "1 process", 1)
    assert record["status"] == "failed" and "examples_per_second" not in record
    assert record["error"].startswith("kgem: error:")


def test_medians_and_speedups_use_the_runs_that_worked(scaling) -> None:
    ok = [{"model": "transe", "side": "1 process", "status": "ok", "examples_per_second": v} for v in (90, 100, 110)]
    two = [{"model": "transe", "side": "2 processes", "status": "ok", "examples_per_second": v} for v in (150, 170)]
    failed = [{"model": "transe", "side": "2 processes", "status": "failed", "error": "x"},
              {"model": "complex", "side": "1 process", "status": "failed", "error": "x"}]
    rows = {(r["model"], r["side"]): r for r in scaling.summarise([*ok, *two, *failed])}
    assert rows["transe", "1 process"]["examples_per_second"] == 100 and rows["transe", "1 process"]["runs"] == 3
    assert rows["transe", "2 processes"]["speedup"] == 1.6 and rows["transe", "2 processes"]["failed"] == 1
    assert rows["complex", "1 process"]["examples_per_second"] is None
    text = scaling.table(list(rows.values()), settings(rounds=3))
    assert "| complex | 1 process | failed | – | 0 | 1 |" in text
    assert "| transe | 2 processes | 160 | 1.60x | 2 | 1 |" in text
