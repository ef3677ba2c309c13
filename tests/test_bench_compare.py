"""bench/compare reports a side whose run failed (an exception, a NaN loss, a dead worker) as failed, in the runner's
JSON, the orchestrator's records, its summary and its table, never as a number. No benchmark is run."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> dict[str, ModuleType]:
    """The bench modules, imported as the scripts import them (bench/ on the path)."""
    monkeypatch.syspath_prepend(str(BENCH))
    for name in [name for name in sys.modules if name == "compare" or name.startswith("compare.")]:
        monkeypatch.delitem(sys.modules, name)
    return {name: importlib.import_module(name) for name in ("compare.common", "compare.run_kgem", "compare_pykeen")}


def test_a_diverged_measurement_has_an_error_and_no_rate(bench) -> None:
    common = bench["compare.common"]
    diverged = common.training_result(common.Timing(rows=1000, batches=10, seconds=2.0, losses=[0.9, float("nan")]))
    assert "nan" in diverged["error"] and "triples_per_s" not in diverged and "rows_per_s" not in diverged
    nothing = common.training_result(common.Timing(losses=[0.5]))
    assert "no training step" in nothing["error"] and "triples_per_s" not in nothing
    fine = common.training_result(common.Timing(rows=1000, batches=10, seconds=2.0, losses=[0.9, 0.4]))
    assert "error" not in fine and fine["triples_per_s"] == 500.0


def test_an_exception_in_a_runner_is_a_failure_record_and_exit_status_1(bench, capsys) -> None:
    common = bench["compare.common"]

    def run(setting: Any, args: argparse.Namespace) -> None:
        raise RuntimeError("worker 0 failed: TrainingError: the loss became nan at epoch 0, batch 2880")

    code = common.guarded("kgem", common.SETTINGS["C1s"], argparse.Namespace(config="C1s", seed=0), run)
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1 and record["kind"] == "train" and "the loss became nan" in record["error"]
    assert "triples_per_s" not in record


def _stdout(**record: Any) -> str:
    return "progress line\n" + json.dumps({"side": "kgem", "config": "C1s", "peak_rss_mb": 100.0, **record}) + "\n"


def test_the_orchestrator_checks_every_record(bench, tmp_path) -> None:
    record_of = bench["compare_pykeen"].record_of
    log = tmp_path / "C1s-kgem-r0.log"
    good = record_of("kgem", "C1s", 0, _stdout(kind="train", triples_per_s=5e4, loss_first=1.0, loss_last=0.5), "",
                     log)
    assert "error" not in good and good["triples_per_s"] == 5e4
    cases = {
        "RuntimeError: worker 0 failed": (1, _stdout(kind="train", error="RuntimeError: worker 0 failed")),
        "loss_last is nan": (0, _stdout(kind="train", triples_per_s=5e4, loss_first=1.0, loss_last=float("nan"))),
        "the loss became nan": (0, _stdout(kind="train", error="the loss became nan", loss_last=float("nan"))),
        "no training rate": (0, _stdout(kind="train", triples_per_s=float("inf"))),
        "exit -9": (-9, _stdout(kind="train", triples_per_s=5e4, loss_first=1.0, loss_last=0.5)),
        "no result record": (0, "Traceback ...\n"),
        "no evaluation time": (0, _stdout(kind="eval", seconds=None)),
    }
    for reason, (code, stdout) in cases.items():
        record = record_of("kgem", "C1s", code, stdout, "a\nb\nc\nd", log)
        assert reason in record["error"] and str(log) in record["error"], reason
        assert not {"triples_per_s", "rows_per_s", "seconds", "peak_rss_mb"} & set(record), reason
        assert record["side"] == "kgem" and record["stderr_tail"] == ["b", "c", "d"]


def _run(side: str, config: str, round_: int, **result: Any) -> dict[str, Any]:
    return {"side": side, "config": config, "round": round_, "kind": "train", **result}


def test_a_side_that_failed_in_any_round_is_a_failed_row_of_the_table(bench) -> None:
    compare = bench["compare_pykeen"]
    runs = [_run("kgem", "C1s", 0, triples_per_s=61234.0), _run("kgem", "C1s", 1, error="the loss became nan"),
            _run("kgem", "C1s", 2, triples_per_s=60111.0)]
    runs += [_run("pbg", "C1s", r, triples_per_s=40000.0) for r in range(3)]
    runs += [_run("kgem", "C2", r, triples_per_s=9000.0) for r in range(3)]
    runs += [_run("pykeen", "C2", r, triples_per_s=900.0) for r in range(3)]
    summary = compare.summarise(runs)
    failed = [row for row in summary if row["config"] == "C1s"]
    assert failed == [{"config": "C1s", "peer": "pbg", "error": "kgem failed in 1 of 3 runs: the loss became nan"}]
    assert [row["kgem_factor"] for row in summary if row["config"] == "C2"] == [10.0]
    hw = {"threads": 2, "matmul_gflops_per_s": 100.0, "score_t_queries": 1, "score_t_entities": 1,
          "score_t_gflops_per_s": 50.0}
    table = compare.markdown(summary, hw, runs, quick=False)
    c1s = [line for line in table.splitlines() if line.startswith("| C1s ")]
    assert c1s == ["| C1s | – | – | pbg | – | **failed**: kgem failed in 1 of 3 runs: the loss became nan | |"]
    assert "61,234" not in table and "60,111" not in table


class DivergesAfter(torch.nn.Module):
    """Margin ranking whose value becomes NaN after ``batches`` calls in each process: a run that diverges."""

    def __init__(self, batches: int) -> None:
        super().__init__()
        self.batches, self.calls = batches, 0

    def sampled(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        value = torch.relu(1 - pos.unsqueeze(1) + neg).mean()
        return value * float("nan") if self.calls > self.batches else value


def test_a_hogwild_run_whose_workers_fail_has_no_timing(bench) -> None:
    """Before: the runner went on counting the dead workers' rows until the clock ran out and printed a rate, or
    waited for ever for rows that never came."""
    from kgem.models import build_model
    from kgem.training import SLCWA, NegativeSampler, TrainingError, build_optimizer

    run_kgem, common = bench["compare.run_kgem"], bench["compare.common"]
    setting = dataclasses.replace(common.SETTINGS["C1s"], batch_size=8)
    args = argparse.Namespace(seed=0, warmup=0.0, seconds=3.0, min_batches=1)
    torch.manual_seed(0)
    model = build_model("transe", 20, 2, 8, sparse=True, normalize="none")
    approach = SLCWA(NegativeSampler(4, shared=True))
    hrt = torch.stack([torch.arange(20), torch.arange(20) % 2, (torch.arange(20) + 1) % 20], 1)
    rows = approach.prepare(hrt, model)
    optimizer = build_optimizer("rowadagrad", model.parameters(), lr=0.1)
    outcome: dict[str, Any] = {}

    def measure() -> None:
        try:
            outcome["timing"] = run_kgem.train_hogwild(setting, args, model, approach, rows, DivergesAfter(5),
                                                       optimizer)
        except Exception as error:
            outcome["error"] = error

    thread = threading.Thread(target=measure, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the runner went on waiting for rows from dead workers"
    assert "timing" not in outcome and isinstance(outcome["error"], TrainingError)
    assert "the loss became nan" in str(outcome["error"])
