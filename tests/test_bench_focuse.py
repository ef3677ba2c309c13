"""bench/focuse.py trains the three modes on the numeric-edge fixture and reports medians, or a failure as failed."""

from __future__ import annotations

import argparse

from bench_script import load_bench

bench = load_bench("focuse.py", "bench_focuse")


def settings(**changes: object) -> argparse.Namespace:
    base = {"data_root": None, "data_seed": 0, "epochs": 2, "dim": 8, "lr": 0.01, "negatives": 4,
            "batch_size": 512, "regularizer_weight": 1e-3, "non_linearity": "softplus", "stop_epoch": None,
            "structural_wt": 0.001, "share": 0.1}
    return argparse.Namespace(**{**base, **changes})


def test_each_mode_reports_both_ends_of_the_test_split() -> None:
    args = settings()
    ds = bench.dataset("noisy", args)
    rows = [bench.run(ds, "distmult", mode, 0, args, "margin_ranking") for mode in bench.MODES]
    assert all(row["status"] == "ok" and row["loss"] == "margin_ranking" for row in rows)
    assert all(row["delta_mrr"] == round(row["mrr_top"] - row["mrr_bottom"], 4) for row in rows)
    assert bench.config("distmult", "focuse", 0, args)["training"]["focuse_args"]["stop_epoch"] == 1  # 2/3 of 2
    table = bench.summary([*rows, {**rows[0], "seed": 1, "mrr_all": 1.0}, {**rows[1], "status": "failed"}])
    plain = next(r for r in table if r["mode"] == "plain")
    assert plain["seeds"] == 2 and plain["mrr_all"] == round((rows[0]["mrr_all"] + 1.0) / 2, 4)  # the median of two
    assert next(r for r in table if r["mode"] == "loss")["status"] == "failed"


def test_the_ends_are_the_tenths_of_highest_and_lowest_values() -> None:
    ds = bench.dataset("noisy", settings())
    parts = bench.ends(ds, 0.1)
    weight = {tuple(row): float(w) for row, w in zip(ds.test.hrt.tolist(), ds.test.weights)}
    top, bottom = [weight[tuple(row)] for row in parts["top"].tolist()], [weight[tuple(row)] for row in
                                                                           parts["bottom"].tolist()]
    assert len(top) == len(bottom) == round(0.1 * len(ds.test)) and min(top) >= max(bottom)
    assert min(top) >= sorted(weight.values())[-len(top)]
