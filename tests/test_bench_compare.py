"""bench/compare reports a side whose run failed (an exception, a NaN loss, a dead worker) as failed, in the runner's
JSON, the orchestrator's records, its summary and its table, never as a number. No benchmark is run."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import subprocess
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
    names = ("compare.common", "compare.run_kgem", "compare.sides", "compare.report", "compare_pykeen")
    return {name: importlib.import_module(name) for name in names}


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
    assert c1s == ["| C1s | – | – | pbg | – | **failed**: kgem failed in 1 of 3 runs: the loss became nan | | |"]
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


BASE = "kgem@abc1234"
HW = {"threads": 2, "matmul_gflops_per_s": 100.0, "score_t_queries": 1, "score_t_entities": 1,
      "score_t_gflops_per_s": 50.0}


def _eval(side: str, config: str, round_: int, seconds: float, peak: float) -> dict[str, Any]:
    return {"side": side, "config": config, "round": round_, "kind": "eval", "seconds": seconds, "peak_rss_mb": peak}


def test_rows_against_a_baseline_compare_kgem_with_the_old_code_and_flag_a_regression(bench) -> None:
    """Throughput: kgem's best round below the baseline's worst is a regression; seconds and memory: kgem's best
    above the baseline's worst. Overlapping spreads, or a tie at the edge, are not."""
    compare = bench["compare_pykeen"]
    runs = [_run("kgem", "C2", r, triples_per_s=v) for r, v in enumerate([1000.0, 1100.0, 1050.0])]
    runs += [_run(BASE, "C2", r, triples_per_s=v) for r, v in enumerate([900.0, 950.0, 1000.0])]
    runs += [_run("kgem", "C3", r, triples_per_s=v) for r, v in enumerate([800.0, 850.0, 899.0])]
    runs += [_run(BASE, "C3", r, triples_per_s=v) for r, v in enumerate([900.0, 950.0, 1000.0])]
    runs += [_eval("kgem", "E1", r, s, m) for r, (s, m) in enumerate([(10.0, 500.0), (12.0, 510.0), (11.0, 505.0)])]
    runs += [_eval(BASE, "E1", r, s, m) for r, (s, m) in enumerate([(9.0, 520.0), (9.5, 530.0), (8.0, 510.0)])]
    summary = compare.summarise(runs, {"C2": [BASE], "C3": [BASE], "E1": [BASE]})
    got = {(row["config"], row["metric"]): row for row in summary}
    assert all(row["baseline"] and row["peer"] == BASE and row["target"] is None for row in summary)
    assert got["C2", "triples_per_s"]["kgem_factor"] == pytest.approx(1050 / 950)
    assert got["C2", "triples_per_s"]["peer_stats"] == {"median": 950.0, "min": 900.0, "max": 1000.0, "n": 3}
    assert got["E1", "seconds"]["kgem_factor"] == pytest.approx(9.0 / 11.0)
    assert got["E1", "peak_rss_mb"]["kgem_factor"] == pytest.approx(520.0 / 505.0)
    regressions = {key: row["regression"] for key, row in got.items()}
    assert regressions == {("C2", "triples_per_s"): False, ("C3", "triples_per_s"): True,
                           ("E1", "seconds"): True, ("E1", "peak_rss_mb"): False}  # 510 vs 510: a tie at the edge
    table = compare.markdown(summary, HW, runs, quick=False)
    assert "| C2 | triples_per_s | 1,050 (1,000–1,100) | kgem@abc1234 | 950 (900–1,000) | 1.11x |  | no |" in table
    assert "| C3 | triples_per_s | 850 (800–899) | kgem@abc1234 | 950 (900–1,000) | 0.89x |  | **yes** |" in table
    assert "**regression** against kgem@abc1234" in table and "C3 triples_per_s, E1 seconds" in table
    fine = compare.summarise(runs, {"C2": [BASE]})
    assert "no regression against kgem@abc1234" in compare.markdown(fine, HW, runs, quick=False)
    assert json.loads(json.dumps(summary)) == summary  # the JSON has the same rows


def test_a_failed_baseline_run_is_a_failed_row(bench) -> None:
    compare = bench["compare_pykeen"]
    runs = [_run("kgem", "C2", r, triples_per_s=1000.0) for r in range(2)]
    runs += [_run(BASE, "C2", 0, triples_per_s=1000.0), _run(BASE, "C2", 1, error="exit 1; see log")]
    runs += [_run("kgem", "C4", r, triples_per_s=1000.0) for r in range(2)]
    summary = compare.summarise(runs, {"C2": [BASE], "C4": [BASE]})
    assert summary[0] == {"config": "C2", "peer": BASE, "baseline": True,
                          "error": "kgem@abc1234 failed in 1 of 2 runs: exit 1; see log"}
    assert summary[1] == {"config": "C4", "peer": BASE, "baseline": True, "error": "kgem@abc1234 has no run"}
    table = compare.markdown(summary, HW, runs, quick=False)
    assert "| C2 | – | – | kgem@abc1234 | – | **failed**: kgem@abc1234 failed in 1 of 2 runs: exit 1; see log | | |" \
        in table
    assert "failed, so not checked: C2, C4" in table


