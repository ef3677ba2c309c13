"""DistMA: three pairwise dot products, so every scoring mode is one matmul plus a per-query term."""

from __future__ import annotations

import torch

from kgem.models.factor import FactorInteraction, Side
from kgem.models.interaction import INTERACTIONS


@INTERACTIONS.register("distma")
class DistMA(FactorInteraction):
    """``<h, r> + <r, t> + <h, t>`` (the paper's symmetric part, as PyKEEN ships it): ``<h + r, t> + <h, r>``."""

    reference = "Shi and Xiao 2019, Modeling multi-mapping relations for precise cross-lingual entity alignment"

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (h * r).sum(-1) + (r * t).sum(-1) + (h * t).sum(-1)

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return h + r

    def head_query(self, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return r + t  # the score is symmetric in h and t

    def query_bias(self, x: torch.Tensor, r: torch.Tensor, side: Side) -> torch.Tensor:
        return (x * r).sum(-1)  # <h, r> for tail queries, <r, t> for head queries
