"""AutoSF: a searched block-structured bilinear model, so every scoring mode is one matmul of block queries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from kgem.checks import positive_int
from kgem.models.factor import FactorInteraction
from kgem.models.interaction import INTERACTIONS

Block = tuple[int, int, int, int]  # (head block, relation block, tail block, sign)
YAGO3_10: tuple[Block, ...] = ((0, 0, 0, 1), (1, 1, 1, 1), (2, 2, 2, 1), (3, 3, 3, 1), (1, 2, 3, -1), (3, 1, 1, -1))


def checked(coefficients: Any, num_blocks: int) -> tuple[Block, ...]:
    """Distinct (head block, relation block, tail block, sign) 4-tuples, blocks below ``num_blocks``, signs ±1."""
    def valid(c: Any) -> bool:
        return (isinstance(c, Sequence) and len(c) == 4 and all(type(i) is int for i in c)
                and all(0 <= i < num_blocks for i in c[:3]) and c[3] in (-1, 1))

    if not (isinstance(coefficients, Sequence) and coefficients and all(map(valid, coefficients))
            and len({tuple(c[:3]) for c in coefficients}) == len(coefficients)):
        raise ValueError(f"coefficients must be distinct (head block, relation block, tail block, sign ±1) with "
                         f"blocks in [0, {num_blocks}), got {coefficients!r}")
    return tuple((c[0], c[1], c[2], c[3]) for c in coefficients)


@INTERACTIONS.register("autosf")
class AutoSF(FactorInteraction):
    """``sum_(i, j, k, s) s <h_i, r_j, t_k>`` over ``num_blocks`` blocks of ``dim`` coordinates each; the default
    coefficients are the structure the paper found on YAGO3-10, PyKEEN's default."""

    reference = "Zhang et al. 2020, AutoSF: searching scoring functions for knowledge graph embedding"

    def __init__(self, dim: int, num_blocks: int = 4, coefficients: Sequence[Block] = YAGO3_10) -> None:
        super().__init__(dim)
        self.num_blocks = positive_int("num_blocks", num_blocks)
        self.coefficients = checked(coefficients, self.num_blocks)

    def entity_width(self) -> int:
        return self.num_blocks * self.dim

    def relation_width(self) -> int:
        return self.num_blocks * self.dim

    def blocks(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_blocks, self.dim))  # (..., w) -> (..., blocks, d)

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h, r, t = self.blocks(h), self.blocks(r), self.blocks(t)
        return torch.stack([s * (h[..., i, :] * r[..., j, :] * t[..., k, :]).sum(-1)
                            for i, j, k, s in self.coefficients]).sum(0)

    def query(self, x: torch.Tensor, r: torch.Tensor, ours: int, theirs: int) -> torch.Tensor:
        """Block ``c[theirs]`` of the query sums ``s x_(c[ours]) r_(c[1])`` over the coefficients ``c``."""
        x, r = self.blocks(x), self.blocks(r)
        out = [x.new_zeros((*torch.broadcast_shapes(x.shape, r.shape)[:-2], self.dim))] * self.num_blocks
        for c in self.coefficients:
            out[c[theirs]] = out[c[theirs]] + c[3] * x[..., c[ours], :] * r[..., c[1], :]
        return torch.cat(out, -1)

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return self.query(h, r, 0, 2)

    def head_query(self, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.query(t, r, 2, 0)
