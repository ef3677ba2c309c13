"""Geometric interactions beyond plain translation: relation-specific linear maps, the torus, boxes."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kgem.checks import norm_order
from kgem.models.factor import FactorInteraction, Side
from kgem.models.interaction import INTERACTIONS, Interaction
from kgem.models.translational import by_relation, neg_distance, neg_norm


@INTERACTIONS.register("um")
class UM(FactorInteraction):
    """``-||h - t||_2^2`` with unit-norm entities; the relation is ignored."""

    comparison = "squared_l2"
    keys_are_rows = True
    normalize_entities = True
    reference = "Bordes et al. 2014, A semantic matching energy function for learning with multi-relational data"

    def relation_width(self) -> int:
        return 1  # one unused column: the model keeps its usual relation table, which gets no gradient

    def reset_relation(self, weight: torch.Tensor) -> None:
        weight.zero_()

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        score = -(h - t).pow(2).sum(-1)
        return score.expand(torch.broadcast_shapes(score.shape, r.shape[:-1]))  # a score per relation too

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return h

    def reverse(self, r: torch.Tensor) -> torch.Tensor:
        return r


@INTERACTIONS.register("se")
class SE(Interaction):
    """``-||M_r,h h - M_r,t t||_1`` with two d×d matrices per relation and unit-norm entities."""

    normalize_entities = True
    reference = "Bordes et al. 2011, Learning structured embeddings of knowledge bases"

    def __init__(self, dim: int, p: float = 1.0) -> None:
        super().__init__(dim)
        self.p = norm_order(p)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def relation_width(self) -> int:
        return 2 * self.dim * self.dim  # [M_r,h, M_r,t], row-major

    def reset_relation(self, weight: torch.Tensor) -> None:
        # entries of order 1/sqrt(d), so that M e of a unit e has entries of the size of e's
        torch.nn.init.uniform_(weight, -1 / math.sqrt(self.dim), 1 / math.sqrt(self.dim))

    def maps(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = r.unflatten(-1, (2, self.dim, self.dim))
        return m[..., 0, :, :], m[..., 1, :, :]

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        m_h, m_t = self.maps(r)
        return neg_norm(torch.einsum("...ij,...j->...i", m_h, h) - torch.einsum("...ij,...j->...i", m_t, t), self.p)

    def score_t(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if r.requires_grad:  # training: the broadcast path, exact gradients per query
            return super().score_t(h, r, t)
        m_h, m_t = self.maps(r)
        q = torch.einsum("bij,bj->bi", m_h, h)
        return by_relation(r, lambda rows: neg_distance(q[rows], t @ m_t[rows[0]].T, self.p))

    def score_h(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if r.requires_grad:
            return super().score_h(h, r, t)
        m_h, m_t = self.maps(r)
        q = torch.einsum("bij,bj->bi", m_t, t)
        return by_relation(r, lambda rows: neg_distance(q[rows], h @ m_h[rows[0]].T, self.p))


@INTERACTIONS.register("toruse")
class TorusE(FactorInteraction):
    """``-f(h + r - t)`` on the torus ``R^d / Z^d``: ``2 d_L1``, ``4 d_L2^2`` or ``d_eL2^2 / 4 = sum sin^2(pi x)``."""

    reference = "Ebisu & Ichise 2018, TorusE: knowledge graph embedding on a Lie group"

    def __init__(self, dim: int, distance: str = "el2") -> None:
        super().__init__(dim)
        if distance not in ("l1", "l2", "el2"):
            raise ValueError(f"distance must be 'l1', 'l2' or 'el2', got {distance!r}")
        self.distance = distance

    def extra_repr(self) -> str:
        return f"distance={self.distance}"

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = h + r - t
        if self.distance == "el2":  # |exp(2 pi i a) - exp(2 pi i b)|^2 = 4 sin^2(pi (a - b))
            return -torch.sin(math.pi * x).pow(2).sum(-1)
        x = x - torch.floor(x)
        x = torch.minimum(x, 1 - x)  # per coordinate, the shorter way round the circle
        return -2 * x.sum(-1) if self.distance == "l1" else -4 * x.pow(2).sum(-1)

    # el2: -sum sin^2(pi (x - y)) = (cos a . cos b + sin a . sin b - d) / 2 with angles a = 2 pi x, b = 2 pi y: a dot
    # product of [cos a, sin a] / 2 with the key [cos b, sin b], x = h + r (tails) or t - r (heads)
    @property
    def factorised(self) -> bool:
        return self.distance == "el2"

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return self.keys(h + r, "tail") / 2

    def reverse(self, r: torch.Tensor) -> torch.Tensor:
        return -r

    def keys(self, e: torch.Tensor, side: Side) -> torch.Tensor:
        angle = 2 * math.pi * e
        return torch.cat([torch.cos(angle), torch.sin(angle)], -1)

    def query_bias(self, x: torch.Tensor, r: torch.Tensor, side: Side) -> torch.Tensor:
        return x.new_full(torch.broadcast_shapes(x.shape[:-1], r.shape[:-1]), -self.dim / 2)


def box_distance(point: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """BoxE's elementwise point-to-box distance with ``w = high - low + 1`` and centre ``c``: ``|p - c| / w`` inside,
    ``|p - c| w - (w - 1)(w - 1/w) / 2`` outside (the two agree on the boundary; outside grows w times faster)."""
    w = high - low + 1
    offset = (point - (low + high) / 2).abs()
    inside = (low <= point) & (point <= high)
    return torch.where(inside, offset / w, offset * w - 0.5 * (w - 1) * (w - 1 / w))


@INTERACTIONS.register("boxe")
class BoxE(Interaction):
    """``-||δ(h + b_t, box_h)||_2 - ||δ(t + b_h, box_t)||_2``: entity points, bumped by the other entity, against
    the relation's head and tail boxes (δ the point-to-box distance)."""

    reference = "Abboud et al. 2020, BoxE: a box embedding model for knowledge base completion"

    def __init__(self, dim: int, p: float = 2.0, power_norm: bool = False, tanh_map: bool = True) -> None:
        super().__init__(dim)
        self.p, self.power_norm, self.tanh_map = norm_order(p, power_norm), power_norm, tanh_map

    def extra_repr(self) -> str:
        return f"p={self.p}, power_norm={self.power_norm}, tanh_map={self.tanh_map}"

    def entity_width(self) -> int:
        return 2 * self.dim  # [base position, bump]

    def relation_width(self) -> int:
        return 2 * (2 * self.dim + 1)  # head box and tail box, each [centre (d), shape (d), size (1)]

    def reset_relation(self, weight: torch.Tensor) -> None:
        # shapes away from 0 so that their geometric-mean normalisation starts well conditioned; size 0 is scale 1
        for box in weight.view(len(weight), 2, 2 * self.dim + 1).unbind(1):
            torch.nn.init.uniform_(box[:, self.dim : 2 * self.dim], 0.5, 1.5)
            box[:, 2 * self.dim] = 0

    def box(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Corners of a box from its centre, its shape (normalised to geometric mean 1) and its positive size
        ``elu(s) + 1``."""
        d = self.dim
        centre, shape, size = r[..., :d], r[..., d : 2 * d].abs(), F.elu(r[..., 2 * d :]) + 1
        width = size * shape / shape.clamp_min(1e-8).log().mean(-1, keepdim=True).exp()
        return centre - width / 2, centre + width / 2

    def position(self, point: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        if self.tanh_map:  # the paper's bounded space: points and corners mapped into (-1, 1)
            point, low, high = torch.tanh(point), torch.tanh(low), torch.tanh(high)
        return neg_norm(box_distance(point, low, high), self.p, self.power_norm)

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        d, half = self.dim, 2 * self.dim + 1
        head_box, tail_box = self.box(r[..., :half]), self.box(r[..., half:])
        return self.position(h[..., :d] + t[..., d:], *head_box) + self.position(t[..., :d] + h[..., d:], *tail_box)
