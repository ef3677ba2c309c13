"""CrossE: a relation-specific crossover of the head, compared with the tail by a dot product."""

from __future__ import annotations

import torch
from torch import nn

from kgem.checks import probability
from kgem.models.factor import FactorInteraction
from kgem.models.interaction import INTERACTIONS


@INTERACTIONS.register("crosse")
class CrossE(FactorInteraction):
    """``<drop(tanh(c_r * h + c_r * h * r + b)), t>``: relation rows ``[r, c_r]`` (embedding, interaction vector),
    ``b`` a global bias. The paper's sigmoid is left to the loss, as in PyKEEN; dropout 0.5 is PyKEEN's default.
    ``h`` sits inside the tanh, so only tails have a query form; heads are scored by the generic broadcast."""

    reference = "Zhang et al. 2019, Interaction embeddings for prediction and explanation in knowledge graphs"
    head_factors = False

    def __init__(self, dim: int, dropout: float = 0.5) -> None:
        super().__init__(dim)
        self.bias = nn.Parameter(torch.zeros(dim))
        self.drop = nn.Dropout(probability("dropout", dropout))

    def relation_width(self) -> int:
        return 2 * self.dim  # [r, c_r]

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (self.tail_query(h, r) * t).sum(-1)

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        crossed = r[..., self.dim :] * h
        return self.drop(torch.tanh(crossed + crossed * r[..., : self.dim] + self.bias))
