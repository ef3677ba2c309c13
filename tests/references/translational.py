"""References for kgem.models.translational."""

from __future__ import annotations

import torch

from references import Formula, Recipes, References


def _transe(p: float) -> Formula:
    def score(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, _: object) -> float:
        h, t = h / h.norm(), t / t.norm()  # TransE's entity rows are unit vectors
        return -sum(abs(float(h[i] + r[i] - t[i])) ** p for i in range(len(h))) ** (1 / p)
    return score


REFERENCE: References = {
    "transe": [({"p": 2.0}, _transe(2.0)), ({"p": 1.0}, _transe(1.0))],
    "rotate": [({}, lambda h, r, t, _: -sum(abs(complex(h[i]) * complex(r[i]) - complex(t[i]))
                                            for i in range(len(h))))],
}

RECIPES: Recipes = {
    "transe": ({"p": 1.0}, "slcwa", "margin_ranking", {"margin": 1.0}),
    "rotate": ({}, "slcwa", "self_adversarial", {"margin": 6.0}),
}
