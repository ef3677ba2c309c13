"""bench/serve.py end to end with tiny settings: numbers for every endpoint, or a failure reported as failed."""

from __future__ import annotations

import argparse
import json
import sys

import pytest

from bench_script import load_bench

pytest.importorskip("fastapi")  # the serve extra, kgem[serve]
pytest.importorskip("uvicorn")
bench = load_bench("serve.py", "bench_serve")


def settings(**changes: object) -> argparse.Namespace:
    base = {"model": None, "dataset": "nations", "data_root": None, "train_model": "distmult", "dim": 8, "epochs": 1,
            "requests": 12, "clients": 3, "k": 3, "batch": 2, "seed": 0}
    return argparse.Namespace(**{**base, **changes})


def test_a_small_run_reports_latency_and_throughput_per_endpoint() -> None:
    records = bench.run(settings())
    assert [r["endpoint"] for r in records] == ["predict", "similar", "predict_batch"]
    for record in records:
        assert record["status"] == "ok" and record["requests"] == 12 and record["clients"] == 3
        assert 0 < record["p50_ms"] <= record["p99_ms"] and record["requests_per_s"] > 0


def test_a_failed_run_prints_failed_and_no_number(tmp_path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["serve.py", "--model", str(tmp_path / "missing"), "--requests", "2"])
    assert bench.main() == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["status"] == "failed" and "does not exist" in lines[0]["first_error"]
    assert not any("p50_ms" in line for line in lines) and lines[-1]["summary"]["status"] == "failed"
