"""Calibrators: a model's triple scores turned into probabilities that a triple is true, fitted on labelled triples.

- ``platt``: ``p = sigmoid(a * score + b)``, ``a`` and ``b`` by maximum likelihood (Platt 1999, as AmpliGraph
  calibrates), fitted by Newton's method on the two parameters;
- ``temperature``: ``p = sigmoid(score / T)``, one parameter by maximum likelihood (Guo et al. 2017, for scores
  already on a logit scale);
- ``isotonic``: the non-decreasing step function of the score closest to the labels in squared error (pool adjacent
  violators; Zadrozny and Elkan 2002), read between its steps by linear interpolation and clipped at the ends, as
  scikit-learn's ``IsotonicRegression`` reads it.

The labelled triples are the validation positives and negatives: given ones, or corruptions. Corruptions are far more
numerous than true triples in the world, so with ``positive_base_rate`` (AmpliGraph's second mode) the positives
and the negatives are weighted to that share of positives, whatever their counts. Each calibrator is a few numbers,
saved as JSON (``to_dict`` / ``calibrator_from_dict``): never a pickle.

Binary calibration metrics: ``binary_ece`` (the expected calibration error over equal-width bins of the
probability), ``brier_score`` and ``log_loss``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from kgem.evaluation.calibration import Calibration, plot_reliability
from kgem.evaluation.ranks import EvaluationError

CalibratorKind = Literal["platt", "temperature", "isotonic"]
CALIBRATORS = ("platt", "temperature", "isotonic")
EPS = 1e-12


class Calibrator(Protocol):
    @property
    def kind(self) -> str: ...

    def probabilities(self, scores: np.ndarray) -> np.ndarray: ...

    def to_dict(self) -> dict[str, Any]: ...


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def _weights(labels: np.ndarray, positive_base_rate: float | None) -> np.ndarray:
    """Per-triple weights, summing to the number of triples: 1 each, or with ``positive_base_rate`` the positives'
    total weight that share of the whole."""
    if positive_base_rate is None:
        return np.ones(len(labels))
    if not 0 < positive_base_rate < 1:
        raise EvaluationError(f"positive_base_rate must lie in (0, 1), got {positive_base_rate}")
    positives = labels.sum()
    negatives = len(labels) - positives
    return np.where(labels > 0, positive_base_rate * len(labels) / positives,
                    (1 - positive_base_rate) * len(labels) / negatives)


def _check(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s, y = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(labels, dtype=np.float64).ravel()
    if len(s) != len(y) or not len(s):
        raise EvaluationError(f"a calibrator needs as many labels as scores, and some: got {len(s)} and {len(y)}")
    if not np.isfinite(s).all():
        raise EvaluationError("a calibrator's scores must be finite")
    if not ((y == 0) | (y == 1)).all() or y.min() == y.max():
        raise EvaluationError("a calibrator needs labels 0 and 1, both present")
    return s, y


@dataclass(frozen=True)
class Platt:
    """``p = sigmoid(a * score + b)``. On separable scores the likelihood has no maximum: ``a`` grows for the
    ``iterations`` Newton steps, giving near 0/1 probabilities, as the data says."""

    a: float
    b: float
    kind: str = "platt"

    @classmethod
    def fit(cls, scores: Any, labels: Any, *, positive_base_rate: float | None = None,
            iterations: int = 100) -> Platt:
        """Maximum likelihood by Newton's method with step halving (the weighted log loss is convex in (a, b))."""
        s, y = _check(scores, labels)
        w = _weights(y, positive_base_rate)
        scale = max(float(np.std(s)), EPS)
        x = (s - s.mean()) / scale  # standardised: a well-conditioned Hessian
        theta = np.zeros(2)
        loss = _weighted_log_loss(theta, x, y, w)
        for _ in range(iterations):
            p = _sigmoid(theta[0] * x + theta[1])
            grad = np.array([np.sum(w * (p - y) * x), np.sum(w * (p - y))])
            if np.abs(grad).max() <= 1e-10 * len(x):
                break
            curvature = w * p * (1 - p)
            hessian = np.array([[np.sum(curvature * x * x), np.sum(curvature * x)],
                                [np.sum(curvature * x), np.sum(curvature)]]) + 1e-12 * np.eye(2)
            step, shrink = np.linalg.solve(hessian, grad), 1.0
            trial_loss = _weighted_log_loss(theta - step, x, y, w)
            while trial_loss > loss and shrink > 1e-10:  # halve the step until the loss does not rise
                shrink /= 2
                trial_loss = _weighted_log_loss(theta - shrink * step, x, y, w)
            if trial_loss > loss:
                break
            theta, loss = theta - shrink * step, trial_loss
        a = theta[0] / scale
        return cls(float(a), float(theta[1] - a * s.mean()))

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        return _sigmoid(self.a * np.asarray(scores, dtype=np.float64) + self.b)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "a": self.a, "b": self.b}


