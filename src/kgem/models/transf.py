"""TransF: a translation scored by dot products, ``(h + r).t + h.(t - r)``, so every scoring mode is a matmul."""

from __future__ import annotations

import torch

from kgem.models.factor import FactorInteraction, Side
from kgem.models.interaction import INTERACTIONS


@INTERACTIONS.register("transf")
class TransF(FactorInteraction):
    """``(h + r).t + h.(t - r) = <2h + r, t> - <h, r> = <2t - r, h> + <r, t>`` (the paper's balanced variant, as
    PyKEEN ships it)."""

    reference = "Feng et al. 2016, Knowledge graph embedding by flexible translation"

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return ((h + r) * t).sum(-1) + (h * (t - r)).sum(-1)

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return 2 * h + r

    def head_query(self, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 2 * t - r

    def query_bias(self, x: torch.Tensor, r: torch.Tensor, side: Side) -> torch.Tensor:
        dot = (x * r).sum(-1)
        return -dot if side == "tail" else dot  # -<h, r> for tail queries, <r, t> for head queries
