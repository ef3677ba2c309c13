"""Losses. ``sampled(pos (B,), neg (B, K), weight)`` for negative sampling; ``full(scores (B, C), labels (B, C))`` for
KvsAll / 1vsAll with multi-hot (possibly smoothed) labels, and ``multi_label(scores, rows, cols)``, the same with
the true entries given as distinct ``(row, column)`` pairs (KvsAll: a few true answers among all entities), which
BCE computes without a dense label matrix. A loss that has no meaning in a regime says so."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kgem.checks import finite, non_negative, probability
from kgem.errors import ConfigError
from kgem.ops.multilabel import bce_multi_label
from kgem.registry import Registry

LOSSES: Registry[type[Loss]] = Registry("loss")
MASKED = float("-inf")


def unmasked(neg: torch.Tensor) -> torch.Tensor:
    """``(B, K)`` bool: the negatives that count. A NaN score counts (and makes the loss NaN, which stops training)
    rather than vanish like a masked one."""
    return ~torch.isneginf(neg)


def count_unmasked(neg: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """How many negatives count, in all or per row: ``count_nonzero`` of the masked ones (summing a bool tensor
    converts it to int64 first, which cost the margin loss 30% more time)."""
    total = neg.numel() if dim is None else neg.shape[dim]
    return total - torch.count_nonzero(torch.isneginf(neg), dim=dim)


class Loss(nn.Module):
    """Negative scores of -inf (masked negatives) contribute nothing to any sampled loss: its value and gradients
    are those of the same loss with the masked negatives absent (means are over the negatives that count).

    Edge weights (``weight``: one number per positive, e.g. DGL-KE's edge importance or PyTorch-BigGraph's weight
    column) scale every term a positive brings, its own and its negatives': a sampled loss is
    ``sum_i w_i L_i / sum_i w_i n_i``, where ``L_i`` sums row ``i``'s terms and ``n_i`` counts them (``terms``), so
    unit weights give the unweighted loss and the loss does not grow with the weights' scale."""

    name = "loss"

    def sampled(self, pos: torch.Tensor, neg: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of positives ``(B,)`` against their negatives ``(B, K)``, each row weighted by ``weight``."""
        total, count = self.terms(pos, neg)
        if weight is None:
            return total.sum() / count.sum().clamp_min(1)
        return (weight * total).sum() / (weight * count).sum().clamp_min(torch.finfo(total.dtype).tiny)

    def terms(self, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row of a sampled batch: the sum of its terms ``(B,)`` and how many terms it has ``(B,)``."""
        raise ConfigError(f"loss {self.name!r} does not apply to negative sampling")

    def full(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise ConfigError(f"loss {self.name!r} does not apply to KvsAll / 1vsAll training; use bce or "
                          f"cross_entropy")

    def multi_label(self, scores: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                    weight: torch.Tensor | None = None) -> torch.Tensor:
        """``full`` with label 1 at the distinct pairs ``(rows[i], cols[i])`` and 0 elsewhere; ``weight``: one per
        pair (``weighted_full``)."""
        labels = torch.zeros_like(scores)
        labels[rows, cols] = 1
        if weight is not None:
            return self.weighted_full(scores, labels, pair_weights(scores, rows, cols, weight))
        return self.full(scores, labels)

    def weighted_full(self, scores: torch.Tensor, labels: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """``full`` with a weight per score: a true pair's edge weight, elsewhere its row's mean edge weight."""
        raise ConfigError(f"loss {self.name!r} does not apply to KvsAll / 1vsAll training; use bce or "
                          f"cross_entropy")


def pair_weights(scores: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` weights of a multi-label block: ``weight`` at the true pairs, and at every other score of a row the
    mean weight of that row's true pairs (the negatives a query brings weigh as its edges do on average)."""
    total = torch.zeros(len(scores), dtype=scores.dtype, device=scores.device).index_add_(0, rows, weight.to(scores))
    count = torch.bincount(rows, minlength=len(scores)).to(scores.dtype)
    cells = (total / count.clamp_min(1)).unsqueeze(1).expand_as(scores).clone()
    cells[rows, cols] = weight.to(scores)
    return cells


@LOSSES.register("margin_ranking")
class MarginRanking(Loss):
    """``mean over pairs of max(0, margin - pos + neg)`` (Bordes et al. 2013; AmpliGraph 'pairwise')."""

    name = "margin_ranking"

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = finite("margin", margin)

    def terms(self, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # a masked pair's term is relu(-inf) = 0
        return F.relu(self.margin - pos.unsqueeze(1) + neg).sum(1), count_unmasked(neg, dim=1)


@LOSSES.register("absolute_margin")
class AbsoluteMargin(Loss):
    """``mean over pairs of max(0, margin + neg) - pos`` (Hamaguchi et al. 2017; AmpliGraph 'absolute_margin')."""

    name = "absolute_margin"

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = finite("margin", margin)

    def terms(self, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        per_row = count_unmasked(neg, dim=1)  # -pos counts once per pair that counts; relu(-inf) = 0
        return F.relu(self.margin + neg).sum(1) - pos * per_row, per_row


@LOSSES.register("softplus")
class Softplus(Loss):
    """``softplus(-pos) + softplus(neg)``, averaged over all scores (the NLL of a logistic model; AmpliGraph 'nll')."""

    name = "softplus"

    def terms(self, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.softplus(-pos) + F.softplus(neg).sum(1), 1 + count_unmasked(neg, dim=1)  # softplus(-inf) = 0

    def full(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(scores, labels)

    def multi_label(self, scores: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                    weight: torch.Tensor | None = None) -> torch.Tensor:
        if weight is not None:
            return super().multi_label(scores, rows, cols, weight)
        return bce_multi_label(scores, rows, cols, 0.0)

    def weighted_full(self, scores: torch.Tensor, labels: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(scores, labels, weight=cells, reduction="sum") / cells.sum()


@LOSSES.register("bce")
class BCEWithLogits(Loss):
    """Binary cross-entropy on sigmoid(score), averaged over all scores; ``label_smoothing`` moves labels
    toward 1/num_classes (Dettmers et al. 2018), in negative sampling the number of scores of the row (the positive
    and its unmasked negatives)."""

    name = "bce"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = probability("label_smoothing", label_smoothing)

    def terms(self, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep = unmasked(neg)
        per_row = torch.count_nonzero(keep, dim=1)
        pos_label, neg_label = torch.ones_like(pos), torch.zeros_like(neg)
        if self.label_smoothing:
            share = self.label_smoothing / (1 + per_row).to(pos.dtype)
            pos_label, neg_label = pos_label - self.label_smoothing + share, neg_label + share.unsqueeze(1)
        # masked scores become 0 with weight 0: -inf * label would be -inf or NaN
        neg_loss = F.binary_cross_entropy_with_logits(torch.where(keep, neg, 0.0), neg_label, weight=keep.to(neg.dtype),
                                                      reduction="none").sum(1)
        pos_loss = F.binary_cross_entropy_with_logits(pos, pos_label, reduction="none")
        return pos_loss + neg_loss, 1 + per_row

    def full(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(scores, self._smoothed(scores, labels))

    def _smoothed(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.label_smoothing:
            return labels * (1 - self.label_smoothing) + self.label_smoothing / scores.shape[1]
        return labels

    def multi_label(self, scores: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                    weight: torch.Tensor | None = None) -> torch.Tensor:
        if weight is not None:
            return super().multi_label(scores, rows, cols, weight)
        return bce_multi_label(scores, rows, cols, self.label_smoothing)

    def weighted_full(self, scores: torch.Tensor, labels: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(scores, self._smoothed(scores, labels), weight=cells,
                                                  reduction="sum") / cells.sum()


@LOSSES.register("self_adversarial")
class SelfAdversarial(Loss):
    """Self-adversarial negative sampling (Sun et al. 2019):
    ``-log sigmoid(margin + pos) - sum_k softmax(temperature * neg)_k log sigmoid(-neg_k - margin)``, halved,
    with the softmax weights detached. Scores are negative distances, so ``margin + pos = margin - d(pos)``.
    ``temperature`` 0 weighs the negatives uniformly; a negative one would favour the easiest and is refused."""

    name = "self_adversarial"

    def __init__(self, margin: float = 9.0, temperature: float = 1.0) -> None:
        super().__init__()
        self.margin, self.temperature = finite("margin", margin), non_negative("temperature", temperature)

    def terms(self, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.temperature * neg
        if self.temperature == 0:  # 0 * -inf is NaN: keep masked negatives at -inf
            logits = logits.masked_fill(~unmasked(neg), MASKED)
        weights = torch.softmax(logits, dim=1).detach().nan_to_num(0.0)  # rows of all -inf: 0
        pos_loss = -F.logsigmoid(self.margin + pos)
        neg_loss = -(weights * F.logsigmoid(-neg - self.margin)).sum(1)
        return (pos_loss + neg_loss) / 2, torch.ones_like(pos)


@LOSSES.register("cross_entropy")
class CrossEntropy(Loss):
    """Softmax cross-entropy. Sampled: the positive against its K negatives (AmpliGraph 'multiclass_nll'; label
    smoothing spreads over the row's unmasked scores); full: against all candidates, with multi-hot labels normalised
    per row (1vsAll / KvsAll)."""

    name = "cross_entropy"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = probability("label_smoothing", label_smoothing)

    def terms(self, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = torch.cat([pos.unsqueeze(1), neg], 1)
        one = torch.ones_like(pos)
        if not self.label_smoothing:  # -inf scores drop out of the softmax
            return F.cross_entropy(scores, torch.zeros(len(pos), dtype=torch.long, device=pos.device),
                                   reduction="none"), one
        # smoothing puts label mass on every class, so a masked one's log-probability of -inf must be left out
        keep = unmasked(scores)
        log_p = torch.where(keep, scores.log_softmax(1), 0.0)
        spread = self.label_smoothing / torch.count_nonzero(keep, dim=1).to(scores.dtype)
        return -(1 - self.label_smoothing) * log_p[:, 0] - spread * log_p.sum(1), one

    def full(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = labels / labels.sum(1, keepdim=True).clamp_min(1e-12)
        return F.cross_entropy(scores, target, label_smoothing=self.label_smoothing)

    def weighted_full(self, scores: torch.Tensor, labels: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """Each row's target is its true pairs in proportion to their weights, and the row weighs its pairs' mean
        weight (1vsAll: its one edge's)."""
        truth = labels * cells
        row_weight = truth.sum(1) / labels.sum(1).clamp_min(1)
        target = truth / truth.sum(1, keepdim=True).clamp_min(1e-12)
        rows = F.cross_entropy(scores, target, label_smoothing=self.label_smoothing, reduction="none")
        return (row_weight * rows).sum() / row_weight.sum()


LOSSES.register("multiclass_nll")(CrossEntropy)
