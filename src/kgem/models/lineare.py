"""LineaRE: each relation a linear map of the coordinates, ``t_i ~ (r_h,i h_i + r_i) / r_t,i``, scored by an L1
distance. Both sides are scaled per relation, so the score is no comparison of a query with candidate rows: every
scoring mode is the generic chunked broadcast of ``forward``."""

from __future__ import annotations

import torch

from kgem.models.interaction import INTERACTIONS
from kgem.models.translational import NormInteraction, neg_norm


@INTERACTIONS.register("lineare")
class LineaRE(NormInteraction):
    """``-||h ∘ r_h - t ∘ r_t + r||_1`` with relation rows ``[r_h, r, r_t]``; ``p`` and ``power_norm`` generalise
    the paper's L1 as in PyKEEN."""

    reference = "Peng and Zhang 2020, LineaRE: simple but powerful knowledge graph embedding for link prediction"

    def __init__(self, dim: int, p: float = 1.0, power_norm: bool = False) -> None:
        super().__init__(dim, p, power_norm)

    def relation_width(self) -> int:
        return 3 * self.dim  # [r_h, r, r_t]

    def parts(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The head scale, the translation and the tail scale."""
        r_h, r_mid, r_t = r.split(self.dim, dim=-1)
        return r_h, r_mid, r_t

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        r_h, r_mid, r_t = self.parts(r)
        return neg_norm(h * r_h - t * r_t + r_mid, self.p, self.power_norm)
