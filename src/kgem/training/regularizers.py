"""Regularizers take the batch's factors explicitly: ``loss = fit + regularizer(factors)``, in plain sight: no
hidden accumulation during lookups."""

from __future__ import annotations

import torch

from kgem.checks import non_negative
from kgem.registry import Registry

REGULARIZERS: Registry[type[Regularizer]] = Registry("regularizer")


class Regularizer:
    def __init__(self, weight: float = 0.0) -> None:
        self.weight = non_negative("weight", weight)  # a negative weight would reward large embeddings

    def __call__(self, factors: list[torch.Tensor]) -> torch.Tensor:
        start = torch.zeros((), device=factors[0].device)
        return self.weight * sum((self.penalty(f) for f in factors), start) / max(len(factors[0]), 1)

    def penalty(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@REGULARIZERS.register("lp")
class Lp(Regularizer):
    """``weight * sum_f ||f||_p^p / B`` over the batch's factors (p = 1, 2 or 3); complex entries by modulus."""

    def __init__(self, weight: float = 0.0, p: int = 2) -> None:
        super().__init__(weight)
        if p not in (1, 2, 3):
            raise ValueError(f"p must be 1, 2 or 3, got {p}")
        self.p = p

    def penalty(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs().pow(self.p).sum()


@REGULARIZERS.register("n3")
class N3(Lp):
    """Nuclear 3-norm (Lacroix et al. 2018): ``weight * sum_f sum |f_i|^3 / B``, complex entries by modulus."""

    def __init__(self, weight: float = 0.0) -> None:
        super().__init__(weight, p=3)
