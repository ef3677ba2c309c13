"""bench/gekc.py: its training loop stops at the budget, a failed run is a failed record (never numbers), and the
quick path runs end to end on a tiny synthetic dataset folder, writing its JSON, markdown table and reliability
diagram (or a note without matplotlib), and its Sem@k matches a brute-force count against the train's domains."""

from __future__ import annotations

import importlib
import json
import math
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from kgem.data import Dataset
from kgem.models import build_model

BENCH = Path(__file__).resolve().parents[1] / "bench"
NUM_ENTITIES, NUM_RELATIONS = 12, 2


@pytest.fixture
def gekc(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/gekc.py imported as the script runs (bench/ on the path)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("gekc")


def write_folder(root: Path, num_entities: int, every: int = 5) -> Path:
    """train/valid/test.txt over ``num_entities`` entities (about one pair in ``every``); the test triples are the
    first six, train the rest."""
    root.mkdir(parents=True)
    lines = [f"e{h}\tr{(h + t) % NUM_RELATIONS}\te{t}" for h in range(num_entities) for t in range(num_entities)
             if (h * 7 + t * 3) % every == 0 and h != t]
    (root / "train.txt").write_text("\n".join(lines[6:]) + "\n")
    (root / "valid.txt").write_text("\n".join(lines[:3]) + "\n")
    (root / "test.txt").write_text("\n".join(lines[:6]) + "\n")
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A dataset folder ``tiny/`` of train/valid/test.txt in which every entity and relation occurs in train."""
    return write_folder(tmp_path / "data" / "tiny", NUM_ENTITIES)


def test_the_budget_stops_the_batches_on_the_clock(gekc) -> None:
    rows = torch.arange(30).reshape(10, 3)
    budget = gekc.Budget(0.05)
    for _ in budget.batches(rows, 4, torch.Generator().manual_seed(0)):
        time.sleep(0.01)
    assert 4 <= budget.steps <= 7  # 10 ms a step: the budget is spent after about 5 steps, spanning epochs
    timing = budget.timing(len(rows), 4)
    assert timing["epochs"] == pytest.approx(budget.steps / 3, abs=1e-3)  # 3 batches an epoch
    assert timing["seconds_per_epoch"] == pytest.approx(3 * timing["seconds_per_step"])
    none = gekc.Budget(0.0)
    assert len(list(none.batches(rows, 4, torch.Generator()))) == 1  # always at least one step


def test_a_failure_or_a_nan_is_a_failed_record_without_metrics(gekc) -> None:
    args = gekc.parse(["--quick"])

    def raises() -> dict:
        raise RuntimeError("the loss became nan at epoch 1, batch 3")

    failed = gekc.guarded("tiny", "cp2-pll", args, raises)
    assert failed["status"] == "failed" and "RuntimeError: the loss became nan" in failed["error"]
    assert not any(key.startswith("test_") for key in failed)
    nan = gekc.guarded("tiny", "complex", args, lambda: {"test_mrr": float("nan"), "steps": 3, "settings": {}})
    assert nan["status"] == "failed" and nan["error"] == "non-finite test_mrr" and "test_mrr" not in nan
    row = gekc.table([failed]).splitlines()[-1]
    assert "failed" in row and "the loss became nan" in row and row.count("|") == 24  # as many cells as the header


def run_quick(gekc: ModuleType, folder: Path, out: Path) -> list[dict]:
    return gekc.main(["--quick", "--dataset", folder.name, "--data-root", str(folder.parent), "--out", str(out),
                      "--budget-seconds", "0.1", "--rank", "4", "--batch-size", "16", "--ktd-samples", "5",
                      "--threads", "1"])


def test_the_quick_path_runs_end_to_end_on_a_tiny_folder(gekc, folder: Path, tmp_path: Path) -> None:
    records = run_quick(gekc, folder, tmp_path / "out")
    assert [r["model"] for r in records] == ["complex", "complex2-pll", "complex2-mle", "cp2-pll"]
    assert all(r["status"] == "ok" and r["steps"] >= 1 for r in records), records
    uniform = -(2 * math.log(NUM_ENTITIES) + math.log(NUM_RELATIONS))
    for r in records[1:]:
        assert r["uniform_log_likelihood"] == pytest.approx(uniform)
        assert r["test_log_likelihood"] < 0 and 0 < r["test_mrr"] <= 1 and r["ktd"] is not None
        assert r["ktd_uniform"] == records[0]["ktd_uniform"]  # one feature model, one set of uniform triples
    for r in records:  # calibration and Sem@k of every run, the plain ComplEx's included
        assert 0 <= r["ece"] <= 1 and 0 <= r["brier"] <= 1 and 0 < r["nll_filtered"] < math.inf
        assert all(0 <= r[f"sem@{k}"] <= 1 for k in (1, 3, 10)), r
    saved = json.loads(next((tmp_path / "out").glob("results-*.json")).read_text())
    assert [r["model"] for r in saved["runs"]] == [r["model"] for r in records]
    assert all(r["sem@10"] == saved_r["sem@10"] for r, saved_r in zip(records, saved["runs"], strict=True))
    *table, blank, note = next((tmp_path / "out").glob("results-*.md")).read_text().splitlines()
    assert len(table) == 2 + len(records) and all("| ok |" in line for line in table[2:])
    assert "| H@10 | Sem@1 | Sem@3 | Sem@10 | test LL |" in table[0] and all(line.count("|") == 24 for line in table)
    assert table[0].endswith("| ECE | Brier | NLL filt. |")
    assert blank == "" and note.startswith("Sem@k against domains/ranges observed in train")
    sem = table[0].split("|").index(" Sem@1 ")
    for line, r in zip(table[2:], records, strict=True):  # the cells are the records' numbers
        assert [float(c) for c in line.split("|")[sem : sem + 3]] == pytest.approx(
            [r[f"sem@{k}"] for k in (1, 3, 10)], rel=1e-3)
    image = pytest.importorskip("matplotlib.image")
    png = next((tmp_path / "out").glob(f"reliability-{folder.name}-*.png"))
    pixels = image.imread(png)
    assert pixels.shape[:2] == (500, 500) and len(np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)) > 1


def test_without_matplotlib_the_diagram_is_skipped_with_a_note(gekc, folder: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    records = run_quick(gekc, folder, tmp_path / "out")
    assert all(r["status"] == "ok" and "ece" in r for r in records)
    assert "no reliability diagram (plotting needs matplotlib" in capsys.readouterr().out
    assert not list((tmp_path / "out").glob("reliability-*.png")) and list((tmp_path / "out").glob("results-*.md"))


def test_without_a_feature_model_the_circuits_run_and_say_why_no_ktd(gekc, folder: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise ValueError("diverged")

    monkeypatch.setattr(gekc, "train_complex", broken)
    records = run_quick(gekc, folder, tmp_path / "out")
    assert records[0]["status"] == "failed" and records[0]["error"] == "ValueError: diverged"
    assert all(r["status"] == "ok" and r["ktd"] is None and "failed" in r["ktd_note"] for r in records[1:])


def brute_sem(model: torch.nn.Module, triples: torch.Tensor, train: torch.Tensor, k: int) -> float:
    """Sem@k counted by hand: every entity scored, sorted (ties to the lower id), the k best checked against the
    heads (head queries) or tails (tail queries) that each relation has in ``train``; the two sides averaged."""
    heads = {(r, h) for h, r, _ in train.tolist()}
    tails = {(r, t) for _, r, t in train.tolist()}
    side_means = []
    for side in ("head", "tail"):
        shares = []
        for h, r, t in triples.tolist():
            with torch.no_grad():
                scores = (model.score_h(torch.tensor([r]), torch.tensor([t])) if side == "head"
                          else model.score_t(torch.tensor([h]), torch.tensor([r])))[0].tolist()
            best = sorted(range(len(scores)), key=lambda e: (-scores[e], e))[:k]
            allowed = heads if side == "head" else tails
            shares.append(sum((r, e) in allowed for e in best) / k)
        side_means.append(sum(shares) / len(shares))
    return sum(side_means) / 2


def test_the_bench_sem_at_k_matches_a_brute_force_count_against_train(gekc, folder: Path) -> None:
    data = Dataset.from_folder(folder)
    bench = gekc.Bench(data, gekc.parse(["--quick"]))
    torch.manual_seed(3)
    model = build_model("complex", data.num_entities, data.num_relations, 4, inverse=True)
    got = bench.semantic(model)
    assert sorted(got) == ["sem@1", "sem@10", "sem@3"]
    for k in (1, 3, 10):
        assert got[f"sem@{k}"] == pytest.approx(brute_sem(model, bench.ranked, data.train.hrt, k), abs=1e-12)
    assert len({round(v, 9) for v in got.values()}) > 1  # the ks see different top lists, not one constant


def test_a_sem_k_above_the_entity_count_is_left_out(gekc, tmp_path: Path) -> None:
    data = Dataset.from_folder(write_folder(tmp_path / "small", 8, every=1))
    bench = gekc.Bench(data, gekc.parse(["--quick"]))
    torch.manual_seed(0)
    got = bench.semantic(build_model("complex", data.num_entities, data.num_relations, 4, inverse=True))
    assert sorted(got) == ["sem@1", "sem@3"] and data.num_entities == 8
    row = gekc.table([{"dataset": "small", "model": "complex", "status": "ok", **got}]).splitlines()[-1]
    assert row.count("|") == 24 and row.split("|")[16].strip() == "–"  # the Sem@10 cell is empty
