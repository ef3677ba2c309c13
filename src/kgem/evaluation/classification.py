"""Triple classification: is ``(h, r, t)`` true? Scores against thresholds tuned on validation (Socher et al. 2013).

Positives are the split's triples; negatives come from a file of triples, or from corrupting each positive's head or
tail (``corrupt``): ``uniform`` (any entity), ``type`` (an entity seen in that position of that relation in the
training triples: the relation's domain or range, as type-consistent negatives are drawn) or ``hard`` (of ``pool``
uniform candidates, the one the model scores highest: the negatives a model finds hardest). A corruption that is a
known triple is drawn again, so negatives are never true as far as the data knows.

A threshold per relation is tuned on the validation triples (the midpoint between consecutive distinct scores that
maximises accuracy, ties going to the lower threshold), with one global threshold for relations the validation
triples lack; the test triples are then classified with those thresholds unchanged. The metrics: accuracy,
precision, recall, F1, Matthews' correlation (at the thresholds), and the threshold-free area under the ROC curve
and average precision (ties counted half, as ``sklearn.metrics.roc_auc_score`` and ``average_precision_score`` do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import torch

from kgem.data.known import KnownSplits, KnownTriples
from kgem.evaluation.evaluator import eval_mode, model_device
from kgem.evaluation.ranks import EvaluationError
from kgem.models.scan import ScoringModel

Corruption = Literal["uniform", "type", "hard"]
CORRUPTIONS = ("uniform", "type", "hard")
MAX_REDRAWS = 100


def threshold_metrics(scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and MCC of predicting ``score >= threshold`` (one threshold per triple)."""
    predicted = scores >= thresholds
    truth = labels.astype(bool)
    tp = float(np.sum(predicted & truth))
    fp = float(np.sum(predicted & ~truth))
    fn = float(np.sum(~predicted & truth))
    tn = float(np.sum(~predicted & ~truth))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = (tp * tn - fp * fn) / denominator if denominator else 0.0
    total = tp + fp + fn + tn
    return {"accuracy": (tp + tn) / total if total else math.nan, "precision": precision, "recall": recall,
            "f1": f1, "mcc": mcc}


