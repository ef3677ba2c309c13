"""Translational and rotational interactions: scores are negative distances."""

from __future__ import annotations

import torch

from kgem.models.interaction import INTERACTIONS, Interaction


def neg_distance(q: torch.Tensor, candidates: torch.Tensor, p: float) -> torch.Tensor:
    """``-||q_b - c_j||_p`` for all pairs: ``(B, d), (C, d) -> (B, C)``.

    p = 2 uses the expanded square ``|q|^2 - 2 q.c + |c|^2`` (one matmul), clamped at 0 against rounding;
    other p use ``cdist``, which does not materialise ``(B, C, d)``.
    """
    if p == 2:
        square = q.pow(2).sum(-1, keepdim=True) - 2 * (q @ candidates.T) + candidates.pow(2).sum(-1)
        return -square.clamp_min(0).sqrt()
    return -torch.cdist(q, candidates, p=p)


@INTERACTIONS.register("transe")
class TransE(Interaction):
    """``-||h + r - t||_p`` with unit-norm entity vectors."""

    normalize_entities = True
    reference = "Bordes et al. 2013, Translating embeddings for modeling multi-relational data"

    def __init__(self, dim: int, p: float = 2.0) -> None:
        super().__init__(dim)
        self.p = p

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -torch.linalg.vector_norm(h + r - t, ord=self.p, dim=-1)

    def score_t(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return neg_distance(h + r, t, self.p)

    def score_h(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return neg_distance(t - r, h, self.p)


@INTERACTIONS.register("rotate")
class RotatE(Interaction):
    """``-sum_i |h_i r_i - t_i|`` with complex entities and unit-modulus relations ``r = exp(i theta)``."""

    entity_kind = "complex"
    relation_kind = "phase"
    reference = "Sun et al. 2019, RotatE: knowledge graph embedding by relational rotation in complex space"

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -(h * r - t).abs().sum(-1)
