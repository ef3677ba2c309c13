"""The interface every generative circuit implements: an exact distribution ``p(s, r, o)`` over all triples of
``num_entities x num_relations x num_entities``, with its conditionals, all in log space.

Ids follow the library's vocabulary: ``hrt (B, 3)`` holds (subject h, relation r, object t). ``log_score`` is the
unnormalised log-density, ``log_partition`` its log-sum over every triple, and ``log_prob = log_score -
log_partition``. The conditionals normalise over one slot: ``log_tails(h, r)`` is ``log p(o | h, r)`` for every
object (a ``(B, E)`` table, for ranking), ``log_tail(hrt)`` the same at the given object without that table.
"""

from __future__ import annotations

import torch
from torch import nn


class Circuit(nn.Module):
    """Subclasses implement ``log_score``, ``log_partition`` and the conditionals; ``log_prob`` follows."""

    num_entities: int
    num_relations: int

    def log_score(self, hrt: torch.Tensor) -> torch.Tensor:
        """Unnormalised ``log phi(h, r, t)`` of given triples ``(B, 3) -> (B,)``."""
        raise NotImplementedError

    def log_partition(self) -> torch.Tensor:
        """``log Z``, the log of the sum of ``phi`` over every triple: a scalar."""
        raise NotImplementedError

    def log_prob(self, hrt: torch.Tensor) -> torch.Tensor:
        """``log p(h, r, t)``: ``(B, 3) -> (B,)``."""
        return self.log_score(hrt) - self.log_partition()

    def log_tail(self, hrt: torch.Tensor) -> torch.Tensor:
        """``log p(t | h, r)`` at the given tails: ``(B,)``."""
        raise NotImplementedError

    def log_head(self, hrt: torch.Tensor) -> torch.Tensor:
        """``log p(h | r, t)`` at the given heads: ``(B,)``."""
        raise NotImplementedError

    def log_relation(self, hrt: torch.Tensor) -> torch.Tensor:
        """``log p(r | h, t)`` at the given relations: ``(B,)``."""
        raise NotImplementedError

    def log_relations(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``log p(r | h, t)`` for every relation: ``(B,), (B,) -> (B, num_relations)``. This default asks
        ``log_relation`` about every (pair, relation), ``B * R`` triples; circuits with a closed form override it."""
        r = torch.arange(self.num_relations, device=h.device)
        grid = torch.stack([h.repeat_interleave(len(r)), r.repeat(len(h)), t.repeat_interleave(len(r))], 1)
        return self.log_relation(grid).view(len(h), len(r))

    def log_tails(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """``log p(o | h, r)`` for every entity ``o``: ``(B,), (B,) -> (B, num_entities)``."""
        raise NotImplementedError

    def log_heads(self, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``log p(s | r, t)`` for every entity ``s``: ``(B,), (B,) -> (B, num_entities)``."""
        raise NotImplementedError

    def log_marginal_head(self) -> torch.Tensor:
        """``log p(h)`` for every entity, relation and tail summed out: ``(num_entities,)``."""
        raise NotImplementedError

    def log_relation_given_head(self, h: torch.Tensor) -> torch.Tensor:
        """``log p(r | h)`` for every relation, the tail summed out: ``(B,) -> (B, num_relations)``."""
        raise NotImplementedError
