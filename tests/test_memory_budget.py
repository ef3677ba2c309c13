"""One evaluation memory budget (``evaluation.memory_budget_mb``) reaches every ranking: the test split, the
early-stopping validations and ``kgem evaluate``."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

import kgem.evaluation
from kgem.cli import main
from kgem.pipeline import pipeline

PIPELINE = importlib.import_module("kgem.pipeline")  # the module: kgem.pipeline is also kgem's function

TINY = ["model.dim=8", "training.epochs=2", "training.frequency=1", "training.batch_size=512"]


def spy_on(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[int]:
    """Record the ``memory_budget_bytes`` of every ``evaluate`` call made through ``module``."""
    budgets: list[int] = []
    real = kgem.evaluation.evaluate

    def spy(*args: Any, **kwargs: Any) -> Any:
        budgets.append(kwargs.get("memory_budget_bytes", -1))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "evaluate", spy)
    return budgets


def test_the_budget_reaches_validation_and_test_evaluation(monkeypatch) -> None:
    budgets = spy_on(monkeypatch, PIPELINE)
    result = pipeline(overrides=[*TINY, "evaluation.memory_budget_mb=3"], progress=False)
    assert len(result.history.validation) == 2 and result.evaluation is not None
    assert budgets == [3 * 2**20] * 3  # two validations, then the test split


def test_kgem_evaluate_takes_the_saved_budget_or_the_flag(monkeypatch, tmp_path: Path, capsys) -> None:
    pipeline(overrides=[*TINY, "training.early_stopping=false", "evaluation.memory_budget_mb=5"], progress=False,
             output=tmp_path / "run")
    budgets = spy_on(monkeypatch, kgem.evaluation)
    assert main(["evaluate", str(tmp_path / "run" / "model"), "-q"]) == 0
    assert main(["evaluate", str(tmp_path / "run" / "model"), "-q", "--memory-budget-mb", "2"]) == 0
    assert budgets == [5 * 2**20, 2 * 2**20]
    outputs = capsys.readouterr().out.split("filtered")
    assert outputs[1] == outputs[2]  # the budget changes the blocks, not the ranks
