"""One harness over the loss registry: every loss against a plain-Python reference on a small example, masked
negatives (score -inf) exactly as if absent, and finite values and gradients at extreme scores."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

from kgem.errors import ConfigError
from kgem.training import LOSSES

MASKED = float("-inf")
Rows = list[list[float]]
Sampled = Callable[[list[float], Rows, dict[str, Any]], float]


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _log_sigmoid(x: float) -> float:
    return -_softplus(-x)


def _valid(row: list[float]) -> list[float]:
    return [n for n in row if n != MASKED]


def _log_sum_exp(xs: list[float]) -> float:
    top = max(xs)
    return top + math.log(sum(math.exp(x - top) for x in xs))


def _margin_ranking(pos: list[float], neg: Rows, args: dict[str, Any]) -> float:
    terms = [max(0.0, args.get("margin", 1.0) - p + n) for p, row in zip(pos, neg) for n in _valid(row)]
    return sum(terms) / len(terms)


def _absolute_margin(pos: list[float], neg: Rows, args: dict[str, Any]) -> float:
    terms = [max(0.0, args.get("margin", 1.0) + n) - p for p, row in zip(pos, neg) for n in _valid(row)]
    return sum(terms) / len(terms)


def _bce(pos: list[float], neg: Rows, args: dict[str, Any]) -> float:
    """Per row, labels smoothed toward 1 / (number of scores in the row, the positive and its unmasked negatives)."""
    smoothing, total, count = args.get("label_smoothing", 0.0), 0.0, 0

    def bce(x: float, y: float) -> float:
        return -(y * _log_sigmoid(x) + (1 - y) * _log_sigmoid(-x))

    for p, row in zip(pos, neg):
        share = smoothing / (1 + len(_valid(row)))
        total += bce(p, 1 - smoothing + share) + sum(bce(n, share) for n in _valid(row))
        count += 1 + len(_valid(row))
    return total / count


def _self_adversarial(pos: list[float], neg: Rows, args: dict[str, Any]) -> float:
    margin, temperature = args.get("margin", 9.0), args.get("temperature", 1.0)
    pos_loss = sum(-_log_sigmoid(margin + p) for p in pos) / len(pos)
    neg_loss = 0.0
    for row in neg:
        log_z = _log_sum_exp([temperature * n for n in _valid(row)])
        weights = [math.exp(temperature * n - log_z) for n in _valid(row)]
        neg_loss += sum(w * -_log_sigmoid(-n - margin) for w, n in zip(weights, _valid(row)))
    return (pos_loss + neg_loss / len(neg)) / 2


def _cross_entropy(pos: list[float], neg: Rows, args: dict[str, Any]) -> float:
    """The positive is the class; label smoothing spreads over the row's unmasked scores."""
    smoothing, total = args.get("label_smoothing", 0.0), 0.0
    for p, row in zip(pos, neg):
        scores = [p, *_valid(row)]
        log_z = _log_sum_exp(scores)
        log_p = [s - log_z for s in scores]
        total += -(1 - smoothing) * log_p[0] - smoothing / len(scores) * sum(log_p)
    return total / len(pos)


REFERENCE: dict[str, list[tuple[dict[str, Any], Sampled]]] = {
    "margin_ranking": [({}, _margin_ranking), ({"margin": 0.5}, _margin_ranking)],
    "absolute_margin": [({}, _absolute_margin), ({"margin": 2.0}, _absolute_margin)],
    "softplus": [({}, _bce)],  # the negative log-likelihood of a logistic model: BCE without smoothing
    "bce": [({}, _bce), ({"label_smoothing": 0.1}, _bce)],
    "self_adversarial": [({}, _self_adversarial), ({"margin": 2.0, "temperature": 0.5}, _self_adversarial),
                         ({"margin": 1.0, "temperature": 0.0}, _self_adversarial)],
    "cross_entropy": [({}, _cross_entropy), ({"label_smoothing": 0.2}, _cross_entropy)],
    "multiclass_nll": [({}, _cross_entropy)],
}
CASES = [pytest.param(name, args, formula, id=f"{name}{args or ''}") for name, rows in REFERENCE.items()
         for args, formula in rows]

POS = [1.5, -0.5, 0.25]
NEG = [[0.5, MASKED, 2.0, -1.0], [-1.0, 0.0, MASKED, MASKED], [0.75, -2.0, 1.0, 0.5]]  # masked per row


def test_every_registered_loss_has_a_reference() -> None:
    assert set(LOSSES.names()) == set(REFERENCE)


@pytest.mark.parametrize(("name", "args", "formula"), CASES)
def test_sampled_loss_equals_reference(name, args, formula) -> None:
    loss = LOSSES.get(name)(**args)
    value = loss.sampled(torch.tensor(POS, dtype=torch.float64), torch.tensor(NEG, dtype=torch.float64))
    assert value.item() == pytest.approx(formula(POS, NEG, args), rel=1e-12, abs=1e-12)