def auc_roc(scores: np.ndarray, labels: np.ndarray) -> float:
    """The probability that a random positive outscores a random negative, a tie counting half (Mann-Whitney)."""
    truth = labels.astype(bool)
    positives, negatives = int(truth.sum()), int((~truth).sum())
    if not positives or not negatives:
        return math.nan
    ranks = pd.Series(scores).rank(method="average").to_numpy()  # ties share their mean rank
    return float((ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """The precision at each positive, averaged, ranking by score with tied triples as one step (as scikit-learn's
    ``average_precision_score``)."""
    truth = labels.astype(bool)
    if not truth.any():
        return math.nan
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_truth = scores[order], truth[order]
    last = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]  # the end of each run of equal scores
    tp = np.cumsum(sorted_truth)[last]
    seen = last + 1
    precision, recall = tp / seen, tp / truth.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold maximising accuracy of ``score >= threshold``: a midpoint between consecutive distinct scores
    (or just below the lowest / above the highest); the lowest of the best ones."""
    distinct = np.unique(scores)
    if not len(distinct):
        return 0.0
    cuts = np.r_[distinct[0] - 1.0, (distinct[1:] + distinct[:-1]) / 2, distinct[-1] + 1.0]
    truth = labels.astype(bool)
    # accuracy at each cut: positives at or above it plus negatives below it, by sorted counts
    pos = np.sort(scores[truth])
    neg = np.sort(scores[~truth])
    correct = (len(pos) - np.searchsorted(pos, cuts, side="left")) + np.searchsorted(neg, cuts, side="left")
    return float(cuts[int(np.argmax(correct))])


@dataclass(frozen=True)
class Thresholds:
    """A threshold per relation id (where validation had both kinds of triple), and a global one for the rest."""

    global_threshold: float
    per_relation: dict[int, float] = field(default_factory=dict)

    @classmethod
    def tune(cls, scores: np.ndarray, labels: np.ndarray, relations: np.ndarray) -> Thresholds:
        """Tuned on validation triples: globally, and per relation with positives and negatives."""
        per = {}
        for r in np.unique(relations):
            mask = relations == r
            if labels[mask].any() and not labels[mask].all():
                per[int(r)] = best_threshold(scores[mask], labels[mask])
        return cls(best_threshold(scores, labels), per)

    def of(self, relations: np.ndarray) -> np.ndarray:
        """Each triple's threshold: its relation's, else the global one."""
        size = max([int(relations.max()) + 1 if len(relations) else 0, *(r + 1 for r in self.per_relation)])
        table = np.full(size, self.global_threshold, dtype=np.float64)
        table[list(self.per_relation)] = list(self.per_relation.values())
        return table[relations.astype(np.int64)]


@dataclass(frozen=True)
class ClassificationResult:
    """Test triples classified with thresholds tuned on validation: ``table()`` has the metrics overall (row
    ``all``) and, with ``per_relation``, for every relation (rows by relation id, or label with ``relation_labels``)."""

    scores: np.ndarray
    labels: np.ndarray
    relations: np.ndarray
    thresholds: Thresholds
    relation_labels: np.ndarray | None = None

    def metrics(self, mask: np.ndarray | None = None) -> dict[str, float]:
        keep = np.ones(len(self.scores), dtype=bool) if mask is None else mask
        s, y = self.scores[keep], self.labels[keep]
        out = threshold_metrics(s, y, self.thresholds.of(self.relations[keep]))
        out.update(auc_roc=auc_roc(s, y), average_precision=average_precision(s, y),
                   positives=float(y.sum()), negatives=float(len(y) - y.sum()))
        return out

    def table(self, per_relation: bool = False) -> pd.DataFrame:
        rows = {"all": self.metrics()}
        if per_relation:
            for r in np.unique(self.relations):
                name = str(self.relation_labels[r]) if self.relation_labels is not None else str(int(r))
                rows[name] = self.metrics(self.relations == r)
        frame = pd.DataFrame(rows).T
        frame[["positives", "negatives"]] = frame[["positives", "negatives"]].astype(int)
        frame.index.name = "relation"
        return frame

    def __str__(self) -> str:
        return f"triple classification, thresholds tuned on validation\n{self.table().round(4).to_string()}"


def score_triples(model: ScoringModel, hrt: torch.Tensor, batch: int = 1 << 16) -> np.ndarray:
    """The model's scores of triples ``(n, 3)``, a batch at a time, in eval mode."""
    device = model_device(model)
    with eval_mode(model):
        parts = [model.score_hrt(hrt[i : i + batch].to(device)).float().cpu()  # type: ignore[attr-defined]
                 for i in range(0, len(hrt), batch)]
    return torch.cat(parts).numpy().astype(np.float64) if parts else np.zeros(0)


def corrupt(hrt: torch.Tensor, num_entities: int, *, strategy: Corruption = "uniform",
            known: KnownTriples | KnownSplits | None = None, train: torch.Tensor | None = None,
            model: ScoringModel | None = None, pool: int = 32, seed: int = 0) -> torch.Tensor:
    """One negative per positive: its head or its tail (a fair coin) replaced as ``strategy`` says (see the module
    docstring); a corruption in ``known`` (or equal to its positive) is drawn again, side and entity, up to
    ``MAX_REDRAWS`` times, then kept."""
    if strategy not in CORRUPTIONS:
        raise EvaluationError(f"corruption must be one of {', '.join(CORRUPTIONS)}, got {strategy!r}")
    if strategy == "type" and train is None:
        raise EvaluationError("type-consistent corruption needs the training triples (train=...)")
    if strategy == "hard" and model is None:
        raise EvaluationError("hard corruption needs the model (model=...)")
    generator = torch.Generator().manual_seed(seed)
    hrt = hrt.long().cpu()
    if known is not None:  # a corruption shares (h, r) or (r, t) with its positive: the index of those is enough
        known = known.for_queries(hrt)
    typed = _typed_pairs(train, num_entities) if strategy == "type" and train is not None else None
    out = hrt.clone()
    todo = torch.arange(len(hrt))
    for _ in range(MAX_REDRAWS + 1):
        head = torch.rand(len(todo), generator=generator) < 0.5  # the side drawn again too: one may be all known
        out[todo] = _draw(hrt[todo], head, num_entities, strategy, typed, model, pool, generator, known)
        if known is None:
            break
        again = known.contains(out[todo]) | (out[todo] == hrt[todo]).all(1)
        todo = todo[again]
        if not len(todo):
            break
    return out


def _draw(hrt: torch.Tensor, head: torch.Tensor, num_entities: int, strategy: Corruption,
          typed: tuple[torch.Tensor, torch.Tensor] | None, model: ScoringModel | None, pool: int,
          generator: torch.Generator, known: KnownTriples | None) -> torch.Tensor:
    out = hrt.clone()
    column = torch.where(head, 0, 2)
    if strategy == "uniform":
        out[torch.arange(len(hrt)), column] = torch.randint(num_entities, (len(hrt),), generator=generator)
    elif strategy == "type":
        assert typed is not None
        out[torch.arange(len(hrt)), column] = _typed(hrt[:, 1], head, typed, num_entities, generator)
    else:
        assert model is not None
        candidates = torch.randint(num_entities, (len(hrt), pool), generator=generator)
        trial = hrt.unsqueeze(1).repeat(1, pool, 1)  # (n, pool, 3)
        trial[:, :, 0] = torch.where(head.unsqueeze(1), candidates, trial[:, :, 0])
        trial[:, :, 2] = torch.where(head.unsqueeze(1), trial[:, :, 2], candidates)
        scores = torch.from_numpy(score_triples(model, trial.reshape(-1, 3))).view(len(hrt), pool)
        true = (trial == hrt.unsqueeze(1)).all(2)  # the positive itself, and known triples: never the hardest
        if known is not None:
            true |= known.contains(trial.reshape(-1, 3)).view(len(hrt), pool)
        out = trial[torch.arange(len(hrt)), scores.masked_fill(true, -math.inf).argmax(1)]
    return out


def _typed_pairs(train: torch.Tensor, num_entities: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The sorted distinct ``relation * num_entities + entity`` keys of the training triples' heads and tails."""
    train = train.long().cpu()
    return (torch.unique(train[:, 1] * num_entities + train[:, 0]),
            torch.unique(train[:, 1] * num_entities + train[:, 2]))


def _typed(r: torch.Tensor, head: torch.Tensor, typed: tuple[torch.Tensor, torch.Tensor], num_entities: int,
           generator: torch.Generator) -> torch.Tensor:
    """For each row, an entity seen as the head (``head``) or tail of relation ``r`` in the training triples
    (``_typed_pairs``); any entity for a relation they lack."""
    r = r.contiguous()
    picks = torch.randint(num_entities, (len(r),), generator=generator)
    for pairs, rows in zip(typed, (head, ~head), strict=True):
        rel_of = pairs // num_entities
        starts = torch.searchsorted(rel_of, r)
        counts = torch.searchsorted(rel_of, r, right=True) - starts
        rows = rows & (counts > 0)
        offsets = (torch.rand(len(r), generator=generator) * counts.clamp_min(1)).long()
        picks[rows] = pairs[(starts + offsets)[rows]] % num_entities
    return picks


def classify(model: ScoringModel, valid: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
             relation_labels: np.ndarray | None = None) -> ClassificationResult:
    """Tune thresholds on ``valid`` = (positive triples, negative triples) and classify ``test`` the same way."""
    thresholds = Thresholds.tune(*_labelled(model, *valid))
    scores, labels, relations = _labelled(model, *test)
    return ClassificationResult(scores, labels, relations, thresholds, relation_labels)


def _labelled(model: ScoringModel, positives: torch.Tensor,
              negatives: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hrt = torch.cat([positives.long().cpu(), negatives.long().cpu()])
    labels = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    return score_triples(model, hrt), labels, hrt[:, 1].numpy()
