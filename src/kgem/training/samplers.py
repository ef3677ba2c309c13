"""Negative sampling: corrupt the head or the tail of each positive with random entities."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kgem.data.known import KnownTriples
from kgem.data.stats import corruption_probabilities


@dataclass
class Negatives:
    """``K`` corruptions per positive. Rows with ``corrupt_head[i]`` replace the head, the others the tail;
    ``ids`` is ``(B, K)``, or ``(1, K)`` when shared by every row of the batch. ``known (B, K)`` marks negatives
    that are true triples (shared ones, or any left after resampling gave up); their scores are masked out of the
    loss. None when not filtered."""

    corrupt_head: torch.Tensor
    ids: torch.Tensor
    known: torch.Tensor | None = None

    def rows(self, part: slice) -> Negatives:
        """The negatives of the rows ``part`` of the batch (a shared ``(1, K)`` set stays whole)."""
        ids = self.ids if self.ids.shape[0] == 1 and len(self.corrupt_head) != 1 else self.ids[part]
        known = None if self.known is None else self.known[part]
        return Negatives(self.corrupt_head[part], ids, known)

    def to(self, device: torch.device) -> Negatives:
        """The same negatives on ``device`` (no copy where they are already there)."""
        known = None if self.known is None else self.known.to(device, non_blocking=True)
        return Negatives(self.corrupt_head.to(device, non_blocking=True), self.ids.to(device, non_blocking=True),
                         known)


class NegativeSampler:
    """Uniform: each positive corrupts its head or its tail with probability 1/2. ``bernoulli``: per relation,
    P(corrupt head) = tph / (tph + hpt) (Wang et al. 2014). ``tails_only``: always the tail (used with reciprocal
    relations, where corrupting the head of (h, r, t) is corrupting the tail of (t, r⁻¹, h)).

    ``filtered`` resamples negatives that are training triples, up to ``max_rounds`` times; any still true after
    that (a query with (nearly) every entity as a true answer) is marked and masked out of the loss. ``shared``
    draws one set of K negative entities for the whole batch (DGL-KE / PyTorch-BigGraph style: far cheaper
    scoring, different semantics, opt-in); filtered, a shared entity that makes a training triple with a row is
    masked out of that row's loss (resampling it would change every row's set).

    ``candidates`` (global entity ids, or None for all) restricts the corrupting entities: sharded training sets it
    to the entities of the bucket it trains (``kgem.training.sharded``); filtering still checks the whole graph.
    """

    def __init__(self, num_negatives: int, *, bernoulli: bool = False, filtered: bool = False,
                 shared: bool = False, max_rounds: int = 10) -> None:
        self.num_negatives, self.bernoulli, self.filtered = num_negatives, bernoulli, filtered
        self.shared, self.max_rounds = shared, max_rounds
        self.num_entities = 0
        self.head_probability: torch.Tensor | None = None
        self.known: KnownTriples | None = None
        self.candidates: torch.Tensor | None = None

    def prepare(self, hrt: torch.Tensor, num_entities: int, num_relations: int, *, tails_only: bool = False) -> None:
        """Fit to the training triples: entity count, per-relation head probabilities, filter index."""
        self.num_entities = num_entities
        if tails_only:
            self.head_probability = torch.zeros(num_relations)
        elif self.bernoulli:
            self.head_probability = torch.from_numpy(corruption_probabilities(hrt, num_relations)).float()
        self.known = KnownTriples(hrt, num_entities, num_relations) if self.filtered else None

    def sample(self, hrt: torch.Tensor, generator: torch.Generator) -> Negatives:
        if not self.num_entities:
            raise RuntimeError("call prepare() before sample()")
        batch = len(hrt)
        p = 0.5 if self.head_probability is None else self.head_probability[hrt[:, 1]]
        corrupt_head = torch.rand(batch, generator=generator) < p
        rows = 1 if self.shared else batch
        ids = self.draw_entities((rows, self.num_negatives), generator)
        if self.known is not None and self.shared:  # one set for all rows: mask, per row, those true for it
            return Negatives(corrupt_head, ids, self.known.contains(corrupted(hrt, corrupt_head, ids).view(-1, 3))
                             .view(batch, self.num_negatives))
        if self.known is not None:
            return self._resample_known(hrt, corrupt_head, ids, generator)
        return Negatives(corrupt_head, ids)

    def draw_entities(self, shape: tuple[int, ...] | torch.Size, generator: torch.Generator) -> torch.Tensor:
        """Uniform random entity ids of ``shape``: any entity, or one of ``candidates``."""
        if self.candidates is None:
            return torch.randint(self.num_entities, tuple(shape), generator=generator)
        return self.candidates[torch.randint(len(self.candidates), tuple(shape), generator=generator)]

    def _resample_known(self, hrt: torch.Tensor, corrupt_head: torch.Tensor, ids: torch.Tensor,
                        generator: torch.Generator) -> Negatives:
        assert self.known is not None
        for _ in range(self.max_rounds + 1):
            bad = self.known.contains(corrupted(hrt, corrupt_head, ids).view(-1, 3)).view(ids.shape)
            if not bad.any():
                break
            ids = torch.where(bad, self.draw_entities(ids.shape, generator), ids)
        return Negatives(corrupt_head, ids, bad)


def corrupted(hrt: torch.Tensor, corrupt_head: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The negative triples ``(B, K, 3)`` (for filtering and tests; scoring never builds them)."""
    out = hrt.unsqueeze(1).expand(-1, ids.shape[1], -1).clone()
    ids = ids.expand(len(hrt), -1)
    out[:, :, 0] = torch.where(corrupt_head.unsqueeze(1), ids, out[:, :, 0])
    out[:, :, 2] = torch.where(corrupt_head.unsqueeze(1), out[:, :, 2], ids)
    return out
