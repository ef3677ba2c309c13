"""FocusE (Pai and Costabello 2021): numeric values on edges modulate the scores that negative sampling trains on.

Each positive's score and its negatives' pass through a non-linearity ``σ`` and are then scaled by the edge's value
``v`` in [0, 1] (per relation, min-max normalised) and a structural weight ``β``:

    pos' = σ(pos) · (β + (1 - β)(1 - v)),    neg' = σ(neg) · (β + (1 - β) v)

so an edge of high value has its positive pushed up harder and its negatives pushed down harder than an edge of low
value, while ``β`` keeps part of the plain structural signal. ``β`` decays linearly from 1 over ``stop_epoch``
epochs, ``β = max(1 - epoch / stop_epoch, structural_wt)`` (``stop_epoch`` 0: ``structural_wt`` throughout), as
AmpliGraph's implementation does, whose parameter names these are (its defaults too: linear, 251, 0.001).

One deliberate difference: where every edge of a relation has the same value (nothing to focus on), AmpliGraph sets
them to 1, which scales that relation's positives by ``β``; here they are left unmodulated, so a graph whose
values are all equal trains exactly as the plain model (with the linear non-linearity).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kgem.errors import ConfigError

SOFTPLUS_SHIFT = math.log(9999.0)  # AmpliGraph's softplus: log(1 + 9999 e^x), nearly the identity above 0


def shifted_softplus(x: torch.Tensor) -> torch.Tensor:
    return F.softplus(x + SOFTPLUS_SHIFT)


NON_LINEARITIES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda x: x, "softplus": shifted_softplus, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


@dataclass
class FocusE:
    """The FocusE layer's settings (AmpliGraph's names) and the epoch it is in (``start_epoch``)."""

    non_linearity: str = "linear"
    stop_epoch: int = 251
    structural_wt: float = 0.001
    normalize: bool = True
    epoch: int = 1

    def __post_init__(self) -> None:
        if self.non_linearity not in NON_LINEARITIES:
            raise ConfigError(f"FocusE non_linearity must be one of {', '.join(NON_LINEARITIES)}, got "
                              f"{self.non_linearity!r}")
        if isinstance(self.stop_epoch, bool) or not isinstance(self.stop_epoch, int) or self.stop_epoch < 0:
            raise ConfigError(f"FocusE stop_epoch must be a whole number of epochs, 0 or more, got {self.stop_epoch!r}")
        if not 0 <= self.structural_wt <= 1:  # NaN fails too
            raise ConfigError(f"FocusE structural_wt must lie in [0, 1], got {self.structural_wt!r}")

    @property
    def structural(self) -> float:
        """``β`` in the current epoch (1-based)."""
        if self.stop_epoch == 0:
            return self.structural_wt
        return max(1 - self.epoch / self.stop_epoch, self.structural_wt)

    def values(self, hrt: torch.Tensor, weights: torch.Tensor, num_relations: int) -> torch.Tensor:
        """The edges' values in [0, 1]: min-max normalised per relation (``normalize``, or where a relation's
        values leave [0, 1]); NaN for the edges of a relation whose values are all equal (left unmodulated)."""
        weights = weights.to(torch.float32)
        r = hrt[:, 1]
        low = torch.full((num_relations,), math.inf).scatter_reduce(0, r, weights, "amin")
        high = torch.full((num_relations,), -math.inf).scatter_reduce(0, r, weights, "amax")
        rescale = (high > low) & (self.normalize | (low < 0) | (high > 1))
        span = (high - low).clamp_min(torch.finfo(torch.float32).tiny)
        scaled = torch.where(rescale[r], (weights - low[r]) / span[r], weights)
        return torch.where((high > low)[r], scaled, math.nan)

    def __call__(self, pos: torch.Tensor, neg: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The modulated scores of positives ``(B,)`` with values ``(B,)`` and their negatives ``(B, K)``; masked
        negatives (-inf) stay masked."""
        sigma, beta = NON_LINEARITIES[self.non_linearity], self.structural
        v = values.to(pos)
        plain = torch.isnan(v)
        pos_scale = torch.where(plain, 1.0, beta + (1 - beta) * (1 - v))
        neg_scale = torch.where(plain, 1.0, beta + (1 - beta) * v)
        modulated = sigma(neg) * neg_scale.unsqueeze(1)
        return sigma(pos) * pos_scale, torch.where(torch.isneginf(neg), neg, modulated)
