"""Full-ranking metrics estimated from sampled ranks: the Wilson bounds against their closed form, the interval
collapsing on the exact metrics when every candidate is drawn, narrowing as more are, and covering the exact MRR
across seeds on a small graph."""

from __future__ import annotations

import pytest
import torch

from kgem.errors import EvaluationError
from kgem.evaluation import evaluate, evaluate_sampled
from kgem.evaluation.estimate import estimate_full_metrics, wilson_bounds
from kgem.pipeline import pipeline


@pytest.fixture(scope="module")
def trained():
    result = pipeline({"data": {"dataset": "umls"}, "model": {"name": "complex", "dim": 16},
                       "training": {"epochs": 4, "early_stopping": False}}, progress=False)
    known = result.dataset.known()
    exact = evaluate(result.model, result.dataset.test.hrt, known=known)
    return result, known, exact


def test_wilson_bounds_match_their_closed_form() -> None:
    z = 1.959963984540054
    n = torch.tensor([1e12, 1e12], dtype=torch.float64)
    low, high = wilson_bounds(torch.tensor([0.0, 5.0], dtype=torch.float64),
                              torch.tensor([20.0, 20.0], dtype=torch.float64), n, 0.95)
    assert float(low[0]) == 0 and float(high[0]) == pytest.approx(z * z / (20 + z * z), rel=1e-9)
    p, k = 0.25, 20
    center = (p + z * z / (2 * k)) / (1 + z * z / k)
    half = z * (p * (1 - p) / k + z * z / (4 * k * k)) ** 0.5 / (1 + z * z / k)
    assert float(low[1]) == pytest.approx(center - half, rel=1e-6)
    assert float(high[1]) == pytest.approx(center + half, rel=1e-6)


def test_hand_made_ranks_give_the_plug_in_estimates_and_bounds() -> None:
    # two queries, 10 of 100 candidates drawn (true answers included): sampled ranks 1 and 3
    table = estimate_full_metrics(torch.tensor([1.0, 3.0]), torch.tensor([11, 11]), torch.tensor([101, 101]))
    # plug-in full ranks: 1 + 0 * 100 / 10 = 1 and 1 + 2 * 100 / 10 = 21
    assert table.loc["mr", "estimate"] == pytest.approx(11.0)
    assert table.loc["mrr", "estimate"] == pytest.approx((1 + 1 / 21) / 2)
    assert table.loc["hits@1", "estimate"] == pytest.approx(0.5)
    for metric in ("mrr", "mr", "hits@1", "hits@10"):
        assert table.loc[metric, "low"] <= table.loc[metric, "estimate"] <= table.loc[metric, "high"]
    with pytest.raises(EvaluationError, match="level"):
        estimate_full_metrics(torch.tensor([1.0]), torch.tensor([2]), torch.tensor([3]), level=1.0)


def test_drawing_every_candidate_gives_the_exact_metrics_with_no_interval(trained) -> None:
    result, known, exact = trained
    everything = evaluate_sampled(result.model, result.dataset.test.hrt, known=known,
                                  num_negatives=result.model.num_entities)
    table = everything.estimate()
    metrics = exact.metrics()
    for metric in ("mrr", "mr", "hits@1", "hits@10"):
        assert table.loc[metric, "estimate"] == pytest.approx(metrics[metric], rel=1e-9, abs=1e-12)
        assert table.loc[metric, "low"] == pytest.approx(table.loc[metric, "high"], rel=1e-9)
    with pytest.raises(EvaluationError, match="exact"):
        exact.estimate()


def test_the_interval_covers_the_exact_mrr_across_seeds_and_narrows_with_more_samples(trained) -> None:
    result, known, exact = trained
    widths: dict[int, list[float]] = {20: [], 80: []}
    covered = 0
    for seed in range(20):
        for k in widths:
            table = evaluate_sampled(result.model, result.dataset.test.hrt, known=known, num_negatives=k,
                                     seed=seed).estimate()
            widths[k].append(table.loc["mrr", "high"] - table.loc["mrr", "low"])
            if k == 20:
                covered += table.loc["mrr", "low"] <= exact.mrr <= table.loc["mrr", "high"]
    assert covered >= 18
    assert sum(widths[80]) < sum(widths[20])


def test_a_sampled_result_prints_and_records_its_estimate(trained) -> None:
    result, known, _ = trained
    sampled = evaluate_sampled(result.model, result.dataset.test.hrt, known=known, num_negatives=30, seed=0)
    assert "full-ranking metrics estimated" in str(sampled)
    record = sampled.to_dict()["full_ranking_estimate"]
    assert set(record["mrr"]) == {"estimate", "low", "high"}
    head = sampled.estimate(side="head")
    assert head.loc["mrr", "low"] <= head.loc["mrr", "estimate"] <= head.loc["mrr", "high"]
