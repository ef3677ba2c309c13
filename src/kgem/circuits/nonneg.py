"""Non-negative ("monotone") generative circuits: CP+, ComplEx+, RESCAL+ and TuckER+.

Every embedding entry and every sum weight is the exponential of an unconstrained logit, so the score
``phi(h, r, t) >= 0`` is a mixture of fully factorised components and a sum over any slot is the same circuit
evaluated with that slot's embedding table replaced by its column sums. The partition function and every
conditional therefore cost ``O((num_entities + num_relations) * dim)`` for the column sums and ``O(dim)`` per triple
after that, with no ``(B, num_entities)`` softmax. Everything is computed in log space: column sums are
``logsumexp`` over rows and scores ``logsumexp`` over components, so logits far from 0 stay finite.

CP+ and ComplEx+ share one engine (``LogCP``): a rank-K CP whose three factor tables are given as logits. ComplEx+
is written as such a CP of rank 4 * dim with all four groups non-negative (see ``ComplExPlus``), so it needs no
signed sum and no clamp.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kgem import checks
from kgem.circuits.base import Circuit


def log_matmul_exp(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``log sum_k exp(x[b, k] + y[e, k])`` for every pair: ``(B, K), (E, K) -> (B, E)``.

    Each operand is shifted by its row maximum before the matmul, so the largest term of each row is ``exp(0)``;
    a sum that still underflows (terms more than ~700 nats, or ~85 in float32, below the row maxima) is clamped to
    the smallest normal number, so the result is very negative but finite.
    """
    mx = _row_max(x)
    my = _row_max(y)
    out = (x - mx).exp() @ (y - my).exp().transpose(0, 1)
    return out.clamp_min(torch.finfo(out.dtype).tiny).log() + mx + my.transpose(0, 1)


def _row_max(x: torch.Tensor) -> torch.Tensor:
    """Each row's maximum as a ``(N, 1)`` shift, detached (the result does not depend on it) and 0 where a row is
    all ``-inf`` (so the shift does not produce ``nan``)."""
    m = x.detach().amax(dim=-1, keepdim=True)
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))


