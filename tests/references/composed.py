"""References for kgem.models.composed (PyTorch-BigGraph's operator x comparator models)."""

from __future__ import annotations

import math

import torch

from references import Formula, Recipes, References


def _operator(name: str, h: list[float], r: list[float]) -> list[float]:
    d = len(h)
    if name == "none":
        return h
    if name == "diagonal":
        return [h[i] * r[i] for i in range(d)]
    if name == "translation":
        return [h[i] + r[i] for i in range(d)]
    if name == "complex_diagonal":
        half = d // 2
        product = [complex(h[i], h[half + i]) * complex(r[i], r[half + i]) for i in range(half)]
        return [z.real for z in product] + [z.imag for z in product]
    out = [sum(r[i * d + j] * h[j] for j in range(d)) for i in range(d)]  # linear, affine: the matrix row by row
    return [out[i] + r[d * d + i] for i in range(d)] if name == "affine" else out


def _comparator(name: str, q: list[float], t: list[float]) -> float:
    dot = sum(a * b for a, b in zip(q, t, strict=True))
    if name == "dot":
        return dot
    if name == "cos":
        return dot / max(math.sqrt(sum(a * a for a in q)), 1e-12) / max(math.sqrt(sum(b * b for b in t)), 1e-12)
    square = sum((a - b) ** 2 for a, b in zip(q, t, strict=True))
    return -square if name == "squared_l2" else -math.sqrt(square)


def _composed(operator: str, comparator: str) -> Formula:
    def formula(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, _: object) -> float:
        return _comparator(comparator, _operator(operator, h.tolist(), r.tolist()), t.tolist())
    return formula


PAIRS = [("none", "dot"), ("none", "squared_l2"), ("diagonal", "dot"), ("diagonal", "cos"), ("diagonal", "l2"),
         ("translation", "l2"), ("translation", "squared_l2"), ("translation", "dot"), ("translation", "cos"),
         ("linear", "dot"), ("linear", "squared_l2"), ("affine", "dot"), ("affine", "l2"),
         ("complex_diagonal", "dot"), ("complex_diagonal", "l2")]

REFERENCE: References = {
    "pbg": [({"operator": operator, "comparator": comparator}, _composed(operator, comparator))
            for operator, comparator in PAIRS],
}

RECIPES: Recipes = {
    "pbg": ({"operator": "complex_diagonal", "comparator": "dot"}, "1vsall", "cross_entropy", {},
            {"epochs": 5, "batch_size": 512}),
}