def _weighted_log_loss(theta: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    z = theta[0] * x + theta[1]
    return float(np.sum(w * (np.logaddexp(0.0, z) - y * z)))  # -y log p - (1 - y) log (1 - p)


@dataclass(frozen=True)
class Temperature:
    """``p = sigmoid(score / temperature)``."""

    temperature: float
    kind: str = "temperature"

    @classmethod
    def fit(cls, scores: Any, labels: Any, *, positive_base_rate: float | None = None) -> Temperature:
        """Maximum likelihood over ``1 / T`` (convex in it) by Newton's method on the one parameter; a negative
        optimum (scores that rank negatives higher) is an error, as no temperature makes them probabilities."""
        s, y = _check(scores, labels)
        w = _weights(y, positive_base_rate)
        inverse = 1.0 / max(float(np.std(s)), float(np.mean(np.abs(s))), EPS)
        loss = _weighted_log_loss(np.array([inverse, 0.0]), s, y, w)
        for _ in range(100):
            p = _sigmoid(inverse * s)
            grad = float(np.sum(w * (p - y) * s))
            step, shrink = grad / (float(np.sum(w * p * (1 - p) * s * s)) + EPS), 1.0
            trial_loss = _weighted_log_loss(np.array([inverse - step, 0.0]), s, y, w)
            while trial_loss > loss and shrink > 1e-10:  # halve the step until the loss does not rise
                shrink /= 2
                trial_loss = _weighted_log_loss(np.array([inverse - shrink * step, 0.0]), s, y, w)
            if trial_loss > loss:
                break
            inverse, loss = inverse - shrink * step, trial_loss
            if abs(shrink * step) <= 1e-12 * max(1.0, abs(inverse)):
                break
        if not inverse > 0:
            raise EvaluationError("the scores rank the negatives above the positives: no temperature calibrates "
                                  "them (use platt or isotonic)")
        return cls(1.0 / inverse)

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        return _sigmoid(np.asarray(scores, dtype=np.float64) / self.temperature)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "temperature": self.temperature}


