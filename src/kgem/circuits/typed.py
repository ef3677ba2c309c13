"""Domain-constrained squared circuits: a CP2 or ComplEx2 whose density is zero on every triple that breaks the
relation's domain (allowed heads) or range (allowed tails), and normalised over the allowed triples only.

``TypedSquared`` wraps an existing ``SquaredCircuit`` (so a distilled or trained CP2/ComplEx2 can be typed without
copying its tables; ``typed_cp2`` and ``typed_complex2`` build a fresh one) and a ``DomainConstraints``. With the
indicator ``c(h, r, t) = allowed_heads[r, h] * allowed_tails[r, t]``, ``eps = 1 / N`` where ``N = sum_r |H_r| |T_r|``
counts the allowed triples, and ``Z = sum c phi^2``,

    p(h, r, t) = c(h, r, t) (phi^2 + eps) / (Z + 1):

the mixture of ``c phi^2 / Z`` with the uniform distribution over the allowed triples only (not over all triples), so
a breaking triple gets exactly 0 (``log_score`` is ``-inf``), every allowed triple a positive probability, and the
``N`` values of ``eps`` add exactly the 1 of the normaliser.

Closed forms. Relations with the same (domain, range) masks form a *domain* ``d``; entities that are allowed in the
same domains form a *class* (with typed data a class is an entity type, or several types used alike). The Gram of a
slot restricted to a domain is the sum of its classes' Grams, so ``grams()`` costs one pass over each table
(``O((E + R) K^2)``), plus ``O(D A K^2)`` for ``D`` domains and ``A`` classes, and

    Z = sum_d sum(H_d * G_S(d)),   H_d = head_form(G_W(d), G_O(d)):

the untyped formula per domain, with every Gram restricted to the domain's heads, relations and tails. Conditionals
normalise within the allowed slot: ``p(t | h, r)`` over ``T_r`` with the restricted object Gram and ``|T_r| eps``,
``p(h | r, t)`` likewise, ``p(r | h, t)`` over the relations allowing both ``h`` and ``t`` (from the ``(B, R)`` score
table: the allowed set depends on the pair). Disallowed candidates get ``-inf``, so rankings are type-consistent.

Zero-probability contexts: ``p(t | h, r)`` for a head that ``r`` does not allow uses the same formula (the range
constraint alone); a context with no allowed candidate at all (an empty range, or no relation between ``h`` and
``t``, or a head in no domain for ``p(r | h)``) gives a row of ``-inf``. The sampler never reaches such contexts.

Class Grams are one small matmul per class: with constraints derived from a graph (``derive_types``) the number of
classes can approach the number of entities, and ``grams()`` then loops that often.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from kgem.circuits.base import Circuit
from kgem.circuits.squared import CP2, ComplEx2, SquaredCircuit, SquaredGrams, check_triples, quadratic
from kgem.data.types import DomainConstraints


class TypedGrams(NamedTuple):
    """Per-domain restricted Grams ``(D, K, K)``: subject, relation, object, and ``head`` (the head form ``H_d``)."""

    subject: torch.Tensor
    relation: torch.Tensor
    object: torch.Tensor
    head: torch.Tensor


def groups(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(group id of each row (N,), distinct rows (G, ...))``: rows that are equal share a group."""
    distinct, inverse = torch.unique(rows, dim=0, return_inverse=True)
    return inverse, distinct


