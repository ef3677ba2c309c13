"""Bilinear interactions: all-entity scoring is one matmul."""

from __future__ import annotations

import torch

from kgem.models.interaction import INTERACTIONS, Interaction


def real_view(x: torch.Tensor) -> torch.Tensor:
    """Complex ``(..., d)`` -> real ``(..., 2d)`` with (re, im) interleaved; no copy for contiguous input."""
    return torch.view_as_real(x).flatten(-2)


@INTERACTIONS.register("distmult")
class DistMult(Interaction):
    """``<h, r, t> = sum_i h_i r_i t_i``."""

    reference = "Yang et al. 2015, Embedding entities and relations for learning and inference in KBs"

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (h * r * t).sum(-1)

    def score_t(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (h * r) @ t.T

    def score_h(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (r * t) @ h.T


@INTERACTIONS.register("complex")
class ComplEx(Interaction):
    """``Re(<h, r, conj(t)>)`` over complex vectors."""

    entity_kind = "complex"
    relation_kind = "complex"
    reference = "Trouillon et al. 2016, Complex embeddings for simple link prediction"

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (h * r * t.conj()).sum(-1).real

    def score_t(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # Re(q . conj(t)) = q_re . t_re + q_im . t_im: one real matmul of width 2d
        return real_view(h * r) @ real_view(t).T

    def score_h(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # Re(h . u) with u = r conj(t) is h_re . u_re - h_im . u_im = real_view(h) . real_view(conj(u))
        return real_view(r.conj() * t) @ real_view(h).T
