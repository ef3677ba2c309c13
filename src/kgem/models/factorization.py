"""Tensor-factorisation interactions: RESCAL, CP, SimplE and TuckER decompose the (h, r, t) score tensor.

Each is a dot product of a query, built once per batch row, with a key: the entity row (RESCAL, SimplE, TuckER) or
one role's half of it (CP), so all candidates are one matmul and sampled ones one sampled product.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kgem.checks import optional_positive_int, positive, probability
from kgem.models.factor import FactorInteraction, Side
from kgem.models.interaction import INTERACTIONS


@INTERACTIONS.register("rescal")
class RESCAL(FactorInteraction):
    """``h^T M_r t`` with a full ``d x d`` matrix per relation (relation rows of ``d * d`` numbers)."""

    reference = "Nickel et al. 2011, A three-way model for collective learning on multi-relational data"
    keys_are_rows = True

    def relation_width(self) -> int:
        return self.dim * self.dim

    def matrices(self, r: torch.Tensor) -> torch.Tensor:
        return r.unflatten(-1, (self.dim, self.dim))  # (..., d * d) -> (..., d, d)

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...i,...ij,...j->...", h, self.matrices(r), t)

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...i,...ij->...j", h, self.matrices(r))

    def head_query(self, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...ij,...j->...i", self.matrices(r), t)

    def reverse(self, r: torch.Tensor) -> torch.Tensor:
        return self.matrices(r).transpose(-1, -2).flatten(-2)  # h^T M t = t^T M^T h


@INTERACTIONS.register("cp")
class CP(FactorInteraction):
    """``<h_head, r, t_tail>``: every entity row is ``[head-role vector, tail-role vector]``."""

    reference = ("Hitchcock 1927, The expression of a tensor or a polyadic as a sum of products; "
                 "Lacroix et al. 2018, Canonical tensor decomposition for knowledge base completion")

    def __init__(self, dim: int, init_scale: float = 1e-3) -> None:
        super().__init__(dim)
        self.init_scale = positive("init_scale", init_scale)  # 0 would start every score and gradient at 0

    def extra_repr(self) -> str:
        return f"init_scale={self.init_scale}"

    def entity_width(self) -> int:
        return 2 * self.dim

    def reset_entity(self, weight: torch.Tensor) -> None:
        nn.init.normal_(weight, std=self.init_scale)  # Lacroix et al.: N(0, 1) scaled by 1e-3

    def reset_relation(self, weight: torch.Tensor) -> None:
        nn.init.normal_(weight, std=self.init_scale)

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (h[..., : self.dim] * r * t[..., self.dim :]).sum(-1)

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return h[..., : self.dim] * r

    def head_query(self, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return r * t[..., self.dim :]

    def keys(self, e: torch.Tensor, side: Side) -> torch.Tensor:
        return e[..., self.dim :] if side == "tail" else e[..., : self.dim]  # the candidate's role


@INTERACTIONS.register("simple")
class SimplE(FactorInteraction):
    """``(<h_head, r, t_tail> + <t_head, r_inv, h_tail>) / 2``; entity rows ``[head, tail]``, relation rows
    ``[r, r_inv]``."""

    reference = "Kazemi & Poole 2018, SimplE embedding for link prediction in knowledge graphs"
    keys_are_rows = True

    def entity_width(self) -> int:
        return 2 * self.dim

    def relation_width(self) -> int:
        return 2 * self.dim

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        d = self.dim
        forward = h[..., :d] * r[..., :d] * t[..., d:]
        backward = t[..., :d] * r[..., d:] * h[..., d:]
        return (forward + backward).sum(-1) / 2

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        d = self.dim  # the query pairs with the candidate's [head, tail] halves
        return torch.cat([h[..., d:] * r[..., d:], h[..., :d] * r[..., :d]], -1) / 2

    def reverse(self, r: torch.Tensor) -> torch.Tensor:
        return torch.cat([r[..., self.dim :], r[..., : self.dim]], -1)  # r and r_inv swap roles


@INTERACTIONS.register("tucker")
class TuckER(FactorInteraction):
    """``W x_1 h x_2 r x_3 t`` with a learnt core ``W (d, d_r, d)``; in full ``BN1(BN0(h) W_r) . t`` with
    ``W_r = W x_2 r`` and the paper's dropouts on ``BN0(h)``, ``W_r`` and ``BN1(.)``.

    Batch norm (training) takes its statistics over all rows one call scores, flattened; broadcasting repeats rows
    equally and so leaves the statistics unchanged, hence every scoring layout of the same triples agrees. The
    fast ``score_h`` draws the hidden dropout 2 mask once per query and shares it by the candidates, as 1-N tail
    scoring does (the broadcast path draws one per pair: the same marginal, other correlations).
    """

    reference = "Balažević et al. 2019, TuckER: Tensor factorization for knowledge graph completion"
    head_factors = False  # batch norm takes statistics over the candidates: score_h has a closed form of its own

    def __init__(self, dim: int, relation_dim: int | None = None, input_dropout: float = 0.3,
                 hidden_dropout1: float = 0.4, hidden_dropout2: float = 0.5, batch_norm: bool = True) -> None:
        super().__init__(dim)
        self.relation_dim = optional_positive_int("relation_dim", relation_dim, "dim") or dim
        self.input_dropout, self.hidden_dropout1, self.hidden_dropout2 = (
            probability("input_dropout", input_dropout), probability("hidden_dropout1", hidden_dropout1),
            probability("hidden_dropout2", hidden_dropout2))
        self.batch_norm = batch_norm
        self.core = nn.Parameter(torch.empty(dim, self.relation_dim, dim).uniform_(-1.0, 1.0))  # as in the paper's code
        self.bn0 = nn.BatchNorm1d(dim) if batch_norm else None
        self.bn1 = nn.BatchNorm1d(dim) if batch_norm else None

    def extra_repr(self) -> str:
        return (f"relation_dim={self.relation_dim}, dropout=({self.input_dropout}, {self.hidden_dropout1}, "
                f"{self.hidden_dropout2})")

    def relation_width(self) -> int:
        return self.relation_dim

    def reset_entity(self, weight: torch.Tensor) -> None:
        nn.init.xavier_normal_(weight)

    def reset_relation(self, weight: torch.Tensor) -> None:
        nn.init.xavier_normal_(weight)

    def relation_matrices(self, r: torch.Tensor) -> torch.Tensor:
        """``W_r = W x_2 r``: ``(..., d_r) -> (..., d, d)``, with the hidden dropout 1."""
        w = torch.einsum("ikj,...k->...ij", self.core, r)
        return F.dropout(w, self.hidden_dropout1, self.training)

    def inputs(self, h: torch.Tensor) -> torch.Tensor:
        return F.dropout(normalise(self.bn0, h), self.input_dropout, self.training)

    def query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """``dropout(BN1(BN0(h) W_r))``: ``(..., d)``."""
        # einsum, not matmul: matmul would copy W_r out to the broadcast shape, (B, C, d, d) for candidate heads
        x = torch.einsum("...i,...ij->...j", self.inputs(h), self.relation_matrices(r))
        return F.dropout(normalise(self.bn1, x), self.hidden_dropout2, self.training)

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (self.query(h, r) * t).sum(-1)

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return self.query(h, r)

    def score_h(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # BN1 is affine per feature, x -> x * a + c, so with v = dropout(t) the score (x a + c) . v is linear in the
        # candidate's x_bc = h'_c W_rb: h'_c . (W_rb (a v_b)) + c . v_b, without forming (B, C, d)
        hc, w = self.inputs(h), self.relation_matrices(r)  # (C, d), (B, d, d)
        a, c = bn_affine(self.bn1, hc, w, len(h) * len(r))
        v = F.dropout(torch.ones_like(t), self.hidden_dropout2, self.training) * t  # (B, d): one mask per query
        return (w @ (a * v).unsqueeze(-1)).squeeze(-1) @ hc.T + (c * v).sum(-1, keepdim=True)


def normalise(bn: nn.BatchNorm1d | None, x: torch.Tensor) -> torch.Tensor:
    """Batch norm over the rows of ``x (..., d)`` flattened (identity for ``None``)."""
    return x if bn is None else bn(x.reshape(-1, x.shape[-1])).view(x.shape)


def bn_affine(bn: nn.BatchNorm1d | None, hc: torch.Tensor, w: torch.Tensor, n: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and shift ``(a, c)`` with ``BN(x) = x * a + c`` for the rows ``x_bc = hc_c w_b`` of all pairs
    (``hc (C, d)``, ``w (B, d, d)``, ``n = B * C``). In training the batch moments come from the ``(d, d)`` second
    moment of ``hc`` instead of the ``(B, C, d)`` rows, and update the running statistics as ``bn`` itself would."""
    if bn is None:
        return torch.ones_like(hc[0]), torch.zeros_like(hc[0])
    running_mean, running_var, count = bn.running_mean, bn.running_var, bn.num_batches_tracked
    assert running_mean is not None and running_var is not None and count is not None  # track_running_stats
    if bn.training:
        mean = hc.mean(0) @ w.mean(0)  # mean of hc_c w_b over all (b, c)
        second = hc.T @ hc / len(hc)  # (d, d)
        var = (((second @ w) * w).sum(-2).mean(0) - mean.square()).clamp_min(0)  # E[x^2] - E[x]^2, biased as BN
        with torch.no_grad():
            count.add_(1)
            momentum = bn.momentum if bn.momentum is not None else 1.0 / float(count)
            running_mean.lerp_(mean, momentum)
            running_var.lerp_(var * n / max(n - 1, 1), momentum)
    else:
        mean, var = running_mean, running_var
    a = bn.weight / (var + bn.eps).sqrt()
    return a, bn.bias - mean * a
