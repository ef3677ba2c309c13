"""bench/classification.py runs one dataset and model end to end and reports numbers, or a failure as failed."""

from __future__ import annotations

import argparse
import math

from bench_script import load_bench

bench = load_bench("classification.py", "bench_classification")


def settings(**changes: object) -> argparse.Namespace:
    base = {"data_root": None, "corruption": "uniform", "epochs": 2, "dim": 16, "lr": 0.01, "negatives": 8,
            "batch_size": 256, "seed": 0, "approach": "slcwa", "optimizer": "adam", "regularizer": None,
            "regularizer_weight": 0.01}
    return argparse.Namespace(**{**base, **changes})


def test_one_run_reports_classification_and_every_calibrator() -> None:
    row = bench.run("nations", "distmult", settings())
    assert row["status"] == "ok"
    assert 0 <= row["classification"]["accuracy"] <= 1 and math.isfinite(row["classification"]["auc_roc"])
    assert set(row["calibration"]) == {"uncalibrated", "platt", "temperature", "isotonic"}
    assert all("ece" in report or "error" in report for report in row["calibration"].values())
    assert row["ampligraph_documented_mrr"] is None  # AmpliGraph documents FB15k-237 and WN18RR only


def test_one_vs_all_training_is_an_option() -> None:
    row = bench.run("nations", "complex", settings(approach="1vsall", optimizer="adagrad", lr=0.1, regularizer="n3"))
    assert row["status"] == "ok" and row["link_prediction_mrr"] > 0.3