def segment_grams(keys: torch.Tensor, order: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """The Gram of each group ``(G, K, K)``: rows ``keys[order]`` split into consecutive groups of ``sizes``."""
    return torch.stack([x.T @ x for x in keys[order].split(sizes)])


def masked_log(value: torch.Tensor, norm: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """``log(value / norm)`` where allowed, ``-inf`` elsewhere; the norm is floored so no branch is NaN (a NaN in
    the unselected branch of ``where`` would still poison gradients)."""
    tiny = torch.finfo(value.dtype).tiny
    out = torch.log(value.clamp(min=tiny)) - torch.log(norm.clamp(min=tiny))
    return torch.where(allowed, out, torch.full_like(out, -torch.inf))


class Partition(NamedTuple):
    """A grouping of ``N`` items (entities or relations) into ``G`` groups, for per-group Grams."""

    order: torch.Tensor  # (N,) item ids sorted by group
    sizes: list[int]  # (G,) group sizes, in group order


def partition(group_of: torch.Tensor, count: int) -> Partition:
    order = torch.argsort(group_of, stable=True)
    return Partition(order, torch.bincount(group_of, minlength=count).tolist())


class TypedSquared(Circuit):
    """A ``SquaredCircuit`` restricted to the triples a ``DomainConstraints`` allows (see the module docstring).

    ``base`` keeps its parameters (they are this module's); the masks and the domain and class structure are
    buffers, so ``.to(device)`` moves them along. Only the masks are saved in the state dict: the structure is
    derived from them again when the circuit is rebuilt."""

    allowed_heads: torch.Tensor
    allowed_tails: torch.Tensor
    relation_domain: torch.Tensor
    head_members: torch.Tensor
    tail_members: torch.Tensor
    domain_triples: torch.Tensor

    def __init__(self, base: SquaredCircuit, constraints: DomainConstraints) -> None:
        super().__init__()
        if not isinstance(base, SquaredCircuit):
            raise TypeError(f"base must be a kgem SquaredCircuit (CP2, ComplEx2), got {type(base).__name__}")
        if not isinstance(constraints, DomainConstraints):
            raise TypeError(f"constraints must be a kgem DomainConstraints, got {type(constraints).__name__}")
        shape = (base.num_relations, base.num_entities)
        if tuple(constraints.allowed_heads.shape) != shape:
            raise ValueError(f"constraints cover {constraints.num_relations} relations and "
                             f"{constraints.num_entities} entities but the circuit has {shape[0]} and {shape[1]}")
        heads, tails = constraints.allowed_heads.cpu(), constraints.allowed_tails.cpu()
        self.num_allowed = int((heads.sum(1) * tails.sum(1)).sum())
        if self.num_allowed == 0:
            raise ValueError("the constraints allow no triple at all (every relation has an empty domain or range)")
        self.base = base
        self.num_entities, self.num_relations = base.num_entities, base.num_relations
        device = base.entities.device
        self.register_buffer("allowed_heads", heads.to(device))
        self.register_buffer("allowed_tails", tails.to(device))
        self.build_structure(heads, tails, device)

    def build_structure(self, heads: torch.Tensor, tails: torch.Tensor, device: torch.device) -> None:
        """Domains (relations with equal masks) and, per slot, entity classes (entities in the same domains)."""
        relation_domain, masks = groups(torch.cat([heads, tails], 1))
        self.num_domains = len(masks)
        domain_heads, domain_tails = masks[:, : self.num_entities], masks[:, self.num_entities :]
        head_class, head_patterns = groups(domain_heads.T)
        tail_class, tail_patterns = groups(domain_tails.T)
        self.relations_by_domain = partition(relation_domain, self.num_domains)
        self.heads_by_class = partition(head_class, len(head_patterns))
        self.tails_by_class = partition(tail_class, len(tail_patterns))
        relations_per_domain = torch.tensor(self.relations_by_domain.sizes)
        self.register_buffer("relation_domain", relation_domain.to(device), persistent=False)
        # (D, A_h): class a's heads allowed in domain d
        self.register_buffer("head_members", head_patterns.T.to(device), persistent=False)
        self.register_buffer("tail_members", tail_patterns.T.to(device), persistent=False)
        # (D,): allowed (r, t) pairs per head of the domain, the uniform component's share of p(h) in units of eps
        self.register_buffer("domain_triples", (relations_per_domain * domain_tails.sum(1)).to(device),
                             persistent=False)

    def extra_repr(self) -> str:
        return f"domains={self.num_domains}, allowed_triples={self.num_allowed}"

    @property
    def dim(self) -> int:
        """The base circuit's ``dim`` (the sampler sizes its batches by it)."""
        return self.base.dim

    @property
    def epsilon(self) -> float:
        """The uniform component's mass per allowed triple, ``1 / N``."""
        return 1.0 / self.num_allowed

    # --- Grams and the partition function -----------------------------------------------------------------------------
    def grams(self) -> TypedGrams:
        """Each slot's Gram restricted to each domain, and the domains' head forms; compute once and share."""
        b = self.base
        subject = self.domain_grams(b.subject_keys(), self.heads_by_class, self.head_members)
        obj = self.domain_grams(b.object_keys(), self.tails_by_class, self.tail_members)
        order, sizes = self.relations_by_domain
        relation = segment_grams(b.relation_keys(), order.to(self.relation_domain.device), sizes)
        # head_form marginalises relation and object; the subject Gram is no input, so both entity slots carry the
        # restricted object Gram (CP2 reads ``object``, ComplEx2's shared-table form reads ``subject``)
        head = torch.stack([b.head_form(SquaredGrams(obj[d], relation[d], obj[d])) for d in range(self.num_domains)])
        return TypedGrams(subject, relation, obj, head)

    def domain_grams(self, keys: torch.Tensor, classes: Partition, members: torch.Tensor) -> torch.Tensor:
        """``(D, K, K)``: per domain, the sum of the Grams of the classes it allows in this slot."""
        per_class = segment_grams(keys, classes.order.to(keys.device), classes.sizes)
        return torch.einsum("da,akl->dkl", members.to(per_class.dtype), per_class)

    def squared_partition(self, grams: TypedGrams | None = None) -> torch.Tensor:
        """``Z = sum c phi^2`` over every triple, without the uniform component: a scalar."""
        g = self.grams() if grams is None else grams
        return (g.head * g.subject).sum().clamp(min=0)

    def log_partition(self, grams: TypedGrams | None = None) -> torch.Tensor:
        """``log(Z + 1)``: the normaliser of the mixture, ``sum c (phi^2 + eps)``."""
        return torch.log1p(self.squared_partition(grams))

    # --- joint --------------------------------------------------------------------------------------------------------
    def allows(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.allowed_heads[r, h] & self.allowed_tails[r, t]

    def log_score(self, hrt: torch.Tensor) -> torch.Tensor:
        """``log(c (phi^2 + eps))``: ``-inf`` exactly on the triples the constraints forbid."""
        h, r, t = check_triples(hrt).unbind(-1)
        value = self.base.phi(hrt).square() + self.epsilon
        return torch.where(self.allows(h, r, t), torch.log(value), torch.full_like(value, -torch.inf))

    def log_prob(self, hrt: torch.Tensor, grams: TypedGrams | None = None) -> torch.Tensor:
        return self.log_score(hrt) - self.log_partition(grams)

    # --- entity conditionals ------------------------------------------------------------------------------------------
    def entity_norm(self, q: torch.Tensor, r: torch.Tensor, domain_grams: torch.Tensor,
                    counts: torch.Tensor) -> torch.Tensor:
        """``q^T G_d(r) q + |slot_r| eps`` per query ``(B,)``: the quadratic form with each relation's domain Gram,
        one batched matmul per domain present."""
        domain = self.relation_domain[r]
        quad = torch.zeros(q.shape[:-1], dtype=q.dtype, device=q.device)
        for d in torch.unique(domain).tolist():
            rows = domain == d
            quad = quad.masked_scatter(rows, quadratic(q[rows], domain_grams[d]))
        return quad + counts.to(quad.dtype) * self.epsilon  # an int tensor times a float would be float32

    def tail_context(self, h: torch.Tensor, r: torch.Tensor, g: TypedGrams) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.base
        q = b.tail_query(b.subject_keys()[h], b.relation_keys()[r])
        return q, self.entity_norm(q, r, g.object, self.allowed_tails[r].sum(-1))

    def head_context(self, r: torch.Tensor, t: torch.Tensor, g: TypedGrams) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.base
        q = b.head_query(b.relation_keys()[r], b.object_keys()[t])
        return q, self.entity_norm(q, r, g.subject, self.allowed_heads[r].sum(-1))

    def log_tail(self, hrt: torch.Tensor, grams: TypedGrams | None = None) -> torch.Tensor:
        h, r, t = check_triples(hrt).unbind(-1)
        q, norm = self.tail_context(h, r, self.grams() if grams is None else grams)
        phi = (q * self.base.object_keys()[t]).sum(-1)
        return masked_log(phi.square() + self.epsilon, norm, self.allowed_tails[r, t])

    def log_head(self, hrt: torch.Tensor, grams: TypedGrams | None = None) -> torch.Tensor:
        h, r, t = check_triples(hrt).unbind(-1)
        q, norm = self.head_context(r, t, self.grams() if grams is None else grams)
        phi = (q * self.base.subject_keys()[h]).sum(-1)
        return masked_log(phi.square() + self.epsilon, norm, self.allowed_heads[r, h])

    def log_tails(self, h: torch.Tensor, r: torch.Tensor, grams: TypedGrams | None = None) -> torch.Tensor:
        q, norm = self.tail_context(h, r, self.grams() if grams is None else grams)
        phi = q @ self.base.object_keys().T
        return masked_log(phi.square() + self.epsilon, norm.unsqueeze(-1), self.allowed_tails[r])

    def log_heads(self, r: torch.Tensor, t: torch.Tensor, grams: TypedGrams | None = None) -> torch.Tensor:
        q, norm = self.head_context(r, t, self.grams() if grams is None else grams)
        phi = q @ self.base.subject_keys().T
        return masked_log(phi.square() + self.epsilon, norm.unsqueeze(-1), self.allowed_heads[r])

    # --- relation conditionals ----------------------------------------------------------------------------------------
    def log_relations(self, h: torch.Tensor, t: torch.Tensor, grams: TypedGrams | None = None) -> torch.Tensor:
        """``log p(r | h, t)`` for every relation ``(B, R)``, over the relations allowing both ``h`` and ``t``. It
        needs no Gram (the candidates are the R relations themselves): ``grams`` is accepted, as objectives share
        them with every conditional, and not used."""
        b = self.base
        q = b.relation_query(b.subject_keys()[h], b.object_keys()[t])
        value = (q @ b.relation_keys().T).square() + self.epsilon
        allowed = self.allowed_heads[:, h].T & self.allowed_tails[:, t].T
        norm = torch.where(allowed, value, torch.zeros_like(value)).sum(-1, keepdim=True)
        return masked_log(value, norm, allowed)

    def log_relation(self, hrt: torch.Tensor, grams: TypedGrams | None = None) -> torch.Tensor:
        h, r, t = check_triples(hrt).unbind(-1)
        return self.log_relations(h, t).gather(1, r.unsqueeze(1)).squeeze(1)

    # --- marginals for ancestral sampling -----------------------------------------------------------------------------
    def log_marginal_head(self, grams: TypedGrams | None = None) -> torch.Tensor:
        """``log p(h)`` for every entity ``(E,)``: ``sum_d 1[h in H_d] (s_h^T H_d s_h + |R_d| |T_d| eps)``, one
        quadratic form per head class (whose form is the sum of its domains' ``H_d``)."""
        g = self.grams() if grams is None else grams
        members = self.head_members.to(g.head.dtype)
        forms = torch.einsum("da,dkl->akl", members, g.head)
        uniform = (members * self.domain_triples.unsqueeze(1)).sum(0) * self.epsilon  # (A,)
        order, sizes = self.heads_by_class
        order = order.to(g.head.device)
        keys = self.base.subject_keys()[order].split(sizes)
        mass = torch.cat([quadratic(k, forms[a]) + uniform[a] for a, k in enumerate(keys)])
        live = (members * (self.domain_triples > 0).unsqueeze(1)).sum(0) > 0  # (A,): in a domain with a triple
        allowed = torch.cat([live[a].expand(len(k)) for a, k in enumerate(keys)])
        log_p = masked_log(mass, 1 + self.squared_partition(g), allowed)
        return torch.empty_like(log_p).scatter(0, order, log_p)

    def log_relation_given_head(self, h: torch.Tensor, grams: TypedGrams | None = None) -> torch.Tensor:
        """``log p(r | h)`` for every relation ``(B, R)``: ``q^T G_O(r) q + |T_r| eps`` over the relations whose
        domain holds ``h`` (and whose range is not empty), normalised by their sum; ``O(B R K^2)``."""
        g = self.grams() if grams is None else grams
        b = self.base
        q = b.tail_query(b.subject_keys()[h].unsqueeze(1), b.relation_keys().unsqueeze(0))  # (B, R, K)
        r = torch.arange(self.num_relations, device=q.device).expand(len(h), -1)
        counts = self.allowed_tails.sum(-1)
        mass = self.entity_norm(q, r, g.object, counts)
        allowed = self.allowed_heads[:, h].T & (counts > 0)
        norm = torch.where(allowed, mass, torch.zeros_like(mass)).sum(-1, keepdim=True)
        return masked_log(mass, norm, allowed)


def typed_cp2(constraints: DomainConstraints, dim: int, init_sigma: float = 1e-3) -> TypedSquared:
    """A fresh CP2 sized by ``constraints``, restricted to them."""
    return TypedSquared(CP2(constraints.num_entities, constraints.num_relations, dim, init_sigma), constraints)


def typed_complex2(constraints: DomainConstraints, dim: int, init_sigma: float = 1e-3) -> TypedSquared:
    """A fresh ComplEx2 sized by ``constraints``, restricted to them."""
    return TypedSquared(ComplEx2(constraints.num_entities, constraints.num_relations, dim, init_sigma), constraints)