@dataclass(frozen=True)
class Isotonic:
    """A non-decreasing step function of the score: the knots ``x`` (sorted scores) and their fitted values ``y``,
    read by linear interpolation between them and clipped outside them."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    kind: str = "isotonic"

    @classmethod
    def fit(cls, scores: Any, labels: Any, *, positive_base_rate: float | None = None) -> Isotonic:
        """Pool adjacent violators over the scores in order (equal scores pooled first: one value per score)."""
        s, y = _check(scores, labels)
        w = _weights(y, positive_base_rate)
        order = np.argsort(s, kind="stable")
        s, y, w = s[order], y[order], w[order]
        knots, first = np.unique(s, return_index=True)
        sums, totals = np.add.reduceat(w * y, first), np.add.reduceat(w, first)
        values, weights, sizes = [], [], []  # a stack of pooled blocks
        for value, weight in zip(sums / totals, totals, strict=True):
            values.append(value)
            weights.append(weight)
            sizes.append(1)
            while len(values) > 1 and values[-2] >= values[-1]:
                merged = weights[-2] + weights[-1]
                values[-2] = (values[-2] * weights[-2] + values[-1] * weights[-1]) / merged
                weights[-2], sizes[-2] = merged, sizes[-2] + sizes[-1]
                del values[-1], weights[-1], sizes[-1]
        fitted = np.repeat(values, sizes)
        return cls(tuple(float(k) for k in knots), tuple(float(v) for v in fitted))

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(scores, dtype=np.float64), self.x, self.y)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "x": list(self.x), "y": list(self.y)}


def fit_calibrator(kind: str, scores: Any, labels: Any, *, positive_base_rate: float | None = None) -> Calibrator:
    """The calibrator ``kind`` fitted to labelled scores (see the module docstring)."""
    if kind == "platt":
        return Platt.fit(scores, labels, positive_base_rate=positive_base_rate)
    if kind == "temperature":
        return Temperature.fit(scores, labels, positive_base_rate=positive_base_rate)
    if kind == "isotonic":
        return Isotonic.fit(scores, labels, positive_base_rate=positive_base_rate)
    raise EvaluationError(f"calibrator must be one of {', '.join(CALIBRATORS)}, got {kind!r}")


def calibrator_from_dict(data: dict[str, Any]) -> Calibrator:
    """A calibrator from its ``to_dict``; a malformed one is an EvaluationError saying what is wrong."""
    kind = data.get("kind") if isinstance(data, dict) else None
    try:
        if kind == "platt":
            return Platt(float(data["a"]), float(data["b"]))
        if kind == "temperature":
            return Temperature(float(data["temperature"]))
        if kind == "isotonic":
            x, y = [float(v) for v in data["x"]], [float(v) for v in data["y"]]
            if len(x) != len(y) or not x or any(b < a for a, b in itertools.pairwise(x)):
                raise ValueError("knots must be as many as values, sorted, and some")
            return Isotonic(tuple(x), tuple(y))
    except (KeyError, TypeError, ValueError) as e:
        raise EvaluationError(f"calibrator {kind}: malformed ({e})") from e
    raise EvaluationError(f"calibrator kind must be one of {', '.join(CALIBRATORS)}, got {kind!r}")


def binary_ece(probabilities: Any, labels: Any, bins: int = 15) -> float:
    """Expected calibration error of binary probabilities: over ``bins`` equal-width bins of the probability, the
    share of triples in a bin times the gap between its mean probability and its share of positives."""
    p, y = np.asarray(probabilities, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if bins < 1:
        raise EvaluationError(f"bins must be at least 1, got {bins}")
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        mask = which == b
        total += mask.mean() * abs(p[mask].mean() - y[mask].mean())
    return float(total)


def brier_score(probabilities: Any, labels: Any) -> float:
    p, y = np.asarray(probabilities, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    return float(np.mean((p - y) ** 2))


def log_loss(probabilities: Any, labels: Any) -> float:
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def plot_binary_reliability(curves: Mapping[str, tuple[Any, Any]], path: str | Path, bins: int = 10) -> Path:
    """A reliability diagram PNG of binary probabilities: per curve ``name -> (probabilities, labels)``, the share
    of true triples against the mean probability in each bin (``kgem.evaluation.calibration.plot_reliability``)."""
    as_queries = {}
    for name, (probabilities, labels) in curves.items():
        p, y = np.asarray(probabilities, dtype=np.float64), np.asarray(labels, dtype=np.float64)
        likelihood = np.log(np.clip(np.where(y > 0, p, 1 - p), EPS, 1.0))
        as_queries[name] = Calibration(p, y > 0, likelihood, np.full(len(p), "triple"))
    return plot_reliability(as_queries, path, bins, title="probability that a triple is true")


def calibration_report(probabilities: Any, labels: Any, bins: int = 15) -> dict[str, float]:
    """ECE, Brier score and log loss of binary probabilities."""
    return {"ece": binary_ece(probabilities, labels, bins), "brier": brier_score(probabilities, labels),
            "log_loss": log_loss(probabilities, labels)}


__all__ = ["CALIBRATORS", "Calibrator", "Isotonic", "Platt", "Temperature", "binary_ece", "brier_score",
           "calibration_report", "calibrator_from_dict", "fit_calibrator", "log_loss", "plot_binary_reliability"]
