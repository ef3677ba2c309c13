"""Calibration of link-prediction probabilities: ECE and the reliability table against hand-computed values, the
per-query probabilities against a brute-force softmax (raw and filtered, both sides, ties), a circuit's exact
conditionals passing through unchanged, and the reliability diagram."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from kgem.circuits import CircuitModel, ComplEx2
from kgem.data.known import KnownTriples
from kgem.errors import KgemError
from kgem.evaluation import (
    Calibration,
    EvaluationError,
    expected_calibration_error,
    plot_reliability,
    query_probabilities,
    reliability_table,
)

E, R = 6, 2
CONFIDENCE = [0.0, 0.1, 0.3, 0.35, 0.85, 0.9, 1.0]
CORRECT = [0, 0, 1, 0, 1, 1, 0]


class Table(nn.Module):
    """Stand-in model: scores looked up in a fixed ``(E, R, E)`` table [h, r, t]; records the mode it was called in."""

    table: torch.Tensor

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)
        self.num_entities, self.num_relations = table.shape[0], table.shape[1]
        self.calls: list[tuple[bool, bool]] = []

    def score_t(self, h: torch.Tensor, r: torch.Tensor, tails: torch.Tensor | None = None) -> torch.Tensor:
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.table[h, r]

    def score_h(self, r: torch.Tensor, t: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.table[:, r, t].T


def triples(seed: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(E, (n,), generator=g), torch.randint(R, (n,), generator=g),
                        torch.randint(E, (n,), generator=g)], 1)


def brute_force(table: np.ndarray, hrt: np.ndarray, known: set[tuple[int, int, int]] | None,
                sides: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query, one at a time: mask the other known answers, softmax, max, first argmax, log p(true)."""
    conf, hit, true = [], [], []
    for side in sides:
        for h, r, t in hrt.tolist():
            row = table[h, r].copy() if side == "tail" else table[:, r, t].copy()
            answer = t if side == "tail" else h
            for e in range(E):
                triple = (h, r, e) if side == "tail" else (e, r, t)
                if known is not None and triple in known and e != answer:
                    row[e] = -np.inf
            p = np.exp(row - row.max())
            p /= p.sum()
            conf.append(p.max())
            hit.append(int(np.argmax(p)) == answer)  # numpy: the first (lowest-id) maximum
            true.append(math.log(p[answer]))
    return np.array(conf), np.array(hit), np.array(true)


def test_ece_matches_the_hand_computed_value() -> None:
    # 5 bins of 0.2: {0, .1} conf .05 acc 0; {.3, .35} conf .325 acc .5; {.85, .9, 1.0} conf 2.75/3 acc 2/3
    expected = (2 * 0.05 + 2 * 0.175 + 3 * 0.25) / 7
    assert expected_calibration_error(CONFIDENCE, CORRECT, bins=5) == pytest.approx(expected)
    assert expected_calibration_error([1.0, 1.0], [True, True], bins=15) == 0.0
    assert expected_calibration_error([0.0], [1], bins=1) == 1.0


def test_the_reliability_table_keeps_empty_bins() -> None:
    table = reliability_table(CONFIDENCE, np.array(CORRECT, dtype=bool), bins=5)
    assert list(table.columns) == ["lower", "upper", "count", "confidence", "accuracy"]
    assert table["lower"].tolist() == pytest.approx([0, 0.2, 0.4, 0.6, 0.8])
    assert table["upper"].tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert table["count"].tolist() == [2, 2, 0, 0, 3]
    assert table["confidence"].tolist()[:2] + table["confidence"].tolist()[4:] == pytest.approx([0.05, 0.325,
                                                                                                2.75 / 3])
    assert table["accuracy"].tolist()[:2] + table["accuracy"].tolist()[4:] == pytest.approx([0, 0.5, 2 / 3])
    assert table[["confidence", "accuracy"]].iloc[2:4].isna().all().all()


