"""PyTorch-BigGraph's models: a relation operator applied to the head, compared with the tail by a comparator.

``kgem train --model pbg --set model.args.operator=translation --set model.args.comparator=l2`` is PBG's TransE,
``complex_diagonal`` + ``dot`` its ComplEx, ``linear`` + ``dot`` RESCAL. Every combination takes the factor
protocol's fast paths for tails; heads too where the operator has an adjoint under the comparator (``dot`` with
every operator, ``l2`` and ``squared_l2`` with ``none`` and ``translation``), else heads are scored by broadcasting.
"""

from __future__ import annotations

import torch

from kgem.models.factor import FactorInteraction, Side
from kgem.models.interaction import INTERACTIONS
from kgem.ops.compare import Comparator, comparator
from kgem.ops.rows import unit_rows

OPERATORS = ("none", "diagonal", "translation", "linear", "affine", "complex_diagonal")
COMPARATORS = ("dot", "cos", "l2", "squared_l2")


@INTERACTIONS.register("pbg")
class Composed(FactorInteraction):
    """``compare(operator_r(h), t)``; relation rows hold the operator's parameters. The default is the setting of
    PyTorch-BigGraph's FB15k example (ComplEx)."""

    reference = "Lerer et al. 2019, PyTorch-BigGraph: a large-scale graph embedding system"

    def __init__(self, dim: int, operator: str = "complex_diagonal", comparator: str = "dot") -> None:
        super().__init__(dim)
        if operator not in OPERATORS:
            raise ValueError(f"operator must be one of {', '.join(OPERATORS)}, got {operator!r}")
        if comparator not in COMPARATORS:
            raise ValueError(f"comparator must be one of {', '.join(COMPARATORS)}, got {comparator!r}")
        self.operator, self.compared = operator, comparator
        distance = comparator in ("l2", "squared_l2")
        self.keys_are_rows = (operator == "none" and comparator != "cos") or (operator == "translation" and distance) \
            or (operator in ("diagonal", "linear", "complex_diagonal") and comparator == "dot")
        self.head_factors = self.keys_are_rows or (operator == "affine" and comparator == "dot") \
            or (operator == "translation" and comparator == "dot")

    def extra_repr(self) -> str:
        return f"operator={self.operator}, comparator={self.compared}"

    def entity_width(self) -> int:
        return self.width  # complex_diagonal: dim complex numbers, as [real parts, imaginary parts]

    def relation_width(self) -> int:
        d = self.dim
        return {"none": 1, "linear": d * d, "affine": d * d + d}.get(self.operator, self.width)

    @property
    def width(self) -> int:
        return 2 * self.dim if self.operator == "complex_diagonal" else self.dim

    def reset_relation(self, weight: torch.Tensor) -> None:
        """The identity map plus the table's small uniform start values (PyTorch-BigGraph starts at the identity
        exactly; the noise keeps ``h = t`` pairs from all scoring exactly 0 at the start)."""
        d = self.dim
        if self.operator in ("linear", "affine"):
            weight[:, : d * d] += torch.eye(d).flatten()
        elif self.operator in ("diagonal", "complex_diagonal"):
            weight[:, :d] += 1  # complex_diagonal: real parts [:d], so 1 + 0i

    def comparator(self, side: Side) -> Comparator:
        return comparator("dot" if self.compared == "cos" else self.compared)

    def operate(self, e: torch.Tensor, r: torch.Tensor, *, adjoint: bool = False) -> torch.Tensor:
        """The operator (its adjoint, ``adjoint``, for dot products from the head side) applied to ``e``."""
        d = self.dim
        if self.operator == "none":
            return e.expand(*torch.broadcast_shapes(e.shape[:-1], r.shape[:-1]), e.shape[-1])
        if self.operator == "diagonal":
            return e * r
        if self.operator == "translation":
            return e - r if adjoint else e + r
        if self.operator == "complex_diagonal":
            (a, b), (c, s) = e.split(d, -1), r.split(d, -1)
            s = -s if adjoint else s
            return torch.cat([a * c - b * s, a * s + b * c], -1)
        matrix = r[..., : d * d].unflatten(-1, (d, d))
        if adjoint:
            matrix = matrix.transpose(-1, -2)
        out = torch.einsum("...ij,...j->...i", matrix, e)
        return out + r[..., d * d :] if self.operator == "affine" and not adjoint else out

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        q = self.operate(h, r)
        return unit_rows(q) if self.compared == "cos" else q

    def head_query(self, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.operator == "translation" and self.compared == "dot":
            return t.expand(*torch.broadcast_shapes(t.shape[:-1], r.shape[:-1]), t.shape[-1])
        return self.operate(t, r, adjoint=True)

    def reverse(self, r: torch.Tensor) -> torch.Tensor:
        if self.operator == "translation":
            return -r
        if self.operator == "linear":
            return r.unflatten(-1, (self.dim, self.dim)).transpose(-1, -2).flatten(-2)
        if self.operator == "complex_diagonal":
            return torch.cat([r[..., : self.dim], -r[..., self.dim :]], -1)
        return r  # none, diagonal

    def keys(self, e: torch.Tensor, side: Side) -> torch.Tensor:
        return unit_rows(e) if self.compared == "cos" else e

    def query_bias(self, x: torch.Tensor, r: torch.Tensor, side: Side) -> torch.Tensor | None:
        """From the head side a dot product leaves the translation's (affine map's) ``r . t`` (``b . t``)."""
        if side == "tail" or self.compared != "dot" or self.operator not in ("translation", "affine"):
            return None
        return (x * r[..., -self.dim :]).sum(-1)
