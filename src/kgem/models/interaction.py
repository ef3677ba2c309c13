"""The interaction contract shared by every scoring function: one broadcasting convention for every
scoring mode.

``forward(h, r, t)`` takes tensors broadcastable to ``(*batch, d)`` and returns scores ``(*batch)``; higher
means more plausible. The scoring modes are shapes, not methods with separate maths:

==================  ===========================================  ========
mode                h, r, t                                      scores
==================  ===========================================  ========
given triples       ``(B, d), (B, d), (B, d)``                   ``(B,)``
all tails           ``(B, 1, d), (B, 1, d), (1, C, d)``          ``(B, C)``
sampled tails       ``(B, 1, d), (B, 1, d), (B, K, d)``          ``(B, K)``
all heads           ``(1, C, d), (B, 1, d), (B, 1, d)``          ``(B, C)``
==================  ===========================================  ========

``score_t`` / ``score_h`` score a batch against a candidate table ``(C, d)``, and ``score_r`` each ``(h, t)`` pair
against a table of relations ``(R, d)``. The default broadcasts in chunks
of candidates so memory stays bounded; interactions with a closed form (a matmul, the expanded square)
override them, and a test proves the override equals the broadcast path. ``score_t_sampled`` /
``score_h_sampled`` score each query against its own candidates ``table[ids[b]]`` (negative sampling); the
default gathers them (the sampled mode above), and interactions with a dot-product form override them with
``kgem.ops.sampled`` so that the ``(B, K, d)`` gather never exists.

A representation row is a flat vector of floats (complex numbers for the ``complex`` kind). An interaction that
needs several parts per row (TransR's translation and projection matrix, KG2E's mean and covariance) asks for a
wider row through ``entity_width`` / ``relation_width`` and splits the last dimension itself, so every scoring
mode and the chunked broadcast keep working unchanged. ``reset_entity`` / ``reset_relation`` initialise rows whose
parts need their own start values (positive variances, zero biases) when the user gives no initializer.

``normalize_entities`` says whether the paper keeps entity rows at unit norm. The constraint itself is a setting of
the entity representation (``Embedding.normalize``): ``forward`` by default for such models, ``none`` for the
others; ``build_model(..., normalize=...)`` chooses another (``step``: project after each optimizer step, PyKEEN's
semantics; ``none``: PyTorch-BigGraph's unconstrained TransE), and a saved model's spec records it.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from kgem.checks import positive_int
from kgem.models.representation import Kind
from kgem.ops.compare import chunked
from kgem.registry import Registry


class Interaction(nn.Module):
    """Base class. Subclasses set the representation kinds they need and implement ``forward``."""

    entity_kind: ClassVar[Kind] = "real"
    relation_kind: ClassVar[Kind] = "real"
    normalize_entities: ClassVar[bool] = False  # the paper keeps entity rows at unit L2 norm
    reference: ClassVar[str] = ""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = positive_int("dim", dim)

    def entity_width(self) -> int:
        """Numbers per entity row (complex numbers for the complex kind)."""
        return self.dim

    def relation_width(self) -> int:
        """Numbers per relation row."""
        return self.dim

    def reset_entity(self, weight: torch.Tensor) -> None:
        """Initialise the raw entity table in place when no initializer is given (default: keep the uniform)."""

    def reset_relation(self, weight: torch.Tensor) -> None:
        """Initialise the raw relation table in place when no initializer is given."""

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score_t(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``h, r: (B, d)``, candidate tails ``t: (C, d)`` -> ``(B, C)``."""
        return chunked(lambda tc: self(h.unsqueeze(1), r.unsqueeze(1), tc.unsqueeze(0)), t, h.numel())

    def score_h(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Candidate heads ``h: (C, d)``, ``r, t: (B, d)`` -> ``(B, C)``."""
        return chunked(lambda hc: self(hc.unsqueeze(0), r.unsqueeze(1), t.unsqueeze(1)), h, t.numel())

    def score_r(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``h, t: (B, d)``, candidate relations ``r: (R, d)`` -> ``(B, R)``."""
        return chunked(lambda rc: self(h.unsqueeze(1), rc.unsqueeze(0), t.unsqueeze(1)), r, h.numel())

    def score_t_sampled(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``h, r: (B, d)``, candidate table ``t: (N, d)``, per-query candidates ``ids: (B, K)`` -> ``(B, K)``."""
        return self(h.unsqueeze(1), r.unsqueeze(1), t[ids])

    def score_h_sampled(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Candidate table ``h: (N, d)``, ``r, t: (B, d)``, per-query candidates ``ids: (B, K)`` -> ``(B, K)``."""
        return self(h[ids], r.unsqueeze(1), t.unsqueeze(1))

    def generic_score_t(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The broadcast path of ``score_t``, whatever the subclass overrides (used by tests)."""
        return Interaction.score_t(self, h, r, t)

    def generic_score_h(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return Interaction.score_h(self, h, r, t)

    def generic_score_r(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return Interaction.score_r(self, h, r, t)

    def generic_score_t_sampled(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor,
                                ids: torch.Tensor) -> torch.Tensor:
        return Interaction.score_t_sampled(self, h, r, t, ids)

    def generic_score_h_sampled(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor,
                                ids: torch.Tensor) -> torch.Tensor:
        return Interaction.score_h_sampled(self, h, r, t, ids)


INTERACTIONS: Registry[type[Interaction]] = Registry("model")
