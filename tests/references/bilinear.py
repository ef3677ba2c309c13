"""References for kgem.models.bilinear."""

from __future__ import annotations

from references import Recipes, References

REFERENCE: References = {
    "distmult": [({}, lambda h, r, t, _: sum(float(h[i] * r[i] * t[i]) for i in range(len(h))))],
    "complex": [({}, lambda h, r, t, _: sum((complex(h[i]) * complex(r[i]) * complex(t[i]).conjugate()).real
                                           for i in range(len(h))))],
}

RECIPES: Recipes = {
    "distmult": ({}, "1vsall", "cross_entropy", {}),
    "complex": ({}, "1vsall", "cross_entropy", {}),
}
