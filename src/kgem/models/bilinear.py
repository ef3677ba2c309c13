"""Bilinear interactions: all-entity scoring is one matmul of a query ``q(h, r)`` (or ``q(r, t)``) with the table."""

from __future__ import annotations

import math

import torch
from torch import nn

from kgem.models.factor import FactorInteraction, conj_rows
from kgem.models.interaction import INTERACTIONS
from kgem.ops.compare import real_view


@INTERACTIONS.register("distmult")
class DistMult(FactorInteraction):
    """``<h, r, t> = sum_i h_i r_i t_i``."""

    reference = "Yang et al. 2015, Embedding entities and relations for learning and inference in KBs"
    keys_are_rows = True

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (h * r * t).sum(-1)

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return h * r

    def reverse(self, r: torch.Tensor) -> torch.Tensor:
        return r  # <h, r, t> is symmetric in h and t

    def reverse_rows(self, r: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        return r

    def score_r(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (h * t) @ r.T


@INTERACTIONS.register("complex")
class ComplEx(FactorInteraction):
    """``Re(<h, r, conj(t)>)`` over complex vectors."""

    entity_kind = "complex"
    relation_kind = "complex"
    reference = "Trouillon et al. 2016, Complex embeddings for simple link prediction"
    keys_are_rows = True

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (h * r * t.conj()).sum(-1).real

    # Re(q . conj(t)) = q_re . t_re + q_im . t_im: a real dot product of width 2d
    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return real_view(h * r)

    # Re(h . u) with u = r conj(t) is h_re . u_re - h_im . u_im = real_view(h) . real_view(conj(u)), and
    # conj(u) = t conj(r): the tail query of t with conj(r)
    def reverse(self, r: torch.Tensor) -> torch.Tensor:
        return r.conj()

    def reverse_rows(self, r: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        return conj_rows(r, flip)

    # Re(r . u) with u = h conj(t) is r_re . u_re - r_im . u_im = real_view(r) . real_view(conj(u)), conj(u) = conj(h) t
    def score_r(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return real_view(h.conj() * t) @ real_view(r).T


def ccorr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Circular correlation ``[a * b]_k = sum_i a_i b_{(i + k) mod d}`` via FFT, broadcasting over leading dims."""
    return torch.fft.irfft(torch.fft.rfft(a).conj() * torch.fft.rfft(b), n=a.shape[-1])


def cconv(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Circular convolution ``[a o b]_k = sum_i a_i b_{(k - i) mod d}`` via FFT."""
    return torch.fft.irfft(torch.fft.rfft(a) * torch.fft.rfft(b), n=a.shape[-1])


@INTERACTIONS.register("hole")
class HolE(FactorInteraction):
    """``r . (h * t)`` with ``*`` the circular correlation."""

    reference = "Nickel et al. 2016, Holographic embeddings of knowledge graphs"
    keys_are_rows = True

    def reset_entity(self, weight: torch.Tensor) -> None:
        # the authors' code: Glorot-uniform rows, then projected into the unit ball ||e|| <= 1
        nn.init.xavier_uniform_(weight)
        weight.div_(weight.norm(dim=-1, keepdim=True).clamp_min(1.0))

    def reset_relation(self, weight: torch.Tensor) -> None:
        nn.init.xavier_uniform_(weight)

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (r * ccorr(h, t)).sum(-1)

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        # sum_k r_k sum_i h_i t_{i+k} = sum_j t_j (r o h)_j: the query is a convolution
        return cconv(r, h)

    def head_query(self, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return ccorr(r, t)  # = sum_i h_i (r * t)_i

    def reverse(self, r: torch.Tensor) -> torch.Tensor:
        # ccorr(r, t) = cconv(r', t) with r'_i = r_{-i mod d}
        return torch.roll(torch.flip(r, (-1,)), 1, -1)


def hamilton(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Hamilton product of quaternion tensors ``(..., 4, d)`` (parts 1, i, j, k on dim -2), coordinate-wise."""
    a1, b1, c1, d1 = p.unbind(-2)
    a2, b2, c2, d2 = q.unbind(-2)
    return torch.stack([a1 * a2 - b1 * b2 - c1 * c2 - d1 * d2,
                        a1 * b2 + b1 * a2 + c1 * d2 - d1 * c2,
                        a1 * c2 - b1 * d2 + c1 * a2 + d1 * b2,
                        a1 * d2 + b1 * c2 - c1 * b2 + d1 * a2], dim=-2)


def quaternion_init(weight: torch.Tensor) -> None:
    """QuatE's initialisation of a table ``(n, 4d)``: ``modulus * (cos(theta) + u sin(theta))`` with the modulus
    uniform in ``[-s, s]``, ``s = 1 / sqrt(2 n)`` (He), theta uniform in ``[-pi, pi]`` and ``u`` a unit pure
    quaternion drawn from the positive octant, as in the authors' code."""
    n, width = weight.shape
    d = width // 4
    s = 1.0 / math.sqrt(2 * n)
    modulus = torch.empty(n, d, dtype=weight.dtype, device=weight.device).uniform_(-s, s)
    theta = torch.empty(n, d, dtype=weight.dtype, device=weight.device).uniform_(-math.pi, math.pi)
    u = torch.rand(n, 3, d, dtype=weight.dtype, device=weight.device)
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-12)
    parts = torch.cat([(modulus * theta.cos()).unsqueeze(1), u * (modulus * theta.sin()).unsqueeze(1)], dim=1)
    weight.copy_(parts.flatten(1))


@INTERACTIONS.register("quate")
class QuatE(FactorInteraction):
    """``<h (x) r / |r|, t>``: Hamilton product with the unit relation quaternion; rows are parts ``[1, i, j, k]``."""

    reference = "Zhang et al. 2019, Quaternion knowledge graph embeddings"
    keys_are_rows = True

    def entity_width(self) -> int:
        return 4 * self.dim

    def relation_width(self) -> int:
        return 4 * self.dim

    def reset_entity(self, weight: torch.Tensor) -> None:
        quaternion_init(weight)

    def reset_relation(self, weight: torch.Tensor) -> None:
        quaternion_init(weight)

    def parts(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (4, self.dim))  # (..., 4d) -> (..., 4, d)

    def unit(self, r: torch.Tensor) -> torch.Tensor:
        r = self.parts(r)
        return r / r.norm(dim=-2, keepdim=True).clamp_min(1e-12)

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (hamilton(self.parts(h), self.unit(r)) * self.parts(t)).sum((-2, -1))

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return hamilton(self.parts(h), self.unit(r)).flatten(-2)

    def reverse(self, r: torch.Tensor) -> torch.Tensor:
        # <h r, t> = Re(h r conj(t)) = <h, t conj(r)>, and the unit of conj(r) is the conjugate of r's unit
        conj = torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=r.dtype, device=r.device).unsqueeze(-1)
        return (self.parts(r) * conj).flatten(-2)
