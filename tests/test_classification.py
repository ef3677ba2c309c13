"""Triple classification: metrics against hand-computed values, thresholds tuned on validation and applied
unchanged to test, negatives that are never known triples, and a trained model that classifies well."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kgem.data import load_dataset
from kgem.evaluation.classification import (
    ClassificationResult,
    Thresholds,
    auc_roc,
    average_precision,
    best_threshold,
    classify,
    corrupt,
    threshold_metrics,
)
from kgem.evaluation.ranks import EvaluationError
from kgem.pipeline import pipeline


def test_threshold_metrics_match_their_hand_computed_values() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = np.array([1, 0, 1, 0, 0])
    got = threshold_metrics(scores, labels, np.full(5, 0.65))  # predicted: 1 1 1 0 0 -> tp 2, fp 1, fn 0, tn 2
    assert got["accuracy"] == pytest.approx(4 / 5)
    assert got["precision"] == pytest.approx(2 / 3) and got["recall"] == 1.0
    assert got["f1"] == pytest.approx(0.8)
    assert got["mcc"] == pytest.approx((2 * 2 - 1 * 0) / math.sqrt(3 * 2 * 3 * 2))


def test_threshold_free_metrics_count_ties_as_scikit_learn_does() -> None:
    scores, labels = np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([1, 0, 1, 0, 0])
    assert auc_roc(scores, labels) == pytest.approx(5 / 6)  # 0.9 beats 3 negatives, 0.7 beats 2, of 6 pairs
    assert average_precision(scores, labels) == pytest.approx((1 + 2 / 3) / 2)
    tied, tied_labels = np.array([1.0, 1.0, 0.0]), np.array([1, 0, 1])
    assert auc_roc(tied, tied_labels) == pytest.approx(0.25)  # a tie with the negative counts half
    assert average_precision(tied, tied_labels) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)  # one step per score
    assert math.isnan(auc_roc(scores, np.ones(5)))


def test_the_best_threshold_is_the_lowest_midpoint_of_the_highest_accuracy() -> None:
    assert best_threshold(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.225)
    assert best_threshold(np.array([0.0, 1.0]), np.array([0, 1])) == pytest.approx(0.5)
    assert best_threshold(np.array([2.0, 3.0]), np.array([1, 1])) == pytest.approx(1.0)  # below the lowest


@pytest.fixture(scope="module")
def trained():
    result = pipeline(overrides=["training.epochs=20", "model.dim=32"], progress=False)
    return result


def test_thresholds_tuned_on_validation_are_applied_unchanged_to_test(trained) -> None:
    ds, model = trained.dataset, trained.model
    known = ds.known()
    valid = (ds.valid.hrt, corrupt(ds.valid.hrt, ds.num_entities, known=known, seed=1))
    test = (ds.test.hrt, corrupt(ds.test.hrt, ds.num_entities, known=known, seed=2))
    result = classify(model, valid, test)
    from kgem.evaluation.classification import _labelled

    tuned = Thresholds.tune(*_labelled(model, *valid))
    assert result.thresholds == tuned
    again = ClassificationResult(result.scores, result.labels, result.relations, tuned)
    assert again.metrics() == result.metrics()
    assert result.metrics()["accuracy"] > 0.75 and result.metrics()["auc_roc"] > 0.8
    table = result.table(per_relation=True)
    assert table.loc["all", "positives"] == len(ds.test) and len(table) > 10
    assert "accuracy" in str(result)


@pytest.mark.parametrize("strategy", ["uniform", "type", "hard"])
def test_corruptions_are_never_known_and_follow_their_strategy(strategy, trained) -> None:
    ds, model = trained.dataset, trained.model
    known = ds.known()
    hrt = ds.test.hrt
    negatives = corrupt(hrt, ds.num_entities, strategy=strategy, known=known, train=ds.train.hrt, model=model)
    assert negatives.shape == hrt.shape and not known.contains(negatives).any()
    changed = (negatives != hrt).sum(1)
    assert (changed == 1).all() and (negatives[:, 1] == hrt[:, 1]).all()
    if strategy == "type":
        train = ds.train.hrt
        for (h, r, _), (h2, _, t2) in zip(hrt.tolist(), negatives.tolist()):
            column, entity = (0, h2) if h2 != h else (2, t2)
            assert ((train[:, 1] == r) & (train[:, column] == entity)).any()


def test_hard_negatives_score_higher_than_uniform_ones(trained) -> None:
    from kgem.evaluation.classification import score_triples

    ds, model = trained.dataset, trained.model
    known = ds.known()
    uniform = corrupt(ds.test.hrt, ds.num_entities, known=known, seed=3)
    hard = corrupt(ds.test.hrt, ds.num_entities, strategy="hard", known=known, model=model, seed=3)
    assert score_triples(model, hard).mean() > score_triples(model, uniform).mean()
    with pytest.raises(EvaluationError, match="needs the model"):
        corrupt(ds.test.hrt, ds.num_entities, strategy="hard")
    with pytest.raises(EvaluationError, match="one of uniform, type, hard"):
        corrupt(ds.test.hrt, ds.num_entities, strategy="near")  # type: ignore[arg-type]


def test_uniform_corruption_is_seeded() -> None:
    hrt = load_dataset("nations").test.hrt
    assert torch.equal(corrupt(hrt, 14, seed=5), corrupt(hrt, 14, seed=5))
    assert not torch.equal(corrupt(hrt, 14, seed=5), corrupt(hrt, 14, seed=6))


def test_kgem_evaluate_classifies_a_split_with_thresholds_from_valid(tmp_path, capsys) -> None:
    import pandas as pd

    from kgem.cli import main

    trained_dir = tmp_path / "run"
    pipeline(overrides=["training.epochs=5", "model.dim=16"], progress=False, output=trained_dir)
    model = str(trained_dir / "model")
    ds = load_dataset("nations")
    negatives = tmp_path / "negatives.tsv"
    rows = [("usa", "embassy", "usa"), ("china", "intergovorgs", "burma"), ("zz", "embassy", "uk")]
    negatives.write_text("".join(f"{h}\t{r}\t{t}\n" for h, r, t in rows))
    assert main(["evaluate", model, "--task", "classification", "--per-relation", "--output",
                 str(tmp_path / "c.csv")]) == 0
    out = capsys.readouterr().out
    assert "triple classification" in out and "by relation" in out
    table = pd.read_csv(tmp_path / "c.csv", index_col=0)
    assert table.loc["all", "positives"] == len(ds.test) == table.loc["all", "negatives"]
    assert main(["evaluate", model, "--task", "classification", "--negatives", str(negatives), "--corruption",
                 "type", "--output", str(tmp_path / "given.csv")]) == 0
    given = pd.read_csv(tmp_path / "given.csv", index_col=0)
    assert given.loc["all", "negatives"] == 2  # the line with an unknown label is left out
