"""Calibrators against closed forms: Platt and temperature on scores taking one or two values (where the maximum
likelihood is a known logit), isotonic regression on a hand-worked pool of adjacent violators; the base-rate
weighting, the binary calibration metrics by hand, and the JSON round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from kgem.evaluation.calibrators import (
    Isotonic,
    Platt,
    Temperature,
    binary_ece,
    brier_score,
    calibration_report,
    calibrator_from_dict,
    fit_calibrator,
    log_loss,
)
from kgem.evaluation.ranks import EvaluationError


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_platt_on_two_score_values_matches_each_groups_share_of_positives() -> None:
    """With two distinct scores the two parameters fit both groups exactly: sigmoid(a s + b) = the group's share."""
    scores = np.r_[np.full(10, -1.0), np.full(10, 2.0)]
    labels = np.r_[np.ones(3), np.zeros(7), np.ones(8), np.zeros(2)]  # shares 0.3 and 0.8
    fit = Platt.fit(scores, labels)
    assert fit.a * -1.0 + fit.b == pytest.approx(logit(0.3), abs=1e-8)
    assert fit.a * 2.0 + fit.b == pytest.approx(logit(0.8), abs=1e-8)
    assert fit.probabilities(np.array([2.0]))[0] == pytest.approx(0.8)


def test_platt_zeroes_the_gradient_of_the_log_loss_on_random_scores() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=500)
    labels = (rng.random(500) < 1 / (1 + np.exp(-(2 * scores - 0.5)))).astype(float)
    fit = Platt.fit(scores, labels)
    p = fit.probabilities(scores)
    assert abs(np.sum(p - labels)) < 1e-6 and abs(np.sum((p - labels) * scores)) < 1e-6
    assert fit.a == pytest.approx(2.0, abs=0.5) and fit.b == pytest.approx(-0.5, abs=0.4)


def test_temperature_on_one_score_value_is_the_score_over_the_logit_of_the_share() -> None:
    scores, labels = np.full(10, 3.0), np.r_[np.ones(9), np.zeros(1)]
    assert Temperature.fit(scores, labels).temperature == pytest.approx(3.0 / logit(0.9), rel=1e-9)
    with pytest.raises(EvaluationError, match="no temperature"):
        Temperature.fit(np.array([1.0, 2.0, -1.0]), np.array([0.0, 0.0, 1.0]))


def test_isotonic_pools_adjacent_violators_and_interpolates_between_knots() -> None:
    fit = Isotonic.fit(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 0.0, 1.0, 1.0]))
    assert fit.y == (0.5, 0.5, 1.0, 1.0)  # (1, 0) violate the order: pooled to their mean
    assert fit.probabilities(np.array([0.0, 2.5, 9.0])).tolist() == [0.5, 0.75, 1.0]
    tied = Isotonic.fit(np.array([1.0, 1.0, 2.0]), np.array([1.0, 0.0, 1.0]))
    assert tied.x == (1.0, 2.0) and tied.y == (0.5, 1.0)  # equal scores get one value
    rng = np.random.default_rng(1)
    noisy = Isotonic.fit(rng.normal(size=300), rng.integers(0, 2, 300))
    assert np.all(np.diff(noisy.y) >= 0)


def test_a_positive_base_rate_weighs_the_positives_to_that_share() -> None:
    scores = np.r_[np.full(10, 1.0), np.full(90, 0.0)]
    labels = np.r_[np.ones(10), np.zeros(90)]  # scores separate them: what counts is the weighting
    iso = Isotonic.fit(scores, labels, positive_base_rate=0.5)
    assert iso.y == (0.0, 1.0)
    mixed = np.r_[np.ones(5), np.zeros(5), np.zeros(90)]  # score 1: half positive; weighted, 5 * 5 vs 5 * 5 / 9
    weighted = Isotonic.fit(scores, mixed, positive_base_rate=0.5)
    w_pos, w_neg = 0.5 * 100 / 5, 0.5 * 100 / 95
    assert weighted.y[1] == pytest.approx(5 * w_pos / (5 * w_pos + 5 * w_neg))
    with pytest.raises(EvaluationError, match="positive_base_rate"):
        Platt.fit(scores, labels, positive_base_rate=1.5)


