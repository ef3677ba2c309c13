"""Neural interactions: convolutions, MLPs and neural tensor layers whose weights belong to the interaction.

Where the network sees only ``(h, r)`` and the score is ``features(h, r) . t`` (ConvE, ER-MLP-E, ProjE), 1-vs-all
scoring computes the features once per query and does one matmul with all candidates; NTN applies ``W_r`` once per
query. The broadcast ``forward`` flattens the broadcast ``(h, r)`` pairs, so batch norm sees a plain ``(N, ...)``
batch in every scoring mode. Dropouts and batch norms follow the papers; scores are deterministic in eval mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kgem.checks import optional_positive_int, positive_int, probability
from kgem.models.factor import FactorInteraction, Side
from kgem.models.interaction import INTERACTIONS, Interaction
from kgem.ops.compare import chunked


def pair_map(features: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], h: torch.Tensor,
             r: torch.Tensor) -> torch.Tensor:
    """Apply a network on flat pairs ``(N, a), (N, b) -> (N, c)`` to broadcastable ``h, r`` -> ``(*batch, c)``."""
    batch = torch.broadcast_shapes(h.shape[:-1], r.shape[:-1])
    flat_h = h.expand(*batch, h.shape[-1]).reshape(-1, h.shape[-1])
    flat_r = r.expand(*batch, r.shape[-1]).reshape(-1, r.shape[-1])
    return features(flat_h, flat_r).view(*batch, -1)


class NeuralInteraction(Interaction):
    """Broadcast scoring whose per-candidate intermediate is ``expansion`` times wider than ``d``: the chunks of
    candidates shrink by that factor so the default path keeps its memory bound."""

    def expansion(self) -> int:
        return 1

    def score_t(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return chunked(lambda tc: self(h.unsqueeze(1), r.unsqueeze(1), tc.unsqueeze(0)), t,
                       h.numel() * self.expansion())

    def score_h(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return chunked(lambda hc: self(hc.unsqueeze(0), r.unsqueeze(1), t.unsqueeze(1)), h,
                       t.numel() * self.expansion())


def image_height(dim: int) -> int:
    """The smallest divisor of ``dim`` not below its square root: 200 -> 20 x 10, as in the ConvE paper."""
    return next(k for k in range(math.isqrt(dim), dim + 1) if dim % k == 0 and k * k >= dim)


@INTERACTIONS.register("conve")
class ConvE(FactorInteraction, NeuralInteraction):
    """``relu(bn(W vec(relu(bn(conv([h; r] as 2-D images)))))) . t + b_t``; entity rows are ``[e, b]``."""

    reference = "Dettmers et al. 2018, Convolutional 2D knowledge graph embeddings"
    head_factors = False  # the network sees h

    def __init__(self, dim: int, height: int | None = None, num_filters: int = 32, kernel_size: int = 3,
                 input_dropout: float = 0.2, feature_dropout: float = 0.2, hidden_dropout: float = 0.3) -> None:
        super().__init__(dim)
        self.height = optional_positive_int("height", height, "from dim") or image_height(dim)
        if dim % self.height:
            raise ValueError(f"height {self.height} does not divide dim {dim}")
        num_filters, kernel_size = positive_int("num_filters", num_filters), positive_int("kernel_size", kernel_size)
        for name, rate in (("input_dropout", input_dropout), ("feature_dropout", feature_dropout),
                           ("hidden_dropout", hidden_dropout)):
            probability(name, rate)
        self.width = dim // self.height
        rows, cols = 2 * self.height, self.width  # h above r
        # No padding at the paper's sizes; an image smaller than the kernel (toy dims) gets just enough zeros.
        pad = (max(0, (kernel_size - rows + 1) // 2), max(0, (kernel_size - cols + 1) // 2))
        out = (rows + 2 * pad[0] - kernel_size + 1) * (cols + 2 * pad[1] - kernel_size + 1)
        self.bn0 = nn.BatchNorm2d(1)
        self.input_dropout = nn.Dropout(input_dropout)
        self.conv = nn.Conv2d(1, num_filters, kernel_size, padding=pad)
        self.bn1 = nn.BatchNorm2d(num_filters)
        self.feature_dropout = nn.Dropout2d(feature_dropout)
        self.fc = nn.Linear(num_filters * out, dim)
        self.hidden_dropout = nn.Dropout(hidden_dropout)
        self.bn2 = nn.BatchNorm1d(dim)
        self.features_per_pair = num_filters * out

    def entity_width(self) -> int:
        return self.dim + 1  # the embedding and the entity's bias

    def reset_entity(self, weight: torch.Tensor) -> None:
        weight[:, -1] = 0.0

    def expansion(self) -> int:
        return max(1, self.features_per_pair // self.dim)

    def features(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """``(N, d), (N, d) -> (N, d)``."""
        x = torch.cat([h.reshape(-1, 1, self.height, self.width), r.reshape(-1, 1, self.height, self.width)], 2)
        x = self.input_dropout(self.bn0(x))  # (N, 1, 2 height, width)
        x = self.feature_dropout(torch.relu(self.bn1(self.conv(x))))  # (N, filters, rows', cols')
        return torch.relu(self.bn2(self.hidden_dropout(self.fc(x.flatten(1)))))

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (pair_map(self.features, h[..., :-1], r) * t[..., :-1]).sum(-1) + t[..., -1]

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return pair_map(self.features, h[..., :-1], r)

    def keys(self, e: torch.Tensor, side: Side) -> torch.Tensor:
        return e[..., :-1]

    def key_bias(self, e: torch.Tensor, side: Side) -> torch.Tensor:
        return e[..., -1]


@INTERACTIONS.register("convkb")
class ConvKB(NeuralInteraction):
    """``w . concat_j relu(omega_j . [h_i, r_i, t_i] + b_j)``: 1x3 filters over the rows of the d x 3 ``[h, r, t]``."""

    reference = ("Nguyen et al. 2018, A novel embedding model for knowledge base completion based on convolutional "
                 "neural network")

    def __init__(self, dim: int, num_filters: int = 400, dropout: float = 0.0) -> None:
        super().__init__(dim)
        num_filters, dropout = positive_int("num_filters", num_filters), probability("dropout", dropout)
        self.filters = nn.Linear(3, num_filters)  # a 1x3 filter on row i is a linear map of (h_i, r_i, t_i)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(num_filters * dim, 1, bias=False)
        self.num_filters = num_filters

    def expansion(self) -> int:
        return self.num_filters

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        w, b = self.filters.weight[..., None], self.filters.bias[:, None]  # (filters, 3, 1), (filters, 1)
        maps = h.unsqueeze(-2) * w[:, 0] + r.unsqueeze(-2) * w[:, 1] + t.unsqueeze(-2) * w[:, 2] + b
        return self.dropout(torch.relu(maps)).flatten(-2) @ self.out.weight[0]  # (*batch, filters * d) . w


@INTERACTIONS.register("ermlp")
class ERMLP(NeuralInteraction):
    """``w . tanh(A [h; r; t])``: one hidden layer on the concatenation, then a scalar."""

    reference = "Dong et al. 2014, Knowledge vault: a web-scale approach to probabilistic knowledge fusion"

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__(dim)
        width = optional_positive_int("hidden", hidden, "dim") or dim
        self.hidden = nn.Linear(3 * dim, width, bias=False)
        self.out = nn.Linear(width, 1, bias=False)

    def expansion(self) -> int:
        return -(-self.hidden.out_features // self.dim)

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # A [h; r; t] = A_h h + A_r r + A_t t: each part broadcasts on its own, the concatenation is never built
        a_h, a_r, a_t = self.hidden.weight.split(self.dim, dim=1)
        x = F.linear(h, a_h) + F.linear(r, a_r) + F.linear(t, a_t)
        return torch.tanh(x) @ self.out.weight[0]


@INTERACTIONS.register("ermlpe")
class ERMLPE(FactorInteraction, NeuralInteraction):
    """``relu(bn(W2 relu(bn(W1 [h; r])))) . t``: an MLP maps ``(h, r)`` to a vector that is matched with ``t``."""

    reference = "Sharifzadeh et al. 2019, Improving visual relation detection using depth maps"
    head_factors = False

    def __init__(self, dim: int, hidden: int = 300, input_dropout: float = 0.2, hidden_dropout: float = 0.3) -> None:
        super().__init__(dim)
        hidden = positive_int("hidden", hidden)
        probability("input_dropout", input_dropout), probability("hidden_dropout", hidden_dropout)
        self.input_dropout = nn.Dropout(input_dropout)
        self.linear1 = nn.Linear(2 * dim, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.bn2 = nn.BatchNorm1d(dim)
        self.hidden_dropout = nn.Dropout(hidden_dropout)

    def expansion(self) -> int:
        return -(-self.linear1.out_features // self.dim)

    def features(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """``(N, d), (N, d) -> (N, d)``."""
        x = self.linear1(self.input_dropout(torch.cat([h, r], -1)))
        x = torch.relu(self.bn1(self.hidden_dropout(x)))
        return torch.relu(self.bn2(self.hidden_dropout(self.linear2(x))))

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (pair_map(self.features, h, r) * t).sum(-1)

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return pair_map(self.features, h, r)


@INTERACTIONS.register("ntn")
class NTN(NeuralInteraction):
    """``u_r . tanh(h W_r t + V_r [h; t] + b_r)`` with k slices; relation rows are ``[W_r, V_r, b_r, u_r]``."""

    reference = "Socher et al. 2013, Reasoning with neural tensor networks for knowledge base completion"

    def __init__(self, dim: int, slices: int = 4) -> None:
        super().__init__(dim)
        self.slices = positive_int("slices", slices)

    def relation_width(self) -> int:
        k, d = self.slices, self.dim
        return k * d * d + 2 * k * d + 2 * k

    def reset_relation(self, weight: torch.Tensor) -> None:
        k, d = self.slices, self.dim
        nn.init.uniform_(weight[:, : k * d * d], -1 / d, 1 / d)  # W: keeps h W t small next to V [h; t]
        nn.init.uniform_(weight[:, k * d * d : -2 * k], -1 / math.sqrt(2 * d), 1 / math.sqrt(2 * d))  # V
        weight[:, -2 * k : -k] = 0.0  # b
        weight[:, -k:] = 1.0  # u

    def expansion(self) -> int:
        return self.slices

    def split(self, r: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Relation rows -> ``W (..., k, d, d), V_h (..., k, d), V_t (..., k, d), b (..., k), u (..., k)``."""
        k, d = self.slices, self.dim
        w, v, b, u = r.split([k * d * d, 2 * k * d, k, k], dim=-1)
        v_h, v_t = v.unflatten(-1, (k, 2, d)).unbind(-2)
        return w.unflatten(-1, (k, d, d)), v_h, v_t, b, u

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        w, v_h, v_t, b, u = self.split(r)
        # einsum does not expand size-1 batch dims, so W meets the smaller of h and t first: never (B, C, k, d, d)
        if h[..., 0].numel() <= t[..., 0].numel():
            bilinear = torch.einsum("...ke,...e->...k", torch.einsum("...d,...kde->...ke", h, w), t)
        else:
            bilinear = torch.einsum("...kd,...d->...k", torch.einsum("...kde,...e->...kd", w, t), h)
        linear = torch.einsum("...kd,...d->...k", v_h, h) + torch.einsum("...kd,...d->...k", v_t, t)
        return (u * torch.tanh(bilinear + linear + b)).sum(-1)

    def score_t(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        w, v_h, v_t, b, u = self.split(r)
        q = torch.einsum("bd,bkde->bke", h, w) + v_t  # (B, k, d): h W_r + V_t, once per query
        pre = q @ t.T + ((v_h * h.unsqueeze(1)).sum(-1) + b).unsqueeze(-1)  # (B, k, C)
        return torch.einsum("bkc,bk->bc", torch.tanh(pre), u)

    def score_h(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        w, v_h, v_t, b, u = self.split(r)
        q = torch.einsum("bkde,be->bkd", w, t) + v_h  # (B, k, d): W_r t + V_h, once per query
        pre = q @ h.T + ((v_t * t.unsqueeze(1)).sum(-1) + b).unsqueeze(-1)  # (B, k, C)
        return torch.einsum("bkc,bk->bc", torch.tanh(pre), u)


@INTERACTIONS.register("proje")
class ProjE(FactorInteraction, NeuralInteraction):
    """``tanh(d_e * h + d_r * r + b_c) . t + b_p``: a diagonal combination projected onto the candidate."""

    reference = "Shi & Weninger 2017, ProjE: embedding projection for knowledge graph completion"
    head_factors = False

    def __init__(self, dim: int, dropout: float = 0.5) -> None:
        super().__init__(dim)
        dropout = probability("dropout", dropout)
        bound = math.sqrt(6 / dim)
        self.d_e = nn.Parameter(torch.empty(dim).uniform_(-bound, bound))
        self.d_r = nn.Parameter(torch.empty(dim).uniform_(-bound, bound))
        self.b_c = nn.Parameter(torch.empty(dim).uniform_(-bound, bound))
        self.b_p = nn.Parameter(torch.zeros(()))
        self.dropout = nn.Dropout(dropout)

    def combine(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.tanh(self.d_e * h + self.d_r * r + self.b_c))

    def forward(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (self.combine(h, r) * t).sum(-1) + self.b_p

    def tail_query(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return self.combine(h, r)

    def query_bias(self, x: torch.Tensor, r: torch.Tensor, side: Side) -> torch.Tensor:
        return self.b_p.expand(torch.broadcast_shapes(x.shape[:-1], r.shape[:-1]))