def test_peers_none_selects_no_peer_and_the_rounds_alternate(bench) -> None:
    compare = bench["compare_pykeen"]
    assert compare.parse_args(["--configs", "C2,E1", "--peers", "none"]).peers == {"C2": [], "E1": []}
    assert compare.parse_args(["--configs", "C2,E1"]).peers == {"C2": ["pykeen"], "E1": ["pykeen", "pbg"]}
    assert compare.parse_args(["--configs", "C2,E1", "--peers", "pbg"]).peers == {"C2": [], "E1": ["pbg"]}
    for bad in (["--peers", "pykeen,bogus"], ["--peers", "none,pbg"], ["--peers", ","],
                ["--baseline", "no-such-ref-0123"]):
        with pytest.raises(SystemExit):
            compare.parse_args(["--configs", "C2", *bad])
    assert [compare.round_order(["kgem", BASE], r) for r in range(3)] == [["kgem", BASE], [BASE, "kgem"],
                                                                          ["kgem", BASE]]


FAKE_RUNNER = """import json, sys
import kgem
print(json.dumps({"side": "kgem", "config": sys.argv[sys.argv.index("--config") + 1], "kind": "train",
                  "triples_per_s": kgem.RATE, "kgem_path": kgem.__file__}))
"""


def _git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    return subprocess.run(["git", "-C", str(repo), *identity, *args], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    """A one-commit git repository laid out as this one: a fake kgem in src/ and a fake kgem runner in bench/."""
    repo = tmp_path / "repo"
    files = {"src/kgem/__init__.py": "RATE = 123.0\n", "bench/compare/__init__.py": "",
             "bench/compare/run_kgem.py": FAKE_RUNNER, "README.md": "tiny\n"}
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo.parent, "init", "-q", str(repo))
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    return repo


def test_exporting_a_ref_is_complete_idempotent_and_leaves_the_repository_alone(bench, tiny_repo, tmp_path) -> None:
    sides = bench["compare.sides"]
    sha, status = _git(tiny_repo, "rev-parse", "HEAD"), _git(tiny_repo, "status", "--porcelain")
    root = tmp_path / "baselines"
    tree = sides.export_tree(tiny_repo, "HEAD", root)
    assert tree == root / sha and sorted(root.iterdir()) == [tree]
    names = _git(tiny_repo, "ls-tree", "-r", "--name-only", "HEAD").splitlines()
    exported = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file() and p.name != sides.MARKER)
    assert exported == sorted(names)
    assert all((tree / n).read_bytes() == (tiny_repo / n).read_bytes() for n in names)
    assert json.loads((tree / sides.MARKER).read_text())["files"] == len(names)
    (tree / "README.md").write_text("changed")  # a complete tree is reused as it is
    assert sides.export_tree(tiny_repo, sha, root) == tree and (tree / "README.md").read_text() == "changed"
    (tree / sides.MARKER).unlink()  # an interrupted export is done again
    assert sides.export_tree(tiny_repo, sha[:7], root) == tree and (tree / "README.md").read_text() == "tiny\n"
    assert sorted(root.iterdir()) == [tree]  # no partial folder left behind
    assert (_git(tiny_repo, "rev-parse", "HEAD"), _git(tiny_repo, "status", "--porcelain")) == (sha, status)
    with pytest.raises(ValueError, match="names no commit"):
        sides.export_tree(tiny_repo, "no-such-ref", root)


def test_the_baseline_side_runs_the_exported_trees_runner_and_kgem(bench, tiny_repo, tmp_path) -> None:
    """The checkout's kgem is installed in this interpreter; the baseline side must import the exported one."""
    sides, compare, run_kgem = bench["compare.sides"], bench["compare_pykeen"], bench["compare.run_kgem"]
    tree = sides.export_tree(tiny_repo, "HEAD", tmp_path / "baselines")
    side = sides.baseline(tree, tree.name)
    args = argparse.Namespace(data=str(tmp_path), threads=1, quick=True, timeout=60, omp_wait_policy="PASSIVE")
    plan = compare.QUICK
    record = compare.run_side(side, "C2", args, plan, tmp_path / "C2.log")
    assert side.name == f"kgem@{tree.name[:7]}" and record["side"] == side.name and "error" not in record
    assert record["triples_per_s"] == 123.0 and record["kgem_path"] == str(tree / "src" / "kgem" / "__init__.py")
    env = compare.child_env(1, "PASSIVE", side.pythonpath)
    assert sides.kgem_origin(side, env) == record["kgem_path"]
    assert Path(run_kgem.kgem_path()).is_relative_to(Path(__file__).resolve().parents[1] / "src")
    elsewhere = sides.Side(side.name, side.runner, side.python, side.cwd, side.pythonpath, tmp_path / "other")
    wrong = compare.run_side(elsewhere, "C2", args, plan, tmp_path / "C2-wrong.log")
    assert "imported kgem from" in wrong["error"] and "triples_per_s" not in wrong
