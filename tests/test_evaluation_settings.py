"""The evaluation settings reach every ranking: one memory budget (``evaluation.memory_budget_mb``) for the test
split, the early-stopping validations and ``kgem evaluate``; the same sides and rank type for validation and test."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

import kgem.evaluation
from kgem.cli import main
from kgem.pipeline import pipeline

FACTORY = importlib.import_module("kgem.factory")  # evaluator_from_config: every ranking is built there

TINY = ["model.dim=8", "training.epochs=2", "training.frequency=1", "training.batch_size=512"]


def spy_on(monkeypatch: pytest.MonkeyPatch, module: Any, key: str = "memory_budget_bytes") -> list[Any]:
    """Record the argument ``key`` of every ``evaluate`` call made through ``module`` (the evaluators it builds)."""
    seen: list[Any] = []
    real = kgem.evaluation.evaluate

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get(key, -1))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "evaluate", spy)
    return seen


def test_the_budget_reaches_validation_and_test_evaluation(monkeypatch) -> None:
    budgets = spy_on(monkeypatch, FACTORY)
    result = pipeline(overrides=[*TINY, "evaluation.memory_budget_mb=3"], progress=False)
    assert len(result.history.validation) == 2 and result.evaluation is not None
    assert budgets == [3 * 2**20] * 3  # two validations, then the test split


def test_kgem_evaluate_takes_the_saved_budget_or_the_flag(monkeypatch, tmp_path: Path, capsys) -> None:
    pipeline(overrides=[*TINY, "training.early_stopping=false", "evaluation.memory_budget_mb=5"], progress=False,
             output=tmp_path / "run")
    budgets = spy_on(monkeypatch, FACTORY)  # kgem evaluate builds its evaluator there too
    assert main(["evaluate", str(tmp_path / "run" / "model"), "-q"]) == 0
    assert main(["evaluate", str(tmp_path / "run" / "model"), "-q", "--memory-budget-mb", "2"]) == 0
    assert budgets == [5 * 2**20, 2 * 2**20]
    outputs = capsys.readouterr().out.split("filtered")
    assert outputs[1] == outputs[2]  # the budget changes the blocks, not the ranks


def test_validation_ranks_the_sides_and_ties_the_test_split_does(monkeypatch) -> None:
    seen = spy_on(monkeypatch, FACTORY, "sides")
    pipeline(overrides=[*TINY, "evaluation.sides=tail"], progress=False)
    assert seen == ["tail"] * 3
    seen = spy_on(monkeypatch, FACTORY, "rank_type")
    pipeline(overrides=[*TINY, "evaluation.rank_type=pessimistic"], progress=False)
    assert seen == ["pessimistic"] * 3
