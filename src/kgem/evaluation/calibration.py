"""Calibration of link-prediction probabilities: how far a model's confidence in its top answer matches how often
that answer is right.

A query ``(h, r, ?)`` or ``(?, r, t)`` gets the model's conditional distribution over every entity: the
``log_softmax`` of its scores. For an ordinary model that turns scores into probabilities; for a generative circuit
(wrapped as a scoring model, e.g. ``kgem.circuits.CircuitModel``) the scores are already normalised log probabilities
and the ``log_softmax`` leaves them unchanged, so both kinds of model take one code path. Filtered (``known``), every
other known answer of the query is removed before normalising, as filtered ranking ignores them.

Per query only three numbers are kept: the confidence (the largest probability), whether the top answer is the true
one, and the log probability of the true answer. From them: the expected calibration error (ECE), the Brier score of
the top answer and the negative log-likelihood of the true answers, and a reliability table or diagram.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from kgem.atomic import atomic_path
from kgem.data.known import KnownTriples
from kgem.errors import KgemError
from kgem.evaluation.evaluator import _check_triples, eval_mode, model_device
from kgem.evaluation.ranks import EvaluationError
from kgem.models.scan import ScoringModel

__all__ = ["Calibration", "expected_calibration_error", "plot_reliability", "query_probabilities",
           "reliability_table"]

DEFAULT_BATCH = 256
PLOT_HINT = "plotting needs matplotlib: pip install 'kgem[plot]'"


def _check_bins(bins: int) -> None:
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise EvaluationError(f"bins must be a positive integer, got {bins!r}")


def _check_arrays(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    """Confidence and correctness as float arrays of one length, after the checks that keep the metrics meaningful."""
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    hit = np.asarray(correct, dtype=np.float64).reshape(-1)
    if len(conf) != len(hit):
        raise EvaluationError(f"confidence and correct differ in length: {len(conf)} vs {len(hit)}")
    if not len(conf):
        raise EvaluationError("no queries: confidence and correct are empty")
    if np.isnan(conf).any() or np.isnan(hit).any():
        raise EvaluationError("confidence or correct contains NaN")
    if conf.min() < 0 or conf.max() > 1:
        raise EvaluationError(f"confidence must lie in [0, 1], got {conf.min():g}..{conf.max():g}")
    if not np.isin(hit, (0.0, 1.0)).all():
        raise EvaluationError("correct must be 0/1 (or bool) for every query")
    return conf, hit


def _bin_of(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins on [0, 1]: bin ``i`` holds ``[i/bins, (i+1)/bins)``, the last one also 1.0."""
    return np.minimum((confidence * bins).astype(np.int64), bins - 1)


def expected_calibration_error(confidence: Any, correct: Any, bins: int = 15) -> float:
    """``sum over bins of (count / n) * |accuracy - mean confidence|`` with ``bins`` equal-width bins on [0, 1]."""
    _check_bins(bins)
    conf, hit = _check_arrays(confidence, correct)
    index = _bin_of(conf, bins)
    gap = np.abs(np.bincount(index, hit, minlength=bins) - np.bincount(index, conf, minlength=bins))
    return float(gap.sum() / len(conf))  # count * |mean hit - mean conf| / n = |sum hit - sum conf| / n


def reliability_table(confidence: Any, correct: Any, bins: int = 10) -> pd.DataFrame:
    """One row per equal-width bin on [0, 1]: ``lower``, ``upper``, ``count``, mean ``confidence`` and
    ``accuracy`` of its queries; empty bins are kept with count 0 and NaN means."""
    _check_bins(bins)
    conf, hit = _check_arrays(confidence, correct)
    index = _bin_of(conf, bins)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, conf, minlength=bins) / count
        accuracy = np.bincount(index, hit, minlength=bins) / count
    edges = np.linspace(0.0, 1.0, bins + 1)
    return pd.DataFrame({"lower": edges[:-1], "upper": edges[1:], "count": count, "confidence": mean_conf,
                         "accuracy": accuracy})


@dataclass(frozen=True, eq=False)
class Calibration:
    """Per query (all queries of the first side in triple order, then the next side): ``confidence`` (the largest
    probability), ``correct`` (the top answer is the true one), ``log_p_true`` (log probability of the true answer)
    and ``side`` ("head" or "tail")."""

    confidence: np.ndarray
    correct: np.ndarray
    log_p_true: np.ndarray
    side: np.ndarray
    filtered: bool = False

    def __len__(self) -> int:
        return len(self.confidence)

    def ece(self, bins: int = 15) -> float:
        return expected_calibration_error(self.confidence, self.correct, bins)

    def brier(self) -> float:
        """Mean of ``(confidence - correct)^2``: the Brier score of the top answer."""
        conf, hit = _check_arrays(self.confidence, self.correct)
        return float(np.mean((conf - hit) ** 2))

    def nll(self) -> float:
        """Mean ``-log p(true answer)`` (infinite where a model gives a true answer probability 0)."""
        if not len(self):
            raise EvaluationError("no queries: the negative log-likelihood of nothing is undefined")
        return float(-np.mean(self.log_p_true))

    def accuracy(self) -> float:
        """Share of queries whose top answer is the true one (hits@1 with the tie rule of ``query_probabilities``)."""
        _check_arrays(self.confidence, self.correct)
        return float(np.mean(self.correct))

    def reliability(self, bins: int = 10) -> pd.DataFrame:
        return reliability_table(self.confidence, self.correct, bins)

    def to_dict(self) -> dict[str, Any]:
        """The summary numbers, JSON-ready."""
        return {"queries": len(self), "filtered": self.filtered, "ece": self.ece(), "brier": self.brier(),
                "nll": self.nll(), "accuracy": self.accuracy(), "mean_confidence": float(np.mean(self.confidence))}


