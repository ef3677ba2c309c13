"""The representation contract, and the embedding table that implements it.

A representation gives the rows an interaction scores: ``forward(ids | None) -> (*ids.shape, width)``, ``None``
meaning all ``num`` rows. It owns everything about its rows and nothing about scoring: their kind (real, complex,
phase), their constraint (``normalize``, kept by ``constrain_`` or applied on lookup), whether lookups give sparse
gradients, a cache and its invalidation, and the arguments a saved model needs to rebuild it (``spec_args``).
``Embedding`` is a table; ``RGCN`` (``kgem.models.rgcn``) an encoder over the training graph whose input is a table;
memory-mapped, partitioned and literal-aware tables implement the same contract.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from kgem.models.initializers import Initializer
from kgem.models.storage import initialise, table_storage
from kgem.ops.rows import EPS, unit_rows

Kind = Literal["real", "complex", "phase"]
Normalize = Literal["none", "forward", "step"]
NORMALIZE: tuple[Normalize, ...] = ("none", "forward", "step")


class Representation(nn.Module):
    """The contract (see the module docstring); subclasses set ``num``, ``dim`` (numbers per row; complex numbers
    for the complex kind), ``kind``, ``normalize`` and ``sparse`` and implement ``forward``."""

    num: int
    dim: int
    kind: Kind
    normalize: Normalize
    sparse: bool = False

    def forward(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def constrain_(self) -> None:
        """Re-impose the constraint on stored rows (after an optimizer step); nothing to do by default."""

    def invalidate_cache(self) -> None:
        """Forget cached rows (writes the cache cannot see, e.g. from other processes); none by default."""

    def spec_args(self) -> dict[str, Any]:
        """Arguments ``build_model`` needs beyond the user's to rebuild this representation without its data."""
        return {}

    def saved_as(self) -> str:
        """The representation a saved model rebuilds this one as (its class, unless it only changes where the
        rows live during training)."""
        return type(self).__name__


class Embedding(Representation):
    """An embedding table of ``num`` rows.

    ``kind``: ``real`` rows of ``dim`` floats; ``complex`` rows of ``dim`` complex numbers (stored as ``2 * dim``
    floats, real and imaginary parts interleaved, viewed as complex on the way out); ``phase`` rows of ``dim`` angles
    returned as unit complex numbers ``exp(i * angle)`` (rotations). ``sparse`` makes lookups produce sparse gradients
    (for SparseAdam / Adagrad).

    ``normalize`` keeps rows at unit L2 norm (TransE's constraint) in one of two ways, which train differently:

    - ``forward``: every lookup returns ``x / ||x||``; the gradient flows through the normalisation, the stored
      rows are free;
    - ``step``: the stored rows themselves are projected onto the unit sphere by ``constrain_`` (at construction
      and, in training, after every optimizer step), and lookups return them as they are. This is the algorithm of
      Bordes et al. 2013 (rows normalised before each minibatch) and PyKEEN's ``entity_constrainer``.

    ``private_table`` (set in HOGWILD workers, by ``Model.private_tables``) makes a whole-table lookup return a copy.
    """

    private_table = False

    def __init__(self, num: int, dim: int, *, kind: Kind = "real", initializer: Initializer | None = None,
                 normalize: Normalize = "none", sparse: bool = False, trainable: bool = True) -> None:
        super().__init__()
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
        if normalize != "none" and kind == "phase":
            raise ValueError("phase rows are angles; they cannot be normalised")
        self.num, self.dim, self.kind, self.normalize, self.sparse = num, dim, kind, normalize, sparse
        width = 2 * dim if kind == "complex" else dim
        stored = table_storage(num, width)  # rows in a file inside ``mapped_tables`` (kgem.models.storage)
        self.weight = nn.Parameter(torch.empty(num, width) if stored is None else stored, requires_grad=trainable)
        if initializer is None:
            default = math.pi if kind == "phase" else 1.0 / math.sqrt(dim)
            initializer = functools.partial(nn.init.uniform_, a=-default, b=default)
        if stored is None:
            with torch.no_grad():
                initializer(self.weight.data)
        else:
            initialise(self.weight.data, initializer)
        self.constrain_()

    def constrain_(self) -> None:
        """Project the stored rows onto the unit sphere (``normalize="step"``; a no-op otherwise). The norm of a
        stored row is that of its complex vector too, so one rule serves both kinds."""
        if self.normalize == "step":
            with torch.no_grad():
                weight = self.weight.data
                weight.div_(torch.linalg.vector_norm(weight, dim=-1, keepdim=True).clamp_min_(EPS))

    def extra_repr(self) -> str:
        return f"{self.num}, {self.dim}, kind={self.kind}, normalize={self.normalize}, sparse={self.sparse}"

    def forward(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        x: torch.Tensor
        if ids is None:
            x = self.table()
        else:
            x = F.embedding(ids.reshape(-1), self.weight, sparse=self.sparse).view(*ids.shape, self.weight.shape[1])
        return self.transform(x)

    def table(self) -> torch.Tensor:
        """The stored rows, or a copy of them with ``private_table``. Operations save their inputs for the backward
        by reference: one given the stored rows reads them again in the backward, and in a HOGWILD worker another
        process may have written them in between, unseen by autograd's version counters. Its gradient is then that
        of values the forward never saw, magnified where the backward divides by a forward-time distance. A lookup
        of some ids gathers a copy anyway."""
        return self.weight.clone() if self.private_table else self.weight

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Raw rows -> what the interaction sees (normalised real, complex, or rotation)."""
        if self.kind == "complex":
            x = torch.view_as_complex(x.view(*x.shape[:-1], self.dim, 2))
        elif self.kind == "phase":
            x = torch.polar(torch.ones_like(x), x)
        if self.normalize == "forward":
            norm = torch.linalg.vector_norm  # of a complex row: the root of its squared moduli, finite gradient at 0
            x = unit_rows(x) if not x.is_complex() else x / norm(x, dim=-1, keepdim=True).clamp_min(EPS)
        return x
