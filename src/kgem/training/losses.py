"""Losses. ``sampled(pos (B,), neg (B, K))`` for negative sampling; ``full(scores (B, C), labels (B, C))`` for
KvsAll / 1vsAll with multi-hot (possibly smoothed) labels. A loss that has no meaning in a regime says so."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kgem.errors import ConfigError
from kgem.registry import Registry

LOSSES: Registry[type[Loss]] = Registry("loss")


class Loss(nn.Module):
    """Negative scores of -inf (masked negatives) contribute nothing to any sampled loss."""

    name = "loss"

    def sampled(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        raise ConfigError(f"loss {self.name!r} does not apply to negative sampling")

    def full(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise ConfigError(f"loss {self.name!r} does not apply to KvsAll / 1vsAll training; use bce or "
                          f"cross_entropy")


@LOSSES.register("margin_ranking")
class MarginRanking(Loss):
    """``mean over pairs of max(0, margin - pos + neg)`` (Bordes et al. 2013; AmpliGraph 'pairwise')."""

    name = "margin_ranking"

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = margin

    def sampled(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return F.relu(self.margin - pos.unsqueeze(1) + neg).mean()


@LOSSES.register("absolute_margin")
class AbsoluteMargin(Loss):
    """``mean over pairs of max(0, margin + neg) - pos`` (Hamaguchi et al. 2017; AmpliGraph 'absolute_margin')."""

    name = "absolute_margin"

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = margin

    def sampled(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return (F.relu(self.margin + neg) - pos.unsqueeze(1)).mean()


@LOSSES.register("softplus")
class Softplus(Loss):
    """``softplus(-pos) + softplus(neg)``, averaged over all scores (the NLL of a logistic model; AmpliGraph 'nll')."""

    name = "softplus"

    def sampled(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.softplus(-pos), F.softplus(neg).flatten()]).mean()

    def full(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(scores, labels)


@LOSSES.register("bce")
class BCEWithLogits(Loss):
    """Binary cross-entropy on sigmoid(score), averaged over all scores; ``label_smoothing`` moves labels
    toward 1/num_classes (Dettmers et al. 2018)."""

    name = "bce"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def sampled(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        scores = torch.cat([pos.unsqueeze(1), neg], 1)
        labels = torch.zeros_like(scores)
        labels[:, 0] = 1
        keep = torch.isfinite(scores).float()  # masked negatives get weight 0
        return self.full(scores.nan_to_num(neginf=0.0), labels, keep)

    def full(self, scores: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        if self.label_smoothing:
            labels = labels * (1 - self.label_smoothing) + self.label_smoothing / scores.shape[1]
        return F.binary_cross_entropy_with_logits(scores, labels, weight=weight)


@LOSSES.register("self_adversarial")
class SelfAdversarial(Loss):
    """Self-adversarial negative sampling (Sun et al. 2019):
    ``-log sigmoid(margin + pos) - sum_k softmax(temperature * neg)_k log sigmoid(-neg_k - margin)``, halved,
    with the softmax weights detached. Scores are negative distances, so ``margin + pos = margin - d(pos)``."""

    name = "self_adversarial"

    def __init__(self, margin: float = 9.0, temperature: float = 1.0) -> None:
        super().__init__()
        self.margin, self.temperature = margin, temperature

    def sampled(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.temperature * neg, dim=1).detach().nan_to_num(0.0)  # rows of all -inf: 0
        pos_loss = -F.logsigmoid(self.margin + pos).mean()
        neg_loss = -(weights * F.logsigmoid(-neg - self.margin)).sum(1).mean()
        return (pos_loss + neg_loss) / 2


@LOSSES.register("cross_entropy")
class CrossEntropy(Loss):
    """Softmax cross-entropy. Sampled: the positive against its K negatives (AmpliGraph 'multiclass_nll');
    full: against all candidates, with multi-hot labels normalised per row (1vsAll / KvsAll)."""

    name = "cross_entropy"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def sampled(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        scores = torch.cat([pos.unsqueeze(1), neg], 1)
        return F.cross_entropy(scores, torch.zeros(len(pos), dtype=torch.long), label_smoothing=self.label_smoothing)

    def full(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = labels / labels.sum(1, keepdim=True).clamp_min(1e-12)
        return F.cross_entropy(scores, target, label_smoothing=self.label_smoothing)


LOSSES.register("multiclass_nll")(CrossEntropy)