def split_hrt(hrt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The columns ``h, r, t`` of a ``(B, 3)`` id tensor; anything else is refused in one line."""
    if hrt.ndim != 2 or hrt.shape[1] != 3 or hrt.is_floating_point() or hrt.is_complex():
        raise ValueError(f"hrt must be a (B, 3) integer tensor of (h, r, t) ids, got {tuple(hrt.shape)} {hrt.dtype}")
    return hrt[:, 0], hrt[:, 1], hrt[:, 2]


def dirichlet_logits(rows: int, cols: int, init_scale: float) -> torch.Tensor:
    """``(rows, cols)`` logits whose every column is the log of a ``Dirichlet(1 / init_scale)`` sample over the rows:
    each column starts as an almost uniform normalised distribution, so its column sum (in linear space) is 1."""
    concentration = torch.full((rows,), 1.0 / init_scale, dtype=torch.float64)
    sample = torch.distributions.Dirichlet(concentration).sample((cols,))
    return sample.clamp_min(torch.finfo(torch.float64).tiny).log().transpose(0, 1).to(torch.get_default_dtype())


def set_sizes(circuit: LogCP | EntityQueries, num_entities: int, num_relations: int, dim: int,
              init_scale: float) -> float:
    """Check and set a non-negative circuit's ``num_entities``, ``num_relations`` and ``dim``; returns the checked
    ``init_scale``. Every constructor here starts so, and a bad value is the same one-line error in each."""
    circuit.num_entities = checks.positive_int("num_entities", num_entities)
    circuit.num_relations = checks.positive_int("num_relations", num_relations)
    circuit.dim = checks.positive_int("dim", dim)
    return checks.positive("init_scale", init_scale)


class LogCP(Circuit):
    """A non-negative CP circuit ``phi(h, r, t) = sum_k S[h, k] W[r, k] O[t, k]`` given by log factor tables.

    Subclasses return the log subject, relation and object factors of given ids (all rows for ``None``):
    ``(n, K)`` tables in log space. Marginalising a slot replaces its factor by its column sums, the log of which
    is a ``logsumexp`` over the table's rows.
    """

    dim: int

    def log_subject(self, h: torch.Tensor | None = None) -> torch.Tensor:
        """Log subject factors ``log S[h]``: ``(B, K)``, or ``(num_entities, K)`` for ``None``."""
        raise NotImplementedError

    def log_relation_factor(self, r: torch.Tensor | None = None) -> torch.Tensor:
        """Log relation factors ``log W[r]``: ``(B, K)``, or ``(num_relations, K)`` for ``None``."""
        raise NotImplementedError

    def log_object(self, t: torch.Tensor | None = None) -> torch.Tensor:
        """Log object factors ``log O[t]``: ``(B, K)``, or ``(num_entities, K)`` for ``None``."""
        raise NotImplementedError

    def log_column_sums(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log A, log B, log C)``: the log column sums of the subject, relation and object factors, each ``(K,)``."""
        return (torch.logsumexp(self.log_subject(), dim=0), torch.logsumexp(self.log_relation_factor(), dim=0),
                torch.logsumexp(self.log_object(), dim=0))

    def log_score(self, hrt: torch.Tensor) -> torch.Tensor:
        h, r, t = split_hrt(hrt)
        return torch.logsumexp(self.log_subject(h) + self.log_relation_factor(r) + self.log_object(t), dim=-1)

    def log_partition(self) -> torch.Tensor:
        a, b, c = self.log_column_sums()
        return torch.logsumexp(a + b + c, dim=-1)

    def log_tail(self, hrt: torch.Tensor) -> torch.Tensor:
        h, r, _ = split_hrt(hrt)
        query = self.log_subject(h) + self.log_relation_factor(r)
        return self.log_score(hrt) - torch.logsumexp(query + self.log_column_sums()[2], dim=-1)

    def log_head(self, hrt: torch.Tensor) -> torch.Tensor:
        _, r, t = split_hrt(hrt)
        query = self.log_relation_factor(r) + self.log_object(t)
        return self.log_score(hrt) - torch.logsumexp(query + self.log_column_sums()[0], dim=-1)

    def log_relation(self, hrt: torch.Tensor) -> torch.Tensor:
        h, _, t = split_hrt(hrt)
        query = self.log_subject(h) + self.log_object(t)
        return self.log_score(hrt) - torch.logsumexp(query + self.log_column_sums()[1], dim=-1)

    def log_tails(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        query = self.log_subject(h) + self.log_relation_factor(r)
        return log_matmul_exp(query, self.log_object()) - torch.logsumexp(
            query + self.log_column_sums()[2], dim=-1, keepdim=True)

    def log_heads(self, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        query = self.log_relation_factor(r) + self.log_object(t)
        return log_matmul_exp(query, self.log_subject()) - torch.logsumexp(
            query + self.log_column_sums()[0], dim=-1, keepdim=True)

    def log_marginal_head(self) -> torch.Tensor:
        """``log p(s)`` for every entity: ``(num_entities,)``; relation and object replaced by their column sums."""
        a, b, c = self.log_column_sums()
        return torch.logsumexp(self.log_subject() + b + c, dim=-1) - torch.logsumexp(a + b + c, dim=-1)

    def log_relation_given_head(self, h: torch.Tensor) -> torch.Tensor:
        """``log p(r | s = h)`` for every relation: ``(B,) -> (B, num_relations)``; the object marginalised out."""
        _, b, c = self.log_column_sums()
        query = self.log_subject(h) + c
        return log_matmul_exp(query, self.log_relation_factor()) - torch.logsumexp(query + b, dim=-1, keepdim=True)


def _rows(table: torch.Tensor, ids: torch.Tensor | None) -> torch.Tensor:
    return table if ids is None else table[ids]


class CPPlus(LogCP):
    """CP+: ``phi = sum_i exp(theta[h, i] + rho[r, i] + theta'[t, i])`` with separate subject-role (``theta``) and
    object-role (``theta'``) entity logits and relation logits ``rho``, all unconstrained.

    ``init_scale`` sets the initial spread: every column of every table starts as the log of a
    ``Dirichlet(1 / init_scale)`` sample, an almost uniform distribution over the rows, so the initial column sums
    are all 1.
    """

    def __init__(self, num_entities: int, num_relations: int, dim: int, init_scale: float = 1e-3) -> None:
        super().__init__()
        scale = set_sizes(self, num_entities, num_relations, dim, init_scale)
        self.subject_logits = nn.Parameter(dirichlet_logits(self.num_entities, self.dim, scale))
        self.relation_logits = nn.Parameter(dirichlet_logits(self.num_relations, self.dim, scale))
        self.object_logits = nn.Parameter(dirichlet_logits(self.num_entities, self.dim, scale))

    def log_subject(self, h: torch.Tensor | None = None) -> torch.Tensor:
        return _rows(self.subject_logits, h)

    def log_relation_factor(self, r: torch.Tensor | None = None) -> torch.Tensor:
        return _rows(self.relation_logits, r)

    def log_object(self, t: torch.Tensor | None = None) -> torch.Tensor:
        return _rows(self.object_logits, t)


class ComplExPlus(LogCP):
    """ComplEx+: ``phi = Re <e_h, w_r, conj(e_t)>`` with entity ``e = a + i b`` and relation ``w = alpha + i beta``,
    where ``a = exp(theta)``, ``b = a * sigmoid(omega)`` (so ``0 <= b <= a``), and likewise ``alpha = exp(rho)``,
    ``beta = alpha * sigmoid(omega_r)``; one entity table serves both roles.

    Per coordinate ``phi`` has the terms ``a_h alpha a_t + b_h alpha b_t + a_h beta b_t - b_h beta a_t``. Writing
    ``a - b = a * sigmoid(-omega)`` and ``alpha - beta = alpha * sigmoid(-omega_r)`` (both >= 0), the first minus the
    last is ``alpha (a_h - b_h) a_t + (alpha - beta) b_h a_t``, so ``phi`` is a CP of rank ``4 * dim`` whose four
    groups are all non-negative: subject factors ``[a - b, b, b, a]``, relation factors
    ``[alpha, alpha - beta, alpha, beta]``, object factors ``[a, a, b, b]``. Its logs are sums of logits and
    ``logsigmoid``, exact at any scale, with no cancellation to clamp. Summing over all triples gives
    ``Z = sum_i alpha_sum (a_sum^2 + b_sum^2)``: the ``beta`` terms cancel.

    Initialisation: every column of ``theta`` and ``rho`` is the log of a ``Dirichlet(1 / init_scale)`` sample and
    ``omega ~ N(0, 0.01^2)``, so ``b`` starts near ``a / 2``.
    """

    def __init__(self, num_entities: int, num_relations: int, dim: int, init_scale: float = 1e-3) -> None:
        super().__init__()
        scale = set_sizes(self, num_entities, num_relations, dim, init_scale)
        self.entity_logits = nn.Parameter(dirichlet_logits(self.num_entities, self.dim, scale))
        self.entity_imag_logits = nn.Parameter(0.01 * torch.randn(self.num_entities, self.dim))
        self.relation_logits = nn.Parameter(dirichlet_logits(self.num_relations, self.dim, scale))
        self.relation_imag_logits = nn.Parameter(0.01 * torch.randn(self.num_relations, self.dim))

    def log_parts(self, ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Entity ``(log a, log b, log (a - b))`` of given ids (all for ``None``), each ``(n, dim)``."""
        theta, omega = _rows(self.entity_logits, ids), _rows(self.entity_imag_logits, ids)
        return theta, theta + F.logsigmoid(omega), theta + F.logsigmoid(-omega)

    def log_relation_parts(self, r: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Relation ``(log alpha, log beta, log (alpha - beta))`` of given ids, each ``(n, dim)``."""
        rho, omega = _rows(self.relation_logits, r), _rows(self.relation_imag_logits, r)
        return rho, rho + F.logsigmoid(omega), rho + F.logsigmoid(-omega)

    def log_subject(self, h: torch.Tensor | None = None) -> torch.Tensor:
        a, b, c = self.log_parts(h)
        return torch.cat([c, b, b, a], dim=-1)

    def log_relation_factor(self, r: torch.Tensor | None = None) -> torch.Tensor:
        alpha, beta, gamma = self.log_relation_parts(r)
        return torch.cat([alpha, gamma, alpha, beta], dim=-1)

    def log_object(self, t: torch.Tensor | None = None) -> torch.Tensor:
        a, b, _ = self.log_parts(t)
        return torch.cat([a, a, b, b], dim=-1)


class EntityQueries(Circuit):
    """What RESCAL+ and TuckER+ share: one entity logit table ``entity_logits (E, dim)`` for both roles, and a log
    query vector for each entity slot (``tail_query``, ``head_query``) such that ``log phi = logsumexp(query +
    entity_logits[entity])``. The entity conditionals follow from the queries; a marginalised entity slot is the
    entity column sums."""

    dim: int
    entity_logits: nn.Parameter
    relation_logits: nn.Parameter

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def head_query(self, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def log_column_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log A, log B)``: the entity column sums ``(dim,)`` and the relation ones (the relation logits' shape
        less its first dimension)."""
        return torch.logsumexp(self.entity_logits, dim=0), torch.logsumexp(self.relation_logits, dim=0)

    def log_score(self, hrt: torch.Tensor) -> torch.Tensor:
        h, r, t = split_hrt(hrt)
        return torch.logsumexp(self.tail_query(h, r) + self.entity_logits[t], dim=-1)

    def log_tail(self, hrt: torch.Tensor) -> torch.Tensor:
        h, r, t = split_hrt(hrt)
        query = self.tail_query(h, r)
        norm = torch.logsumexp(query + self.log_column_sums()[0], dim=-1)
        return torch.logsumexp(query + self.entity_logits[t], dim=-1) - norm

    def log_head(self, hrt: torch.Tensor) -> torch.Tensor:
        h, r, t = split_hrt(hrt)
        query = self.head_query(r, t)
        norm = torch.logsumexp(query + self.log_column_sums()[0], dim=-1)
        return torch.logsumexp(query + self.entity_logits[h], dim=-1) - norm

    def log_tails(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        query = self.tail_query(h, r)
        norm = torch.logsumexp(query + self.log_column_sums()[0], dim=-1, keepdim=True)
        return log_matmul_exp(query, self.entity_logits) - norm

    def log_heads(self, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        query = self.head_query(r, t)
        norm = torch.logsumexp(query + self.log_column_sums()[0], dim=-1, keepdim=True)
        return log_matmul_exp(query, self.entity_logits) - norm


class RESCALPlus(EntityQueries):
    """RESCAL+: ``phi = sum_ij exp(theta[h, i] + rho[r, i, j] + theta[t, j])``, one entity logit table for both
    roles and a ``dim x dim`` logit matrix per relation, all unconstrained.

    Fixing two slots leaves a query vector for the third, kept in log space: ``q_t[j] = logsumexp_i(theta[h, i] +
    rho[r, i, j])`` for the tail, ``q_h[i] = logsumexp_j(rho[r, i, j] + theta[t, j])`` for the head. A marginalised
    entity slot becomes the entity column sums ``A``, the relation slot the relation column sums ``B[i, j]``; costs
    are ``O(num_entities * dim + num_relations * dim^2)`` for the sums and ``O(dim^2)`` per triple.

    Initialisation: every entity column, and every ``(i, j)`` entry across the relations, is the log of a
    ``Dirichlet(1 / init_scale)`` sample, so the initial column sums are all 1.
    """

    def __init__(self, num_entities: int, num_relations: int, dim: int, init_scale: float = 1e-3) -> None:
        super().__init__()
        scale = set_sizes(self, num_entities, num_relations, dim, init_scale)
        self.entity_logits = nn.Parameter(dirichlet_logits(self.num_entities, self.dim, scale))
        self.relation_logits = nn.Parameter(
            dirichlet_logits(self.num_relations, self.dim * self.dim, scale).reshape(-1, self.dim, self.dim))

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """``log q_t``: ``(B,), (B,) -> (B, dim)``, so that ``log phi = logsumexp(q_t + theta[t])``."""
        return torch.logsumexp(self.entity_logits[h][:, :, None] + self.relation_logits[r], dim=1)

    def head_query(self, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``log q_h``: ``(B,), (B,) -> (B, dim)``, so that ``log phi = logsumexp(q_h + theta[h])``."""
        return torch.logsumexp(self.relation_logits[r] + self.entity_logits[t][:, None, :], dim=2)

    def log_partition(self) -> torch.Tensor:
        a, b = self.log_column_sums()
        return torch.logsumexp((a[:, None] + b + a[None, :]).flatten(), dim=0)

    def log_relation(self, hrt: torch.Tensor) -> torch.Tensor:
        h, _, t = split_hrt(hrt)
        pair = self.entity_logits[h][:, :, None] + self.entity_logits[t][:, None, :]
        norm = torch.logsumexp((pair + self.log_column_sums()[1]).flatten(1), dim=-1)
        return self.log_score(hrt) - norm

    def log_marginal_head(self) -> torch.Tensor:
        """``log p(s)`` for every entity: ``(num_entities,)``; relation and object replaced by their column sums."""
        a, b = self.log_column_sums()
        rest = torch.logsumexp(b + a[None, :], dim=1)
        return torch.logsumexp(self.entity_logits + rest, dim=-1) - torch.logsumexp(a + rest, dim=0)

    def log_relation_given_head(self, h: torch.Tensor) -> torch.Tensor:
        """``log p(r | s = h)`` for every relation: ``(B,) -> (B, num_relations)``; the object marginalised out."""
        a, b = self.log_column_sums()
        per_relation = torch.logsumexp(self.relation_logits + a, dim=2)
        subject = self.entity_logits[h]
        norm = torch.logsumexp(subject + torch.logsumexp(b + a, dim=1), dim=-1, keepdim=True)
        return log_matmul_exp(subject, per_relation) - norm


def log_bilinear(x: torch.Tensor, y: torch.Tensor, core: torch.Tensor, equation: str) -> torch.Tensor:
    """``log einsum(equation, exp x, exp y, exp core)`` for log operands ``x (B, n), y (B, m)`` and a log core tensor.

    Each operand is shifted by its maximum (per row for ``x`` and ``y``, overall for the core) before the einsum
    and the shifts are added back after the log, so only terms far (~700 nats in float64, ~85 in float32) below the
    largest can underflow; a sum that underflows entirely is clamped to the smallest normal number.
    """
    mx, my = _row_max(x), _row_max(y)
    mc = _row_max(core.reshape(1, -1)).reshape(())
    out = torch.einsum(equation, (x - mx).exp(), (y - my).exp(), (core - mc).exp())
    return out.clamp_min(torch.finfo(out.dtype).tiny).log() + mx + my + mc


class TuckERPlus(EntityQueries):
    """TuckER+: ``phi = sum_ikj exp(tau[i, k, j] + theta[h, i] + rho[r, k] + theta[t, j])``: entity logits ``theta``
    (one table for both roles, width ``dim``), relation logits ``rho`` (width ``relation_dim``, default ``dim``) and
    a core tensor of logits ``tau`` of shape ``(dim, relation_dim, dim)``, all unconstrained.

    The query of a slot contracts the core with the other two slots (``log_bilinear``, a max-shifted einsum);
    marginalising a slot replaces it by its column sums, which makes ``log Z`` an exact ``logsumexp`` over the core.

    Initialisation: every column of ``theta`` and ``rho`` is the log of a ``Dirichlet(1 / init_scale)`` sample over
    the rows, and the whole core the log of one such sample over its entries, so ``Z`` starts at 1.
    """

    def __init__(self, num_entities: int, num_relations: int, dim: int, relation_dim: int | None = None,
                 init_scale: float = 1e-3) -> None:
        super().__init__()
        scale = set_sizes(self, num_entities, num_relations, dim, init_scale)
        self.relation_dim = checks.optional_positive_int("relation_dim", relation_dim, "dim") or self.dim
        self.entity_logits = nn.Parameter(dirichlet_logits(self.num_entities, self.dim, scale))
        self.relation_logits = nn.Parameter(dirichlet_logits(self.num_relations, self.relation_dim, scale))
        core = dirichlet_logits(self.dim * self.relation_dim * self.dim, 1, scale)
        self.core_logits = nn.Parameter(core.reshape(self.dim, self.relation_dim, self.dim))

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """``log q_t (B, dim)``: ``log phi = logsumexp(q_t + theta[t])``."""
        return log_bilinear(self.entity_logits[h], self.relation_logits[r], self.core_logits, "bi,bk,ikj->bj")

    def head_query(self, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``log q_h (B, dim)``: ``log phi = logsumexp(q_h + theta[h])``."""
        return log_bilinear(self.relation_logits[r], self.entity_logits[t], self.core_logits, "bk,bj,ikj->bi")

    def relation_query(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``log q_r (B, relation_dim)``: ``log phi = logsumexp(q_r + rho[r])``."""
        return log_bilinear(self.entity_logits[h], self.entity_logits[t], self.core_logits, "bi,bj,ikj->bk")

    def log_partition(self) -> torch.Tensor:
        a, b = self.log_column_sums()
        return torch.logsumexp((a[:, None, None] + b[None, :, None] + a + self.core_logits).flatten(), dim=0)

    def log_relation(self, hrt: torch.Tensor) -> torch.Tensor:
        h, r, t = split_hrt(hrt)
        query = self.relation_query(h, t)
        norm = torch.logsumexp(query + self.log_column_sums()[1], dim=-1)
        return torch.logsumexp(query + self.relation_logits[r], dim=-1) - norm

    def log_marginal_head(self) -> torch.Tensor:
        """``log p(s)`` for every entity: ``(num_entities,)``; relation and object replaced by their column sums."""
        a, b = self.log_column_sums()
        rest = torch.logsumexp((self.core_logits + b[:, None] + a).flatten(1), dim=1)
        return torch.logsumexp(self.entity_logits + rest, dim=-1) - torch.logsumexp(a + rest, dim=0)

    def log_relation_given_head(self, h: torch.Tensor) -> torch.Tensor:
        """``log p(r | s = h)`` for every relation: ``(B,) -> (B, num_relations)``; the object marginalised out."""
        a, b = self.log_column_sums()
        per_subject = torch.logsumexp(self.core_logits + a, dim=2)
        query = torch.logsumexp(self.entity_logits[h][:, :, None] + per_subject, dim=1)
        norm = torch.logsumexp(query + b, dim=-1, keepdim=True)
        return log_matmul_exp(query, self.relation_logits) - norm