def _value_and_grads(loss: Any, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                                 torch.Tensor]:
    pos, neg = pos.clone().requires_grad_(), neg.clone().requires_grad_()
    value = loss.sampled(pos, neg)
    grad_pos, grad_neg = torch.autograd.grad(value, [pos, neg])
    return value.detach(), grad_pos, grad_neg


@pytest.mark.parametrize(("name", "args", "formula"), CASES)
def test_masked_negatives_count_as_absent(name, args, formula) -> None:
    loss = LOSSES.get(name)(**args)
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, 6, generator=g, dtype=torch.float64)
    keep = torch.tensor([0, 2, 3, 5])
    masked = neg.clone()
    masked[:, [1, 4]] = MASKED
    value, grad_pos, grad_neg = _value_and_grads(loss, pos, masked)
    absent, grad_pos_absent, grad_neg_absent = _value_and_grads(loss, pos, neg[:, keep])
    torch.testing.assert_close(value, absent, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_pos, grad_pos_absent, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_neg[:, keep], grad_neg_absent, rtol=1e-12, atol=1e-12)
    assert torch.equal(grad_neg[:, [1, 4]], torch.zeros(5, 2, dtype=torch.float64))


def test_margin_ranking_of_the_issue() -> None:
    """One pair at the margin (loss 0.25 with the other column absent), the other masked: still 0.25."""
    loss = LOSSES.get("margin_ranking")(margin=1.0)
    absent = loss.sampled(torch.tensor([1.0]), torch.tensor([[0.25]]))
    masked = loss.sampled(torch.tensor([1.0]), torch.tensor([[0.25, MASKED]]))
    assert absent.item() == masked.item() == 0.25


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("name", "args", "formula"), CASES)
def test_values_and_gradients_are_finite_at_extreme_scores(name, args, formula, dtype) -> None:
    loss = LOSSES.get(name)(**args)
    pos = torch.tensor([1e4, -1e4, 0.0, 1e4], dtype=dtype)
    neg = torch.tensor([[1e4, -1e4, MASKED], [1e4, -1e4, 0.0], [MASKED, MASKED, MASKED], [-1e4, -1e4, 1e4]],
                       dtype=dtype)
    value, grad_pos, grad_neg = _value_and_grads(loss, pos, neg)
    assert torch.isfinite(value) and torch.isfinite(grad_pos).all() and torch.isfinite(grad_neg).all()


@pytest.mark.parametrize("name", LOSSES.names())
def test_a_nan_score_is_not_mistaken_for_a_masked_one(name) -> None:
    """A diverged model's NaN must reach the loss, where training stops on it, not vanish like a mask."""
    value = LOSSES.get(name)().sampled(torch.tensor([0.5, 1.0]), torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))
    assert torch.isnan(value)


def _full_bce(scores: Rows, labels: Rows, args: dict[str, Any]) -> float:
    smoothing, total = args.get("label_smoothing", 0.0), 0.0
    for row, row_labels in zip(scores, labels):
        for x, y in zip(row, row_labels):
            y = y * (1 - smoothing) + smoothing / len(row)
            total += -(y * _log_sigmoid(x) + (1 - y) * _log_sigmoid(-x))
    return total / sum(len(row) for row in scores)


def _full_cross_entropy(scores: Rows, labels: Rows, args: dict[str, Any]) -> float:
    smoothing, total = args.get("label_smoothing", 0.0), 0.0
    for row, row_labels in zip(scores, labels):
        log_z = _log_sum_exp(row)
        target = [y / sum(row_labels) * (1 - smoothing) + smoothing / len(row) for y in row_labels]
        total += -sum(t * (x - log_z) for t, x in zip(target, row))
    return total / len(scores)


FULL_CASES = [("softplus", {}, _full_bce), ("bce", {}, _full_bce), ("bce", {"label_smoothing": 0.1}, _full_bce),
              ("cross_entropy", {}, _full_cross_entropy), ("multiclass_nll", {}, _full_cross_entropy),
              ("cross_entropy", {"label_smoothing": 0.2}, _full_cross_entropy)]


@pytest.mark.parametrize("name", LOSSES.names())
def test_full_loss_equals_reference_or_says_it_does_not_apply(name) -> None:
    scores, labels = [[0.5, -1.0, 2.0], [1e4, -1e4, 0.0]], [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    cases = [(args, formula) for n, args, formula in FULL_CASES if n == name]
    if not cases:
        with pytest.raises(ConfigError, match="KvsAll"):
            LOSSES.get(name)().full(torch.tensor(scores), torch.tensor(labels))
        return
    for args, formula in cases:
        x = torch.tensor(scores, dtype=torch.float64, requires_grad=True)
        value = LOSSES.get(name)(**args).full(x, torch.tensor(labels, dtype=torch.float64))
        assert value.item() == pytest.approx(formula(scores, labels, args), rel=1e-12)
        assert torch.isfinite(torch.autograd.grad(value, x)[0]).all()
