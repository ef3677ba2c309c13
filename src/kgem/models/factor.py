"""The factor protocol: interactions whose score is a comparison of a query with a key.

Most scoring functions factorise (PyTorch-BigGraph's operator x comparator; the queries and keys of kbc):

    score(h, r, t) = compare(tail_query(h, r), keys(t, "tail")) + query_bias(h, r, "tail") + key_bias(t, "tail")
                   = compare(head_query(r, t), keys(h, "head")) + query_bias(t, r, "head") + key_bias(h, "head")

with ``compare`` one of ``kgem.ops.compare``'s comparators (dot, L2, squared L2, Lp, complex moduli). DistMult's
query is ``h * r``, TransE's ``h + r``, ComplEx's ``real_view(h * r)``, CP's ``h_head * r`` against the tail-role
half of the candidate, ConvE's the network's features against ``t``'s embedding plus its bias. Written so, every
scoring mode is one product of a ``(B, w)`` query matrix with key rows, derived here once for every such model:

- all candidates (``score_t``, ``score_h``): a matmul, the expanded square or ``cdist``;
- sampled candidates (``score_t_sampled``, ``score_h_sampled``): a sampled dense-dense product, no ``(B, K, d)``
  gather (``kgem.ops.sampled``);
- negative sampling: where the keys are the entity rows themselves (``keys_are_rows``) and the relation can be read
  backwards (``reverse``: ``head_query(r, t) = tail_query(t, reverse(r))``), head- and tail-corrupting rows of a
  batch stack their queries and make *one* such call, positives included, so the candidate table is consumed once
  per step (``kgem.training.negatives``).

``forward`` keeps each paper's formula; the test harness proves every mode equal to it. A model whose head side does
not factorise (ConvE's network sees ``h``) sets ``head_factors = False`` and scores heads by the broadcast path; one
that factorises only for some arguments (TorusE's ``el2`` distance) overrides ``factorised``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from kgem.models.interaction import Interaction
from kgem.ops.compare import Comparator, Kind, comparator, complex_view, real_view

Side = Literal["head", "tail"]


def conj_rows(r: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """``conj(r)`` in the complex rows where ``flip (B, 1)`` is True, ``r`` in the others: one real product, where
    a ``where`` over a conjugate costs four passes over the rows with its backward."""
    imaginary = 1 - 2 * flip.to(r.real.dtype)
    return torch.view_as_complex(torch.view_as_real(r) * torch.stack([torch.ones_like(imaginary), imaginary], -1))


class FactorInteraction(Interaction):
    """Subclasses define ``tail_query`` (and ``reverse`` or ``head_query``), set ``comparison`` and, where the keys
    are not the entity rows, override ``keys``; biases default to none."""

    comparison: ClassVar[Kind] = "dot"
    p: float = 2.0  # the order of an ``lp`` comparison
    head_factors: bool = True  # False: head queries do not factorise; heads are scored by broadcasting
    keys_are_rows: bool = False  # keys(e, side) is e on both sides (its real view if complex), no bias

    @property
    def factorised(self) -> bool:
        """Whether this instance's score factorises (TorusE: for one of its distances only)."""
        return True

    def comparator(self, side: Side) -> Comparator:
        """The comparison of ``side``'s queries with its keys (MuRE compares its head queries by a dot product)."""
        return comparator(self.comparison, self.p)

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reverse(self, r: torch.Tensor) -> torch.Tensor:
        """The relation read backwards, ``head_query(r, t) = tail_query(t, reverse(r))``, where there is one."""
        raise NotImplementedError

    def reverse_rows(self, r: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """``reverse(r)`` in the rows where ``flip (B, 1)`` is True, ``r`` in the others."""
        return torch.where(flip, self.reverse(r), r)

    def head_query(self, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.tail_query(t, self.reverse(r))

    def keys(self, e: torch.Tensor, side: Side) -> torch.Tensor:
        """Entity rows as the keys ``side``'s queries are compared with (default: the rows, complex ones as their
        real view)."""
        return real_view(e) if e.is_complex() else e

    def rows_of_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """The inverse of ``keys`` where ``keys_are_rows``."""
        return complex_view(keys) if self.entity_kind == "complex" else keys

    def query_bias(self, x: torch.Tensor, r: torch.Tensor, side: Side) -> torch.Tensor | None:
        """A term per query (``x`` is ``h`` for tail queries, ``t`` for head queries), or None."""
        return None

    def key_bias(self, e: torch.Tensor, side: Side) -> torch.Tensor | None:
        """A term per key, or None."""
        return None

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The factorised score by broadcasting (models whose paper gives another formula override this)."""
        return self.factored_pairs(h, r, t)

    def factored_pairs(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The tail-side factorisation by broadcasting: what a test compares with ``forward``."""
        score = self.comparator("tail").pairs(self.tail_query(h, r), self.keys(t, "tail"))
        return biased(score, self.query_bias(h, r, "tail"), self.key_bias(t, "tail"))

    def factored_head_pairs(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        score = self.comparator("head").pairs(self.head_query(r, t), self.keys(h, "head"))
        return biased(score, self.query_bias(t, r, "head"), self.key_bias(h, "head"))

    def score_t(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not self.factorised:
            return super().score_t(h, r, t)
        scores = self.comparator("tail").all(self.tail_query(h, r), self.keys(t, "tail"))
        return biased(scores, column(self.query_bias(h, r, "tail")), self.key_bias(t, "tail"))

    def score_h(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not (self.head_factors and self.factorised):
            return super().score_h(h, r, t)
        scores = self.comparator("head").all(self.head_query(r, t), self.keys(h, "head"))
        return biased(scores, column(self.query_bias(t, r, "head")), self.key_bias(h, "head"))

    def score_t_sampled(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if not self.factorised:
            return super().score_t_sampled(h, r, t, ids)
        scores = self.comparator("tail").sampled(self.tail_query(h, r), self.keys(t, "tail"), ids)
        return biased(scores, column(self.query_bias(h, r, "tail")), gathered(self.key_bias(t, "tail"), ids))

    def score_h_sampled(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if not (self.head_factors and self.factorised):
            return super().score_h_sampled(h, r, t, ids)
        scores = self.comparator("head").sampled(self.head_query(r, t), self.keys(h, "head"), ids)
        return biased(scores, column(self.query_bias(t, r, "head")), gathered(self.key_bias(h, "head"), ids))


def biased(scores: torch.Tensor, *terms: torch.Tensor | None) -> torch.Tensor:
    """``scores`` plus the terms that are not None (broadcasting)."""
    for term in terms:
        if term is not None:
            scores = scores + term
    return scores


def column(bias: torch.Tensor | None) -> torch.Tensor | None:
    """A per-query bias ``(B,)`` as ``(B, 1)``, to add to ``(B, C)`` scores."""
    return None if bias is None else bias.unsqueeze(-1)


def gathered(bias: torch.Tensor | None, ids: torch.Tensor) -> torch.Tensor | None:
    """A per-key bias ``(N,)`` at the sampled ``ids (B, K)``."""
    return None if bias is None else bias[ids]
