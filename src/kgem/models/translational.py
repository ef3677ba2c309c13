"""Translational and rotational interactions: scores are negative distances."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from kgem.checks import norm_order, optional_positive_int
from kgem.models.factor import FactorInteraction, Side, conj_rows
from kgem.models.interaction import INTERACTIONS, Interaction
from kgem.ops.compare import Comparator, comparator, real_view, sqrt_distance


def power(x: torch.Tensor, p: float) -> torch.Tensor:
    """``x ** p`` for ``x >= 0``; for ``p < 1`` with the gradient 0 at ``x = 0`` (where ``p x^(p-1)`` is infinite
    and the chain rule would multiply it by 0), the same subgradient as ``torch.linalg.vector_norm``'s."""
    if p >= 1:
        return x.pow(p)
    zero = x == 0
    return torch.where(zero, 0.0, torch.where(zero, 1.0, x).pow(p))


def neg_norm(x: torch.Tensor, p: float, power_norm: bool = False) -> torch.Tensor:
    """``-||x||_p`` over the last dimension, or ``-||x||_p^p`` with ``power_norm`` (the papers' squared L2)."""
    if power_norm:
        return -power(x.abs(), p).sum(-1)
    return -torch.linalg.vector_norm(x, ord=p, dim=-1)


def neg_distance(q: torch.Tensor, candidates: torch.Tensor, p: float, power_norm: bool = False) -> torch.Tensor:
    """``-||q_b - c_j||_p`` (``^p`` with ``power_norm``) for all pairs: ``(B, d), (C, d) -> (B, C)``.

    p = 2 uses the expanded square ``|q|^2 - 2 q.c + |c|^2`` (one matmul), clamped at 0 against rounding (its
    root by ``sqrt_distance``: finite gradients at 0); other p use ``cdist``, which does not materialise ``(B, C, d)``.
    """
    if p == 2:
        square = q.pow(2).sum(-1, keepdim=True) - 2 * (q @ candidates.T) + candidates.pow(2).sum(-1)
        return -square.clamp_min(0) if power_norm else -sqrt_distance(square)
    distance = torch.cdist(q, candidates, p=p)
    return -power(distance, p) if power_norm else -distance


def ball(x: torch.Tensor) -> torch.Tensor:
    """``x / max(1, ||x||_2)``: rows projected into the unit ball (the papers' ``||e|| <= 1`` constraints)."""
    return x / x.pow(2).sum(-1, keepdim=True).clamp_min(1).sqrt()  # no sqrt(0): finite gradients at x = 0


