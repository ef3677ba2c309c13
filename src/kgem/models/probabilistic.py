"""Probabilistic interactions: entities and relations are Gaussian distributions (diagonal covariances)."""

from __future__ import annotations

import math
from typing import Literal

import torch

from kgem.checks import positive
from kgem.models.interaction import INTERACTIONS, Interaction


@INTERACTIONS.register("kg2e")
class KG2E(Interaction):
    """``-KL(N(mu_h - mu_t, S_h + S_t) || N(mu_r, S_r))``; EL: ``log N(mu_h - mu_t - mu_r; 0, S_h + S_t + S_r)``."""

    reference = "He et al. 2015, Learning to represent knowledge graphs with Gaussian embedding"
    # rows are [mean (d), covariance diagonal (d)]; EL is the log expected likelihood (the Gaussians' overlap)

    def __init__(self, dim: int, similarity: Literal["KL", "EL"] = "KL", c_min: float = 0.05,
                 c_max: float = 5.0) -> None:
        super().__init__(dim)
        if str(similarity).upper() not in ("KL", "EL"):
            raise ValueError(f"similarity must be 'KL' or 'EL', got {similarity!r}")
        c_min, c_max = positive("c_min", c_min), positive("c_max", c_max)
        if not c_min <= c_max:
            raise ValueError(f"need 0 < c_min <= c_max, got c_min={c_min}, c_max={c_max}")
        self.similarity, self.c_min, self.c_max = similarity.upper(), c_min, c_max

    def extra_repr(self) -> str:
        return f"similarity={self.similarity}, c_min={self.c_min}, c_max={self.c_max}"

    def entity_width(self) -> int:
        return 2 * self.dim

    def relation_width(self) -> int:
        return 2 * self.dim

    def reset_entity(self, weight: torch.Tensor) -> None:
        weight[:, self.dim :].uniform_(self.c_min, self.c_max)  # variances inside the allowed box

    def reset_relation(self, weight: torch.Tensor) -> None:
        weight[:, self.dim :].uniform_(self.c_min, self.c_max)

    def gaussian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows -> (mean, covariance): the paper's constraints ``||mu|| <= 1`` and ``c_min <= S_ii <= c_max``."""
        mean, cov = x[..., : self.dim], x[..., self.dim :]
        mean = mean / torch.linalg.vector_norm(mean, dim=-1, keepdim=True).clamp_min(1.0)
        return mean, cov.clamp(self.c_min, self.c_max)

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        (mu_h, s_h), (mu_r, s_r), (mu_t, s_t) = self.gaussian(h), self.gaussian(r), self.gaussian(t)
        mu_e, s_e = mu_h - mu_t, s_h + s_t  # the entity transformation h - t
        if self.similarity == "EL":
            s = s_e + s_r
            return -0.5 * ((mu_e - mu_r).pow(2) / s + s.log() + math.log(2 * math.pi)).sum(-1)
        return -0.5 * (s_e / s_r + (mu_r - mu_e).pow(2) / s_r - (s_e / s_r).log() - 1).sum(-1)
