"""Losses. ``sampled(pos (B,), neg (B, K))`` for negative sampling; ``full(scores (B, C), labels (B, C))`` for
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
    are those of the same loss with the masked negatives absent (means are over the negatives that count)."""

    name = "loss"

    def sampled(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        raise ConfigError(f"loss {self.name!r} does not apply to negative sampling")

    def full(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise ConfigError(f"loss {self.name!r} does not apply to KvsAll / 1vsAll training; use bce or "
                          f"cross_entropy")

    def multi_label(self, scores: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """``full`` with label 1 at the distinct pairs ``(rows[i], cols[i])`` and 0 elsewhere."""
        labels = torch.zeros_like(scores)
        labels[rows, cols] = 1
        return self.full(scores, labels)


@LOSSES.register("margin_ranking")
class MarginRanking(Loss):
    """``mean over pairs of max(0, margin - pos + neg)`` (Bordes et al. 2013; AmpliGraph 'pairwise')."""

    name = "margin_ranking"

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = finite("margin", margin)

    def sampled(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        pairs = count_unmasked(neg).clamp_min(1)  # a masked pair's term is relu(-inf) = 0
        return F.relu(self.margin - pos.unsqueeze(1) + neg).sum() / pairs


@LOSSES.register("absolute_margin")
class AbsoluteMargin(Loss):
    """``mean over pairs of max(0, margin + neg) - pos`` (Hamaguchi et al. 2017; AmpliGraph 'absolute_margin')."""

    name = "absolute_margin"

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = finite("margin", margin)

    def sampled(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        per_row = count_unmasked(neg, dim=1)  # -pos counts once per pair that counts; relu(-inf) = 0
        return (F.relu(self.margin + neg).sum() - (pos * per_row).sum()) / per_row.sum().clamp_min(1)


@LOSSES.register("softplus")
class Softplus(Loss):
    """``softplus(-pos) + softplus(neg)``, averaged over all scores (the NLL of a logistic model; AmpliGraph 'nll')."""

    name = "softplus"

    def sampled(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        scores = len(pos) + count_unmasked(neg)  # softplus(-inf) = 0
        return (F.softplus(-pos).sum() + F.softplus(neg).sum()) / scores

    def full(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(scores, labels)

    def multi_label(self, scores: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return bce_multi_label(scores, rows, cols, 0.0)


@LOSSES.register("bce")
class BCEWithLogits(Loss):
    """Binary cross-entropy on sigmoid(score), averaged over all scores; ``label_smoothing`` moves labels
    toward 1/num_classes (Dettmers et al. 2018), in negative sampling the number of scores of the row (the positive
    and its unmasked negatives)."""

    name = "bce"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = probability("label_smoothing", label_smoothing)

    def sampled(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        keep = unmasked(neg)
        per_row = torch.count_nonzero(keep, dim=1)
        pos_label, neg_label = torch.ones_like(pos), torch.zeros_like(neg)
        if self.label_smoothing:
            share = self.label_smoothing / (1 + per_row).to(pos.dtype)
            pos_label, neg_label = pos_label - self.label_smoothing + share, neg_label + share.unsqueeze(1)
        # masked scores become 0 with weight 0: -inf * label would be -inf or NaN
        neg_loss = F.binary_cross_entropy_with_logits(torch.where(keep, neg, 0.0), neg_label, weight=keep.to(neg.dtype),
                                                      reduction="sum")
        pos_loss = F.binary_cross_entropy_with_logits(pos, pos_label, reduction="sum")
        return (pos_loss + neg_loss) / (len(pos) + per_row.sum())

    def full(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.label_smoothing:
            labels = labels * (1 - self.label_smoothing) + self.label_smoothing / scores.shape[1]
        return F.binary_cross_entropy_with_logits(scores, labels)

    def multi_label(self, scores: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return bce_multi_label(scores, rows, cols, self.label_smoothing)


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

    def sampled(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        logits = self.temperature * neg
        if self.temperature == 0:  # 0 * -inf is NaN: keep masked negatives at -inf
            logits = logits.masked_fill(~unmasked(neg), MASKED)
        weights = torch.softmax(logits, dim=1).detach().nan_to_num(0.0)  # rows of all -inf: 0
        pos_loss = -F.logsigmoid(self.margin + pos).mean()
        neg_loss = -(weights * F.logsigmoid(-neg - self.margin)).sum(1).mean()
        return (pos_loss + neg_loss) / 2


@LOSSES.register("cross_entropy")
class CrossEntropy(Loss):
    """Softmax cross-entropy. Sampled: the positive against its K negatives (AmpliGraph 'multiclass_nll'; label
    smoothing spreads over the row's unmasked scores); full: against all candidates, with multi-hot labels normalised
    per row (1vsAll / KvsAll)."""

    name = "cross_entropy"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = probability("label_smoothing", label_smoothing)

    def sampled(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        scores = torch.cat([pos.unsqueeze(1), neg], 1)
        if not self.label_smoothing:  # -inf scores drop out of the softmax
            return F.cross_entropy(scores, torch.zeros(len(pos), dtype=torch.long, device=pos.device))
        # smoothing puts label mass on every class, so a masked one's log-probability of -inf must be left out
        keep = unmasked(scores)
        log_p = torch.where(keep, scores.log_softmax(1), 0.0)
        spread = self.label_smoothing / torch.count_nonzero(keep, dim=1).to(scores.dtype)
        return (-(1 - self.label_smoothing) * log_p[:, 0] - spread * log_p.sum(1)).mean()

    def full(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = labels / labels.sum(1, keepdim=True).clamp_min(1e-12)
        return F.cross_entropy(scores, target, label_smoothing=self.label_smoothing)


LOSSES.register("multiclass_nll")(CrossEntropy)