def by_relation(r: torch.Tensor, score: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``(B, C)`` scores assembled from ``score(rows) -> (len(rows), C)``, called once per distinct relation row of
    ``r (B, w)`` with the ids of the queries that share it, so that a relation-specific map of the candidate table
    is computed once per relation rather than once per query. Callers use it without gradients only: a map shared
    by equal rows of two different relations would send all its gradient to one of them."""
    _, group, counts = torch.unique(r, dim=0, return_inverse=True, return_counts=True)
    order = torch.argsort(group, stable=True)
    parts = [score(rows) for rows in order.split(counts.tolist())]
    return torch.cat(parts)[torch.argsort(order)]


@INTERACTIONS.register("transe")
class TransE(FactorInteraction):
    """``-||h + r - t||_p`` with unit-norm entity vectors."""

    comparison = "lp"
    keys_are_rows = True
    normalize_entities = True
    reference = "Bordes et al. 2013, Translating embeddings for modeling multi-relational data"

    def __init__(self, dim: int, p: float = 2.0) -> None:
        super().__init__(dim)
        self.p = norm_order(p)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -torch.linalg.vector_norm(h + r - t, ord=self.p, dim=-1)

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return h + r

    def reverse(self, r: torch.Tensor) -> torch.Tensor:
        return -r  # h + r - t = -(t - r - h)

    def reverse_rows(self, r: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        return r * (1 - 2 * flip.to(r.dtype))  # one product: a where and a negation cost four passes with backward


@INTERACTIONS.register("rotate")
class RotatE(FactorInteraction):
    """``-sum_i |h_i r_i - t_i|`` with complex entities and unit-modulus relations ``r = exp(i theta)``.

    ``p = 1`` is the paper's distance, the sum of the moduli. ``p = 2`` is the L2 norm of the complex difference,
    ``sqrt(sum_i |h_i r_i - t_i|^2)``, which is what PyKEEN 1.11's ``RotatEInteraction`` computes whatever ``p`` it
    is given; it is a distance between real vectors, so it takes TransE's expanded-square fast paths.
    """

    entity_kind = "complex"
    relation_kind = "phase"
    keys_are_rows = True
    reference = "Sun et al. 2019, RotatE: knowledge graph embedding by relational rotation in complex space"

    def __init__(self, dim: int, p: float = 1.0) -> None:
        super().__init__(dim)
        if p not in (1, 2):
            raise ValueError(f"p must be 1 (sum of moduli) or 2 (L2 norm of the difference), got {p!r}")
        self.p = p

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        diff = h * r - t
        return -(diff.abs().sum(-1) if self.p == 1 else torch.linalg.vector_norm(diff, dim=-1))

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return real_view(h * r)

    def reverse(self, r: torch.Tensor) -> torch.Tensor:
        return r.conj()  # |h r - t| = |h - t conj(r)| for a unit-modulus r

    def reverse_rows(self, r: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        return conj_rows(r, flip)

    def comparator(self, side: Side) -> Comparator:
        return comparator("modulus" if self.p == 1 else "l2")


class NormInteraction(Interaction):
    """A distance model with the papers' choice of norm: ``-||x||_p``, or ``-||x||_p^p`` with ``power_norm``."""

    def __init__(self, dim: int, p: float = 2.0, power_norm: bool = True) -> None:
        super().__init__(dim)
        self.p, self.power_norm = norm_order(p, power_norm), power_norm

    def extra_repr(self) -> str:
        return f"p={self.p}, power_norm={self.power_norm}"

    def from_square(self, square: torch.Tensor) -> torch.Tensor:
        """The score from a squared L2 distance (the closed forms of the p = 2 fast paths)."""
        return -square if self.power_norm else -sqrt_distance(square)


def project(e: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``e - (w.e) w``: the projection onto the hyperplane of unit normal ``w``."""
    return e - (w * e).sum(-1, keepdim=True) * w


def hyperplane_square(q: torch.Tensor, w: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """``||q_b - (c - (w_b.c) w_b)||^2`` for unit ``w_b``, all pairs ``(B, d), (B, d), (C, d) -> (B, C)``, expanded:
    ``|q|^2 - 2 q.c + 2 (q.w)(w.c) + |c|^2 - (w.c)^2``."""
    wc = w @ candidates.T
    square = (q.pow(2).sum(-1, keepdim=True) - 2 * (q @ candidates.T) + 2 * (q * w).sum(-1, keepdim=True) * wc
              + candidates.pow(2).sum(-1) - wc.pow(2))
    return square.clamp_min(0)


@INTERACTIONS.register("transh")
class TransH(NormInteraction):
    """``-||h⊥ + d_r - t⊥||_2^2``, ``e⊥ = e - (w_r.e) w_r`` on the hyperplane of the unit normal ``w_r``."""

    reference = "Wang et al. 2014, Knowledge graph embedding by translating on hyperplanes"

    def relation_width(self) -> int:
        return 2 * self.dim  # [normal w_r, translation d_r]

    def parts(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit normal ``w_r`` and ``d_r`` projected onto its hyperplane: the paper's ``||w_r|| = 1`` and (with
        epsilon 0) ``w_r.d_r = 0`` constraints, enforced exactly rather than by a penalty."""
        w = F.normalize(r[..., : self.dim], dim=-1)
        return w, project(r[..., self.dim :], w)

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        w, d = self.parts(r)
        return neg_norm(project(ball(h), w) + d - project(ball(t), w), self.p, self.power_norm)

    def score_t(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.p != 2:
            return super().score_t(h, r, t)
        w, d = self.parts(r)
        return self.from_square(hyperplane_square(project(ball(h), w) + d, w, ball(t)))

    def score_h(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.p != 2:
            return super().score_h(h, r, t)
        w, d = self.parts(r)
        return self.from_square(hyperplane_square(project(ball(t), w) - d, w, ball(h)))


@INTERACTIONS.register("transr")
class TransR(NormInteraction):
    """``-||M_r h + r - M_r t||_2^2`` in a relation space of ``relation_dim`` k, ``M_r`` a k×d matrix."""

    reference = "Lin et al. 2015, Learning entity and relation embeddings for knowledge graph completion"

    def __init__(self, dim: int, relation_dim: int | None = None, p: float = 2.0, power_norm: bool = True) -> None:
        super().__init__(dim, p, power_norm)
        self.relation_dim = optional_positive_int("relation_dim", relation_dim, "dim") or dim

    def extra_repr(self) -> str:
        return f"relation_dim={self.relation_dim}, {super().extra_repr()}"

    def relation_width(self) -> int:
        return self.relation_dim * (1 + self.dim)  # [r (k), M_r (k×d) row-major]

    def reset_relation(self, weight: torch.Tensor) -> None:
        # M_r starts as the identity, as in the paper (which also starts entities and r from a trained TransE)
        weight[:, self.relation_dim :] = torch.eye(self.relation_dim, self.dim).flatten()

    def parts(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``r`` in the unit ball (the paper's ``||r|| <= 1``) and ``M_r (..., k, d)``."""
        return ball(r[..., : self.relation_dim]), r[..., self.relation_dim :].unflatten(-1, (self.relation_dim, -1))

    def map(self, e: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """``M_r e`` with both ``e`` and ``M_r e`` in the unit ball (the paper's norm constraints)."""
        return ball(torch.einsum("...kd,...d->...k", m, ball(e)))  # einsum broadcasts without expanding M_r

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        r_vec, m = self.parts(r)
        return neg_norm(self.map(h, m) + r_vec - self.map(t, m), self.p, self.power_norm)

    def score_t(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if r.requires_grad:  # training: the broadcast path, exact gradients per query
            return super().score_t(h, r, t)
        r_vec, m = self.parts(r)
        q = self.map(h, m) + r_vec
        return by_relation(r, lambda rows: neg_distance(q[rows], self.map(t, m[rows[0]]), self.p, self.power_norm))

    def score_h(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if r.requires_grad:
            return super().score_h(h, r, t)
        r_vec, m = self.parts(r)
        q = self.map(t, m) - r_vec
        return by_relation(r, lambda rows: neg_distance(q[rows], self.map(h, m[rows[0]]), self.p, self.power_norm))


@INTERACTIONS.register("transd")
class TransD(NormInteraction):
    """``-||h⊥ + r - t⊥||_2^2``, ``e⊥ = (r_p e_pᵀ + I) e`` from entity and relation projection vectors."""

    reference = "Ji et al. 2015, Knowledge graph embedding via dynamic mapping matrix"

    def __init__(self, dim: int, relation_dim: int | None = None, p: float = 2.0, power_norm: bool = True) -> None:
        super().__init__(dim, p, power_norm)
        self.relation_dim = optional_positive_int("relation_dim", relation_dim, "dim") or dim

    def extra_repr(self) -> str:
        return f"relation_dim={self.relation_dim}, {super().extra_repr()}"

    def entity_width(self) -> int:
        return 2 * self.dim  # [e, e_p]

    def relation_width(self) -> int:
        return 2 * self.relation_dim  # [r, r_p]

    def parts(self, x: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A row split into its vector (in the unit ball: the paper's ``||e||, ||r|| <= 1``) and projection."""
        return ball(x[..., :n]), x[..., n:]

    def identity(self, e: torch.Tensor) -> torch.Tensor:
        """``I e`` for the k×d identity: the first k coordinates, or zero-padded to k."""
        k = self.relation_dim
        return e[..., :k] if k <= self.dim else F.pad(e, (0, k - self.dim))

    def map(self, e: torch.Tensor, r_p: torch.Tensor) -> torch.Tensor:
        """``e⊥ = (e_p.e) r_p + I e``, kept in the unit ball (the paper's ``||e⊥|| <= 1``)."""
        e, e_p = self.parts(e, self.dim)
        return ball((e_p * e).sum(-1, keepdim=True) * r_p + self.identity(e))

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        r_vec, r_p = self.parts(r, self.relation_dim)
        return neg_norm(self.map(h, r_p) + r_vec - self.map(t, r_p), self.p, self.power_norm)

    def score_t(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.p != 2:
            return super().score_t(h, r, t)
        r_vec, r_p = self.parts(r, self.relation_dim)
        return self.from_square(self.square(self.map(h, r_p) + r_vec, r_p, t))

    def score_h(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.p != 2:
            return super().score_h(h, r, t)
        r_vec, r_p = self.parts(r, self.relation_dim)
        return self.from_square(self.square(self.map(t, r_p) - r_vec, r_p, h))

    def square(self, q: torch.Tensor, r_p: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """``||q_b - c⊥_bj||^2`` for all pairs by matmuls: ``c⊥ = ball(s_j r_p,b + u_j)`` with ``s = c_p.c``,
        ``u = I c``, so ``|c⊥|^2`` and ``q.c⊥`` expand into ``(B, C)`` products and ``(B, C, k)`` is never built."""
        e, e_p = self.parts(candidates, self.dim)
        s, u = (e_p * e).sum(-1), self.identity(e)  # (C,), (C, k)
        norm2 = (s.pow(2) * r_p.pow(2).sum(-1, keepdim=True) + 2 * s * (r_p @ u.T) + u.pow(2).sum(-1)).clamp_min(0)
        dot = s * (q * r_p).sum(-1, keepdim=True) + q @ u.T
        return (q.pow(2).sum(-1, keepdim=True) - 2 * dot * norm2.clamp_min(1).rsqrt() + norm2.clamp_max(1)).clamp_min(0)


@INTERACTIONS.register("pairre")
class PairRE(NormInteraction):
    """``-||h ∘ r_h - t ∘ r_t||_1`` with unit-norm entities and a pair of scaling vectors per relation."""

    normalize_entities = True
    reference = "Chao et al. 2021, PairRE: knowledge graph embeddings via paired relation vectors"

    def __init__(self, dim: int, p: float = 1.0) -> None:
        super().__init__(dim, p, power_norm=False)

    def relation_width(self) -> int:
        return 2 * self.dim  # [r_h, r_t]

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return neg_norm(h * r[..., : self.dim] - t * r[..., self.dim :], self.p)


@INTERACTIONS.register("mure")
class MuRE(FactorInteraction):
    """``-||R h - (t + r)||_2^2 + b_h + b_t``, ``R`` diagonal, ``b_h`` the head's subject bias, ``b_t`` the tail's
    object bias."""

    reference = "Balažević et al. 2019, Multi-relational Poincaré graph embeddings"

    def entity_width(self) -> int:
        return self.dim + 2  # [e, subject bias, object bias]

    def relation_width(self) -> int:
        return 2 * self.dim  # [diagonal of R, r]

    def reset_entity(self, weight: torch.Tensor) -> None:
        weight[:, self.dim :] = 0  # biases start at 0, as in the paper's code

    def reset_relation(self, weight: torch.Tensor) -> None:
        torch.nn.init.uniform_(weight[:, : self.dim], -1.0, 1.0)  # diagonal of R, as in the paper's code

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        d = self.dim
        square = (r[..., :d] * h[..., :d] - t[..., :d] - r[..., d:]).pow(2).sum(-1)
        return -square + h[..., d] + t[..., d + 1]

    # tails: -||q - t||^2 with q = R h - r; heads: -||R h - c||^2 = -R^2 . h^2 + 2 (R c) . h - |c|^2 with c = t + r,
    # a dot product of [-R^2, 2 R c] with the key [h^2, h]
    def comparator(self, side: Side) -> Comparator:
        return comparator("squared_l2" if side == "tail" else "dot")

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return r[..., : self.dim] * h[..., : self.dim] - r[..., self.dim :]

    def head_query(self, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        rd = r[..., : self.dim]
        return torch.cat([-rd.pow(2), 2 * rd * (t[..., : self.dim] + r[..., self.dim :])], -1)

    def keys(self, e: torch.Tensor, side: Side) -> torch.Tensor:
        e = e[..., : self.dim]
        return e if side == "tail" else torch.cat([e.pow(2), e], -1)

    def query_bias(self, x: torch.Tensor, r: torch.Tensor, side: Side) -> torch.Tensor:
        if side == "tail":
            return x[..., self.dim]  # the head's subject bias
        return x[..., self.dim + 1] - (x[..., : self.dim] + r[..., self.dim :]).pow(2).sum(-1)

    def key_bias(self, e: torch.Tensor, side: Side) -> torch.Tensor:
        return e[..., self.dim + 1] if side == "tail" else e[..., self.dim]
