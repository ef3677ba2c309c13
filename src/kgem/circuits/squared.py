"""Squared circuits: ``phi(h, r, t)^2`` of a signed CP or ComplEx score, normalised in closed form.

A CP-form score is linear in each slot's key vector: ``phi = q . k`` with ``q`` the query of the other two slots.
So ``sum_t phi^2 = q^T G q`` with ``G = K^T K`` the Gram of that slot's key table, and the sum over every triple is a
contraction of the three Grams. Everything is a polynomial computed in linear space; logs are taken at the end.

The likelihood is the exact density of a mixture with the uniform distribution over triples, which keeps every log
finite: with ``eps = 1 / (E^2 R)`` and ``Z = sum phi^2``,

    p(h, r, t) = (phi^2 + eps) / (Z + 1),

because the ``E^2 R`` values of ``eps`` sum to 1. Its conditionals are exact too: ``p(t | h, r) = (phi^2 + eps) /
(q^T G q + E eps)``, the same over heads, and ``+ R eps`` over relations. ``log_score`` is ``log(phi^2 + eps)`` and
``log_partition`` is ``log(Z + 1)``.

Grams cost one matmul per table, ``O(N K^2)``; ``grams()`` returns them so a training step can compute them once
and pass them to every method that takes ``grams``.

Ranking caveat: candidates are ranked by ``|phi|``, not by ``phi``, so a model whose tables come from a signed KGE
promotes its most negative scores until trained further.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from kgem.checks import positive, positive_int
from kgem.circuits.base import Circuit


class SquaredGrams(NamedTuple):
    """The Gram ``K^T K`` of each slot's key table: subject, relation, object (``(K, K)`` each)."""

    subject: torch.Tensor
    relation: torch.Tensor
    object: torch.Tensor