def test_binary_metrics_match_their_hand_computed_values() -> None:
    p, y = np.array([0.1, 0.4, 0.8, 0.9]), np.array([0, 1, 1, 1])
    assert brier_score(p, y) == pytest.approx((0.01 + 0.36 + 0.04 + 0.01) / 4)
    assert log_loss(p, y) == pytest.approx(-(math.log(0.9) + math.log(0.4) + math.log(0.8) + math.log(0.9)) / 4)
    # two bins: [0, 0.5) holds 0.1 (label 0) and 0.4 (label 1): |0.25 - 0.5|; [0.5, 1] holds 0.8, 0.9: |0.85 - 1|
    assert binary_ece(p, y, bins=2) == pytest.approx(0.5 * 0.25 + 0.5 * 0.15)
    assert set(calibration_report(p, y)) == {"ece", "brier", "log_loss"}


@pytest.mark.parametrize("kind", ["platt", "temperature", "isotonic"])
def test_a_calibrator_round_trips_through_json(kind) -> None:
    rng = np.random.default_rng(2)
    scores = rng.normal(size=200)
    labels = (rng.random(200) < 1 / (1 + np.exp(-scores))).astype(float)
    fitted = fit_calibrator(kind, scores, labels)
    again = calibrator_from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert again == fitted
    assert np.array_equal(again.probabilities(scores), fitted.probabilities(scores))


def test_bad_calibrator_input_is_named() -> None:
    with pytest.raises(EvaluationError, match="labels 0 and 1, both present"):
        Platt.fit(np.array([1.0, 2.0]), np.array([1.0, 1.0]))
    with pytest.raises(EvaluationError, match="one of platt, temperature, isotonic"):
        fit_calibrator("beta", np.array([1.0, 2.0]), np.array([0.0, 1.0]))
    with pytest.raises(EvaluationError, match="isotonic: malformed"):
        calibrator_from_dict({"kind": "isotonic", "x": [2.0, 1.0], "y": [0.1, 0.2]})


def test_a_calibrated_model_saves_and_reloads_with_identical_probabilities(tmp_path, capsys) -> None:
    import kgem
    from kgem.cli import main
    from kgem.pipeline import pipeline

    pipeline(overrides=["training.epochs=5", "model.dim=16"], progress=False, output=tmp_path / "run")
    folder = tmp_path / "run" / "model"
    loaded = kgem.load(folder)
    with pytest.raises(Exception, match="predict_proba needs a calibrated model"):
        loaded.predict_proba([("usa", "embassy", "uk")])
    calibrated = loaded.calibrate(kgem.data.load_dataset("nations"), "isotonic")
    triples = [("usa", "embassy", "uk"), ("uk", "embassy", "usa"), ("china", "intergovorgs", "burma")]
    before = calibrated.predict_proba(triples)
    assert ((before >= 0) & (before <= 1)).all()
    calibrated.save(tmp_path / "saved")
    again = kgem.load(tmp_path / "saved")
    assert again.calibrator == calibrated.calibrator
    assert np.array_equal(again.predict_proba(triples), before)
    frame = again.predict_tails([("usa", "embassy")], k=3)
    assert np.array_equal(frame["probability"].to_numpy(), again.calibrator.probabilities(frame["score"].to_numpy()))
    assert main(["calibrate", str(folder), "--method", "platt", "--plot", str(tmp_path / "rel.png")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "platt" and set(report["test"]) == {"before", "after"}
    assert report["test"]["after"]["ece"] <= report["test"]["before"]["ece"] + 0.05
    assert (tmp_path / "rel.png").stat().st_size > 1000
    assert kgem.load(folder).calibrator is not None  # saved beside the weights
    (folder / "calibration.json").write_text("{\"kind\": \"platt\"}")
    with pytest.raises(Exception, match="calibration.json: not a calibrator"):
        kgem.load(folder)
