"""TripleRE: LineaRE's scales offset by a constant ``u`` (the paper's second version), on unit-norm entities."""

from __future__ import annotations

import torch

from kgem.checks import finite
from kgem.models.interaction import INTERACTIONS
from kgem.models.lineare import LineaRE


@INTERACTIONS.register("triplere")
class TripleRE(LineaRE):
    """``-||h ∘ (r_h + u) - t ∘ (r_t + u) + r||_1`` with unit-norm ``h, t``, relation rows ``[r_h, r, r_t]`` and
    ``u = 1`` (PyKEEN's default; ``u = 0`` is the paper's first version). Like LineaRE, no query form: every scoring
    mode is the generic chunked broadcast."""

    normalize_entities = True
    reference = "Yu et al. 2021, TripleRE: knowledge graph embeddings via tripled relation vectors"

    def __init__(self, dim: int, u: float = 1.0, p: float = 1.0, power_norm: bool = False) -> None:
        super().__init__(dim, p, power_norm)
        self.u = finite("u", u)

    def extra_repr(self) -> str:
        return f"u={self.u}, {super().extra_repr()}"

    def parts(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r_h, r_mid, r_t = super().parts(r)
        return r_h + self.u, r_mid, r_t + self.u