def quadratic(q: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """``q^T G q`` over the last dimension, clamped at 0 (exactly >= 0, but it can round below)."""
    return ((q @ gram) * q).sum(-1).clamp(min=0)


def lognormal_(weight: torch.Tensor, width: int, sigma: float) -> None:
    """Fill with ``exp(N(-mu, sigma^2))``, ``mu = ln(width) / 3 + sigma^2 / 2``: mean ``width^(-1/3)`` per entry, so a
    sum of ``width`` products of three entries is 1 on average and the model starts uniform."""
    mu = math.log(width) / 3 + sigma * sigma / 2
    with torch.no_grad():
        weight.normal_(-mu, sigma).exp_()


def check_triples(hrt: torch.Tensor) -> torch.Tensor:
    if hrt.dim() != 2 or hrt.shape[1] != 3:
        raise ValueError(f"hrt must be a (B, 3) tensor of (h, r, t) ids, got shape {tuple(hrt.shape)}")
    return hrt


class SquaredCircuit(Circuit):
    """Shared machinery: subclasses give the key tables, the three slot queries and ``head_form``."""

    entities: nn.Parameter
    relations: nn.Parameter

    def __init__(self, num_entities: int, num_relations: int, dim: int) -> None:
        super().__init__()
        self.num_entities = positive_int("num_entities", num_entities)
        self.num_relations = positive_int("num_relations", num_relations)
        self.dim = positive_int("dim", dim)

    def extra_repr(self) -> str:
        return f"num_entities={self.num_entities}, num_relations={self.num_relations}, dim={self.dim}"

    @property
    def epsilon(self) -> float:
        """The uniform component's mass per triple, ``1 / (E^2 R)``."""
        return 1.0 / (self.num_entities**2 * self.num_relations)

    # --- what a subclass defines ---------------------------------------------------------------------------------
    def subject_keys(self) -> torch.Tensor:
        """``(E, K)``: the vectors a head's score is linear in."""
        raise NotImplementedError

    def object_keys(self) -> torch.Tensor:
        """``(E, K)``: the vectors a tail's score is linear in."""
        raise NotImplementedError

    def relation_keys(self) -> torch.Tensor:
        """``(R, K_r)``: the vectors a relation's score is linear in."""
        raise NotImplementedError

    def tail_query(self, s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """From subject and relation keys, ``q`` with ``phi = q . object_key``."""
        raise NotImplementedError

    def head_query(self, w: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """From relation and object keys, ``q`` with ``phi = q . subject_key``."""
        raise NotImplementedError

    def relation_query(self, s: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """From subject and object keys, ``q`` with ``phi = q . relation_key``."""
        raise NotImplementedError

    def head_form(self, grams: SquaredGrams) -> torch.Tensor:
        """``H`` with ``sum_{r, t} phi(h, r, t)^2 = s_h^T H s_h``: relation and object marginalised."""
        raise NotImplementedError

    # --- closed forms ----------------------------------------------------------------------------------------------
    def grams(self) -> SquaredGrams:
        """The three slot Grams, one matmul each; compute once and share across calls."""
        s, w, o = self.subject_keys(), self.relation_keys(), self.object_keys()
        return SquaredGrams(s.T @ s, w.T @ w, o.T @ o)

    def phi(self, hrt: torch.Tensor) -> torch.Tensor:
        """The signed score ``phi(h, r, t)``: ``(B, 3) -> (B,)``."""
        h, r, t = check_triples(hrt).unbind(-1)
        q = self.tail_query(self.subject_keys()[h], self.relation_keys()[r])
        return (q * self.object_keys()[t]).sum(-1)

    def squared_partition(self, grams: SquaredGrams | None = None) -> torch.Tensor:
        """``Z = sum phi^2`` over every triple, without the uniform component: a scalar."""
        g = self.grams() if grams is None else grams
        return (self.head_form(g) * g.subject).sum().clamp(min=0)

    def log_score(self, hrt: torch.Tensor) -> torch.Tensor:
        """``log(phi^2 + eps)``: the mixture's unnormalised log-density."""
        return torch.log(self.phi(hrt).square() + self.epsilon)

    def log_partition(self, grams: SquaredGrams | None = None) -> torch.Tensor:
        """``log(Z + 1)``: the mixture's normaliser, ``sum (phi^2 + eps)`` over every triple."""
        return torch.log1p(self.squared_partition(grams))

    def log_prob(self, hrt: torch.Tensor, grams: SquaredGrams | None = None) -> torch.Tensor:
        return self.log_score(hrt) - self.log_partition(grams)

    def conditional(self, phi: torch.Tensor, q: torch.Tensor, gram: torch.Tensor, size: int) -> torch.Tensor:
        """``log((phi^2 + eps) / (q^T G q + size * eps))``; ``phi`` is ``(B,)`` or ``(B, N)`` against ``q (B, K)``."""
        norm = torch.log(quadratic(q, gram) + size * self.epsilon)
        if phi.dim() == 2:
            norm = norm.unsqueeze(-1)
        return torch.log(phi.square() + self.epsilon) - norm

    def log_tail(self, hrt: torch.Tensor, grams: SquaredGrams | None = None) -> torch.Tensor:
        h, r, t = check_triples(hrt).unbind(-1)
        q = self.tail_query(self.subject_keys()[h], self.relation_keys()[r])
        g = self.grams() if grams is None else grams
        return self.conditional((q * self.object_keys()[t]).sum(-1), q, g.object, self.num_entities)

    def log_head(self, hrt: torch.Tensor, grams: SquaredGrams | None = None) -> torch.Tensor:
        h, r, t = check_triples(hrt).unbind(-1)
        q = self.head_query(self.relation_keys()[r], self.object_keys()[t])
        g = self.grams() if grams is None else grams
        return self.conditional((q * self.subject_keys()[h]).sum(-1), q, g.subject, self.num_entities)

    def log_relation(self, hrt: torch.Tensor, grams: SquaredGrams | None = None) -> torch.Tensor:
        h, r, t = check_triples(hrt).unbind(-1)
        q = self.relation_query(self.subject_keys()[h], self.object_keys()[t])
        g = self.grams() if grams is None else grams
        return self.conditional((q * self.relation_keys()[r]).sum(-1), q, g.relation, self.num_relations)

    def log_tails(self, h: torch.Tensor, r: torch.Tensor, grams: SquaredGrams | None = None) -> torch.Tensor:
        keys = self.object_keys()
        q = self.tail_query(self.subject_keys()[h], self.relation_keys()[r])
        g = self.grams() if grams is None else grams
        return self.conditional(q @ keys.T, q, g.object, self.num_entities)

    def log_heads(self, r: torch.Tensor, t: torch.Tensor, grams: SquaredGrams | None = None) -> torch.Tensor:
        keys = self.subject_keys()
        q = self.head_query(self.relation_keys()[r], self.object_keys()[t])
        g = self.grams() if grams is None else grams
        return self.conditional(q @ keys.T, q, g.subject, self.num_entities)

    def log_relations(self, h: torch.Tensor, t: torch.Tensor, grams: SquaredGrams | None = None) -> torch.Tensor:
        """``log p(r | h, t)`` for every relation: ``(B,), (B,) -> (B, num_relations)``."""
        keys = self.relation_keys()
        q = self.relation_query(self.subject_keys()[h], self.object_keys()[t])
        g = self.grams() if grams is None else grams
        return self.conditional(q @ keys.T, q, g.relation, self.num_relations)

    def head_mass(self, h: torch.Tensor | None, grams: SquaredGrams) -> torch.Tensor:
        """``sum_{r, t} (phi^2 + eps)`` for the given heads (every entity when ``h`` is None)."""
        s = self.subject_keys() if h is None else self.subject_keys()[h]
        return quadratic(s, self.head_form(grams)) + self.num_relations * self.num_entities * self.epsilon

    def log_marginal_head(self, grams: SquaredGrams | None = None) -> torch.Tensor:
        """``log p(h)`` for every entity: ``(num_entities,)``."""
        g = self.grams() if grams is None else grams
        return torch.log(self.head_mass(None, g)) - self.log_partition(g)

    def log_relation_given_head(self, h: torch.Tensor, grams: SquaredGrams | None = None) -> torch.Tensor:
        """``log p(r | h)`` for every relation: ``(B,) -> (B, num_relations)``; ``O(B R K^2)``."""
        g = self.grams() if grams is None else grams
        q = self.tail_query(self.subject_keys()[h].unsqueeze(1), self.relation_keys().unsqueeze(0))  # (B, R, K)
        mass = quadratic(q, g.object) + self.num_entities * self.epsilon
        return torch.log(mass) - torch.log(self.head_mass(h, g)).unsqueeze(-1)


class CP2(SquaredCircuit):
    """Squared CP: ``phi = sum_i S[h, i] W[r, i] O[t, i]``; entity rows are ``[subject role, object role]`` (``2d``)
    and relation rows ``d``, as the CP interaction lays them out, so its tables can be copied in unchanged."""

    def __init__(self, num_entities: int, num_relations: int, dim: int, init_sigma: float = 1e-3) -> None:
        super().__init__(num_entities, num_relations, dim)
        self.init_sigma = positive("init_sigma", init_sigma)
        self.entities = nn.Parameter(torch.empty(self.num_entities, 2 * self.dim))
        self.relations = nn.Parameter(torch.empty(self.num_relations, self.dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Log-normal entries near ``d^(-1/3)``: every ``phi`` is about 1, so the model starts uniform."""
        lognormal_(self.entities, self.dim, self.init_sigma)
        lognormal_(self.relations, self.dim, self.init_sigma)

    def subject_keys(self) -> torch.Tensor:
        return self.entities[:, : self.dim]

    def object_keys(self) -> torch.Tensor:
        return self.entities[:, self.dim :]

    def relation_keys(self) -> torch.Tensor:
        return self.relations

    def tail_query(self, s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return s * w

    def head_query(self, w: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        return w * o

    def relation_query(self, s: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        return s * o

    def head_form(self, grams: SquaredGrams) -> torch.Tensor:
        # sum_{r,t} (s.w.o)^2 = sum_ij s_i s_j G(W)_ij G(O)_ij, so Z = 1^T [G(S) . G(W) . G(O)] 1
        return grams.relation * grams.object


# M(y) = [[diag alpha, diag beta], [-diag beta, diag alpha]] with phi = x_h^T M(y_r) x_t: block (a, b) of M is the
# relation half ``RELATION_BLOCK[a][b]`` (0 = alpha, 1 = beta) times ``SIGN[a][b]``.
RELATION_BLOCK = ((0, 1), (1, 0))
SIGN = ((1.0, 1.0), (-1.0, 1.0))


class ComplEx2(SquaredCircuit):
    """Squared ComplEx: ``phi = Re<e_h, w_r, conj(e_t)>``; entity rows ``[real parts, imaginary parts]`` (``2d``),
    relation rows likewise. ``phi = x_h^T M(y_r) x_t`` with ``M(y) = [[diag a, diag b], [-diag b, diag a]]``, linear
    in each slot's ``2d`` row, and one entity table serves both roles."""

    def __init__(self, num_entities: int, num_relations: int, dim: int, init_sigma: float = 1e-3) -> None:
        super().__init__(num_entities, num_relations, dim)
        self.init_sigma = positive("init_sigma", init_sigma)
        self.entities = nn.Parameter(torch.empty(self.num_entities, 2 * self.dim))
        self.relations = nn.Parameter(torch.empty(self.num_relations, 2 * self.dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Log-normal entries near ``(2d)^(-1/3)``: ``phi = 2d c^3 = 1`` (three + terms and one -, over ``d``)."""
        lognormal_(self.entities, 2 * self.dim, self.init_sigma)
        lognormal_(self.relations, 2 * self.dim, self.init_sigma)

    def grams(self) -> SquaredGrams:
        x, y = self.entities, self.relations
        g = x.T @ x  # one Gram for both entity roles
        return SquaredGrams(g, y.T @ y, g)

    def subject_keys(self) -> torch.Tensor:
        return self.entities

    def object_keys(self) -> torch.Tensor:
        return self.entities

    def relation_keys(self) -> torch.Tensor:
        return self.relations

    def halves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[..., : self.dim], x[..., self.dim :]

    def tail_query(self, s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        (a, b), (al, be) = self.halves(s), self.halves(w)
        return torch.cat([al * a - be * b, be * a + al * b], -1)  # M^T x_h: e_h * w_r as [re, im]

    def head_query(self, w: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        (al, be), (a, b) = self.halves(w), self.halves(o)
        return torch.cat([al * a + be * b, al * b - be * a], -1)  # M x_t

    def relation_query(self, s: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        (a, b), (c, e) = self.halves(s), self.halves(o)
        return torch.cat([a * c + b * e, a * e - b * c], -1)  # coefficients of alpha and beta

    def head_form(self, grams: SquaredGrams) -> torch.Tensor:
        """``H = sum_r M_r G_E M_r^T`` in ``O(d^2)`` per block after the Grams: block ``(a, c)`` is
        ``sum_{b, b'} G_E[b, b'] * sum_r m_ab,r m_cb',r^T``, and the sum over ``r`` is a block of ``G_R`` (signed)."""
        d = self.dim

        def block(g: torch.Tensor, i: int, j: int) -> torch.Tensor:
            return g[i * d : (i + 1) * d, j * d : (j + 1) * d]

        rows = []
        for a in range(2):
            row = []
            for c in range(2):
                total = torch.zeros_like(block(grams.subject, 0, 0))
                for b in range(2):
                    for b2 in range(2):
                        rel = block(grams.relation, RELATION_BLOCK[a][b], RELATION_BLOCK[c][b2])
                        total = total + SIGN[a][b] * SIGN[c][b2] * block(grams.subject, b, b2) * rel
                row.append(total)
            rows.append(torch.cat(row, -1))
        return torch.cat(rows, 0)