@pytest.mark.parametrize(("confidence", "correct", "bins", "message"), [
    ([0.5, 0.6], [1], 15, "differ in length"),
    ([0.5, 1.5], [1, 0], 15, r"must lie in \[0, 1\]"),
    ([-0.1], [0], 15, r"must lie in \[0, 1\]"),
    ([0.5, float("nan")], [1, 0], 15, "NaN"),
    ([], [], 15, "empty"),
    ([0.5], [0.5], 15, "0/1"),
    ([0.5], [1], 0, "bins must be a positive integer"),
])
def test_bad_input_is_one_clear_error(confidence: list, correct: list, bins: int, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        expected_calibration_error(confidence, correct, bins)
    assert "\n" not in str(raised.value)
    with pytest.raises(ValueError, match=message):
        reliability_table(confidence, correct, bins)


def test_the_summary_scores_match_their_definitions() -> None:
    curve = Calibration(np.array([0.9, 0.6]), np.array([True, False]), np.log(np.array([0.9, 0.1])),
                        np.array(["tail", "tail"]))
    assert curve.brier() == pytest.approx((0.1**2 + 0.6**2) / 2)
    assert curve.nll() == pytest.approx(-(math.log(0.9) + math.log(0.1)) / 2)
    assert curve.ece(bins=10) == pytest.approx((0.1 + 0.6) / 2)  # two bins of one query each
    summary = curve.to_dict()
    assert summary["queries"] == 2 and summary["accuracy"] == 0.5 and summary["mean_confidence"] == pytest.approx(0.75)
    assert summary["ece"] == pytest.approx(curve.ece()) and summary["brier"] == curve.brier()


@pytest.mark.parametrize("filtered", [False, True])
@pytest.mark.parametrize("ties", [False, True])
def test_query_probabilities_match_a_brute_force_softmax(filtered: bool, ties: bool) -> None:
    g = torch.Generator().manual_seed(1)
    scores = torch.randint(3, (E, R, E), generator=g).double() if ties else torch.randn(E, R, E, generator=g,
                                                                                        dtype=torch.float64)
    model, hrt, train = Table(scores), triples(2, 9), triples(3, 25)
    known = KnownTriples(torch.cat([train, hrt]), E, R) if filtered else None
    truth = {tuple(x) for x in torch.cat([train, hrt]).tolist()} if filtered else None
    model.train()
    got = query_probabilities(model, hrt, known=known, batch_size=4)
    conf, hit, true = brute_force(scores.numpy(), hrt.numpy(), truth, ("head", "tail"))
    assert got.side.tolist() == ["head"] * 9 + ["tail"] * 9 and got.filtered == filtered
    np.testing.assert_allclose(got.confidence, conf, rtol=1e-12)
    np.testing.assert_allclose(got.log_p_true, true, rtol=1e-12)
    np.testing.assert_array_equal(got.correct, hit)
    assert model.training and set(model.calls) == {(False, False)}  # eval mode and no grad inside, mode restored
    tail_only = query_probabilities(model, hrt, known=known, sides=["tail"])
    np.testing.assert_allclose(tail_only.log_p_true, true[9:], rtol=1e-12)


def test_a_tie_counts_for_the_lowest_id_only() -> None:
    scores = torch.zeros(E, R, E, dtype=torch.float64)
    scores[0, 0, 2] = scores[0, 0, 4] = 5.0  # two maxima for (0, 0, ?): entities 2 and 4
    got = query_probabilities(Table(scores), torch.tensor([[0, 0, 2], [0, 0, 4]]), sides=["tail"])
    assert got.correct.tolist() == [True, False]
    assert got.confidence == pytest.approx([math.exp(5) / (2 * math.exp(5) + E - 2)] * 2)


def test_a_circuits_conditionals_pass_through_unfiltered() -> None:
    torch.manual_seed(0)
    circuit = ComplEx2(5, 2, 3).double()
    hrt = torch.tensor([[0, 0, 1], [2, 1, 4], [3, 0, 3], [4, 1, 0]])
    got = query_probabilities(CircuitModel(circuit), hrt)
    with torch.no_grad():
        expected = torch.cat([circuit.log_head(hrt), circuit.log_tail(hrt)]).numpy()
        top = torch.cat([circuit.log_heads(hrt[:, 1], hrt[:, 2]), circuit.log_tails(hrt[:, 0], hrt[:, 1])]).max(1)
    np.testing.assert_allclose(got.log_p_true, expected, rtol=1e-10)
    np.testing.assert_allclose(got.confidence, top.values.exp().numpy(), rtol=1e-10)


def test_bad_queries_are_rejected() -> None:
    model = Table(torch.zeros(E, R, E))
    with pytest.raises(EvaluationError, match="sides"):
        query_probabilities(model, triples(0, 3), sides=["middle"])
    with pytest.raises(EvaluationError, match="batch_size"):
        query_probabilities(model, triples(0, 3), batch_size=0)
    with pytest.raises(EvaluationError, match="entity ids"):
        query_probabilities(model, torch.tensor([[0, 0, E]]))


def test_the_reliability_diagram_is_a_png(tmp_path: Path) -> None:
    image = pytest.importorskip("matplotlib.image")
    good = Calibration(np.array(CONFIDENCE), np.array(CORRECT, dtype=bool), np.zeros(7), np.array(["tail"] * 7))
    path = plot_reliability({"a": good, "b": query_probabilities(Table(torch.randn(E, R, E)), triples(0, 8))},
                            tmp_path / "plots" / "reliability.png", title="toy")
    pixels = image.imread(path)
    assert pixels.shape[:2] == (500, 500) and len(np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)) > 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["reliability.png"]  # no temporary file left
    with pytest.raises(EvaluationError, match="no curves"):
        plot_reliability({}, tmp_path / "empty.png")


def test_without_matplotlib_the_error_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    curve = Calibration(np.array([0.5]), np.array([True]), np.zeros(1), np.array(["tail"]))
    with pytest.raises(KgemError, match=r"^plotting needs matplotlib: pip install 'kgem\[plot\]'$"):
        plot_reliability({"a": curve}, tmp_path / "r.png")
    assert not (tmp_path / "r.png").exists()