def _check_sides(sides: Sequence[str]) -> tuple[str, ...]:
    chosen = (sides,) if isinstance(sides, str) else tuple(sides)
    if not chosen or any(s not in ("head", "tail") for s in chosen) or len(set(chosen)) != len(chosen):
        raise EvaluationError(f"sides must be 'head', 'tail' or both (each once), got {sides!r}")
    return chosen


def _log_probs(model: ScoringModel, side: str, anchor: torch.Tensor, r: torch.Tensor, target: torch.Tensor,
               known: KnownTriples | None) -> torch.Tensor:
    """``(B, num_entities)`` log conditional probabilities of one batch of queries; filtered: every other known
    answer set to -inf before normalising (the true answer kept)."""
    scores = model.score_t(anchor, r) if side == "tail" else model.score_h(r, anchor)
    if known is not None:
        mask = known.tail_mask(anchor.cpu(), r.cpu()) if side == "tail" else known.head_mask(r.cpu(), anchor.cpu())
        mask[torch.arange(len(target)), target.cpu()] = False
        scores = scores.masked_fill(mask.to(scores.device), float("-inf"))
    return torch.log_softmax(scores, dim=1)


def _summarise(log_p: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(confidence, correct, log_p_true)`` of a block. Ties: the true answer is correct when its probability is
    the largest and no entity of a smaller id has that same probability (the lowest id among the maxima wins)."""
    top = log_p.max(dim=1).values
    ids = torch.arange(log_p.shape[1], device=log_p.device)
    winner = torch.where(log_p == top[:, None], ids, log_p.shape[1]).min(dim=1).values
    true = log_p.gather(1, target[:, None]).squeeze(1)
    return top.exp(), winner == target, true


def query_probabilities(model: ScoringModel, hrt: torch.Tensor, *, known: KnownTriples | None = None,
                        sides: Sequence[str] = ("head", "tail"), batch_size: int = DEFAULT_BATCH) -> Calibration:
    """Each triple's hidden head and/or tail as a query: the model's distribution over all entities,
    ``log_softmax(score_h(r, t))`` / ``log_softmax(score_t(h, r))``, batch by batch under ``torch.no_grad()`` and
    eval mode (the mode is restored). ``known``: filter every other known answer out first.

    Only the per-query summary is kept (``Calibration``), so memory is one ``(batch_size, num_entities)`` block.
    """
    chosen = _check_sides(sides)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise EvaluationError(f"batch_size must be a positive integer, got {batch_size!r}")
    triples = _check_triples(hrt, model, known)
    device = model_device(model)
    confidence, correct, log_p_true = [torch.zeros(0, dtype=torch.float64)], [torch.zeros(0, dtype=torch.bool)], \
        [torch.zeros(0, dtype=torch.float64)]
    with eval_mode(model):
        for side in chosen:
            anchor, target = (triples[:, 0], triples[:, 2]) if side == "tail" else (triples[:, 2], triples[:, 0])
            for start in range(0, len(triples), batch_size):
                rows = slice(start, start + batch_size)
                a, r, t = anchor[rows].to(device), triples[rows, 1].to(device), target[rows].to(device)
                top, hit, true = _summarise(_log_probs(model, side, a, r, t, known), t)
                confidence.append(top.double().cpu())
                correct.append(hit.cpu())
                log_p_true.append(true.double().cpu())
    return Calibration(torch.cat(confidence).numpy(), torch.cat(correct).numpy(), torch.cat(log_p_true).numpy(),
                       np.repeat(np.asarray(chosen), len(triples)), filtered=known is not None)


def plot_reliability(curves: Mapping[str, Calibration], path: str | Path, bins: int = 10,
                     title: str | None = None) -> Path:
    """A reliability diagram PNG: per model, accuracy against mean confidence over its non-empty bins, the
    diagonal of perfect calibration, and each model's ECE in the legend. Written atomically; returns the path."""
    _check_bins(bins)
    if not curves:
        raise EvaluationError("no curves to plot: pass at least one name -> Calibration")
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise KgemError(PLOT_HINT) from None
    del matplotlib  # imported first so a missing package fails here; the Agg canvas below needs no global backend
    figure = Figure(figsize=(5, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    for name, curve in curves.items():
        table = curve.reliability(bins)
        table = table[table["count"] > 0]
        axes.plot(table["confidence"], table["accuracy"], marker="o", label=f"{name} (ECE {curve.ece():.3f})")
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=title or "reliability")
    axes.legend(loc="upper left", fontsize="small")
    target = Path(path)
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png")
    return target
