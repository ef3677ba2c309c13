"""R-GCN: entity representations computed by relational graph convolutions over the training graph
(Schlichtkrull et al. 2018, "Modeling relational data with graph convolutional networks", ESWC).

Each layer maps the node states ``x (E, d)`` to

    x_i' = σ( Σ_r Σ_{j ∈ N_i^r} x_j W_r / c_{i,r}  +  x_i W_0 ),   c_{i,r} = |N_i^r|   (paper, eq. 2)

over the training triples in both directions: ``(h, r, t)`` sends ``h -> t`` through ``W_r`` and ``t -> h``
through ``W_{r+R}`` (inverse edges have their own weights). ``W_r`` is a combination of shared bases
(``W_r = Σ_b a_rb V_b``, eq. 3) or block diagonal (``W_r = diag(Q_r1, ..., Q_rB)``, eq. 4). σ is ReLU between
layers and the identity after the last; the input is the decoder's entity table, the output is what the decoder
(DistMult in the paper) scores. In training, edges are dropped before the normalisation and self-loops are dropped
(section 5: rates 0.4 and 0.2), and ``sample_edges`` propagates each step over a random sample of the edges;
evaluation always uses the full graph.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from kgem.models.representation import Embedding, Representation
from kgem.ops.compare import CHUNK_ELEMENTS

Decomposition = Literal["basis", "block"]


class Edges(NamedTuple):
    """Directed message edges grouped by (receiver, edge type): edge ``e`` sends from ``src[e]`` into the group
    ``group[e]`` with weight ``norm[e] = 1 / c_{i,r}``; group ``p`` is node ``dst[p]`` and type ``rel[p]``
    (``r``, or ``r + R`` for an inverse edge)."""

    src: torch.Tensor  # (n,)
    group: torch.Tensor  # (n,)
    norm: torch.Tensor  # (n,)
    dst: torch.Tensor  # (P,)
    rel: torch.Tensor  # (P,)


class RGCNLayer(nn.Module):
    """One R-GCN layer of width ``width`` over ``num_types`` edge types, before its activation."""

    def __init__(self, width: int, num_types: int, *, decomposition: Decomposition, num_bases: int,
                 num_blocks: int) -> None:
        super().__init__()
        self.decomposition = decomposition
        self.self_loop = nn.Parameter(torch.empty(width, width))  # W_0
        nn.init.uniform_(self.self_loop, -math.sqrt(3 / width), math.sqrt(3 / width))  # Glorot
        if decomposition == "basis":
            self.bases = nn.Parameter(torch.empty(num_bases, width, width))  # V_b
            self.coefficients = nn.Parameter(torch.empty(num_types, num_bases))  # a_rb
            nn.init.uniform_(self.bases, -math.sqrt(3 / width), math.sqrt(3 / width))
            nn.init.normal_(self.coefficients, std=1 / math.sqrt(num_bases))  # W_r has the variance of one V_b
        else:
            size = width // num_blocks
            self.blocks = nn.Parameter(torch.empty(num_types, num_blocks, size, size))  # Q_rb
            nn.init.uniform_(self.blocks, -math.sqrt(3 / size), math.sqrt(3 / size))

    def forward(self, x: torch.Tensor, edges: Edges, self_scale: torch.Tensor | None = None) -> torch.Tensor:
        """``x (E, d) -> (E, d)``: normalised messages plus the self-loop (scaled per node by ``self_scale``)."""
        own = x @ self.self_loop
        if self_scale is not None:
            own = own * self_scale
        return self.messages(x, edges) + own

    def messages(self, x: torch.Tensor, edges: Edges) -> torch.Tensor:
        """``Σ_r Σ_{j ∈ N_i^r} x_j W_r / c_{i,r}`` for every node ``i``: ``(E, d)``.

        ``W_r`` is linear, so each group's neighbours are averaged first and transformed once per group: the
        per-edge work is one gather and one scatter (in chunks of edges, so temporaries stay bounded), and the
        weights touch ``P <= n`` rows (P / n ~ 0.15 on UMLS)."""
        num_groups, width = len(edges.dst), x.shape[1]
        mean = x.new_zeros(num_groups, width)
        for begin in range(0, len(edges.src), max(1, CHUNK_ELEMENTS // width)):
            chunk = slice(begin, begin + max(1, CHUNK_ELEMENTS // width))
            mean.index_add_(0, edges.group[chunk], x[edges.src[chunk]] * edges.norm[chunk, None])
        if self.decomposition == "basis":  # Σ_b a_{r b} (mean V_b)
            coefficients = self.coefficients[edges.rel]  # (P, B)
            out = sum(coefficients[:, b, None] * (mean @ basis) for b, basis in enumerate(self.bases))
        else:  # block b of the output is block b of the input times Q_{r b}
            num_blocks, size = self.blocks.shape[1], self.blocks.shape[2]
            blocks = torch.einsum("pbi,pbij->pbj", mean.view(num_groups, num_blocks, size), self.blocks[edges.rel])
            out = blocks.reshape(num_groups, width)  # (P, d)
        return x.new_zeros(x.shape).index_add(0, edges.dst, out)


class RGCN(Representation):
    """R-GCN encoder over the ``graph`` of training triples ``(n, 3)``; ``forward(ids | None)`` as every
    representation (``Embedding`` too). ``base`` is the input table (its kind and normalisation apply to the output).

    The graph is kept as a persistent int64 buffer, so a saved model carries it; ``num_edges`` alone (no
    ``graph``) builds a placeholder of the right shape for loading (``spec_args``). ``decomposition``: ``basis``
    with ``num_bases`` or ``block`` with ``num_blocks`` (default: the paper's 5 x 5 blocks). ``edge_dropout`` /
    ``self_loop_dropout``: training-time drop rates. ``sample_edges``: propagate each training step over this many
    edges drawn uniformly without replacement. The randomness comes from a generator seeded by ``seed`` (default:
    drawn from torch's global generator) and a step counter, both in a buffer, so training is deterministic and a
    checkpoint resumes it exactly.

    The propagated table is cached: it is recomputed only when a parameter or the graph changed (their
    ``_version`` counters), when grad/inference/train mode differs, or after a backward pass went through it. So
    the several lookups of one training step (heads, tails, negatives, regularizer factors) share one
    propagation, and therefore one edge sample.
    """

    graph: torch.Tensor
    sampler: torch.Tensor

    def __init__(self, base: Embedding, num_relations: int, *, graph: torch.Tensor | None = None,
                 num_edges: int | None = None, num_layers: int = 2, decomposition: Decomposition = "basis",
                 num_bases: int = 2, num_blocks: int | None = None, edge_dropout: float = 0.4,
                 self_loop_dropout: float = 0.2, sample_edges: int | None = None, seed: int | None = None) -> None:
        super().__init__()
        width = base.weight.shape[1]
        blocks = width // 5 if num_blocks is None else num_blocks
        _check_settings(width, num_layers, decomposition, num_bases, blocks, edge_dropout, self_loop_dropout,
                        sample_edges)
        self.base, self.num, self.dim, self.kind, self.normalize = base, base.num, base.dim, base.kind, base.normalize
        self.num_relations = num_relations
        self.edge_dropout, self.self_loop_dropout, self.sample_edges = edge_dropout, self_loop_dropout, sample_edges
        self.layers = nn.ModuleList(RGCNLayer(width, 2 * num_relations, decomposition=decomposition,
                                              num_bases=num_bases, num_blocks=blocks) for _ in range(num_layers))
        if graph is not None:
            graph = _check_graph(graph, base.num, num_relations, num_edges).to(base.weight.device, copy=True)
        else:  # -1: not loaded yet (filled by load_state_dict)
            graph = torch.full((num_edges or 0, 3), -1, dtype=torch.long)
        self.register_buffer("graph", graph)
        if len(graph) and graph.device.type != "meta":
            self._scale_initial_weights()
        if seed is None:
            seed = int(torch.randint(2**62, (), device="cpu")) if len(graph) else 0
        self.register_buffer("sampler", torch.tensor([seed, 0], dtype=torch.long))  # [seed, steps drawn]
        self._cache: tuple[tuple[Any, ...], torch.Tensor, list[torch.Tensor]] | None = None

    def _scale_initial_weights(self) -> None:
        """Glorot initialisation counts one input per layer, but a node sums ``W_0`` and one term per (type,
        receiver) group: divide the weights by the square root of the average number of terms, so the
        propagation does not blow up on dense graphs (a node of nations has ~65 groups)."""
        terms = 1 + len(self.edges(self.graph).dst) / max(1, self.num)
        with torch.no_grad():
            for layer in self.layers:
                for weight in layer.parameters():
                    if weight is not getattr(layer, "bases", None):  # the bases are shared by all types
                        weight.mul_(terms**-0.5)

    def extra_repr(self) -> str:
        return (f"num_edges={len(self.graph)}, edge_dropout={self.edge_dropout}, "
                f"self_loop_dropout={self.self_loop_dropout}, sample_edges={self.sample_edges}")

    def spec_args(self) -> dict[str, Any]:
        """What ``build_model`` needs, beyond the user's arguments, to rebuild this encoder without its graph."""
        return {"num_edges": len(self.graph)}

    def forward(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        table = self.table()
        return self.base.transform(table if ids is None else table[ids])

    def table(self) -> torch.Tensor:
        """The propagated raw table ``(E, width)``, from the cache when nothing it depends on has changed."""
        tensors = [*self.parameters(), self.graph]
        key = (torch.is_grad_enabled(), torch.is_inference_mode_enabled(), self.training,
               tuple((id(t), t._version, t.data_ptr()) for t in tensors))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        table = self.propagate()
        if table.requires_grad:  # backward frees the autograd graph: the next lookup must build a new one
            table.register_hook(self._forget)
        self._cache = (key, table, tensors)  # holding the tensors keeps their ids from being reused
        return table

    def _forget(self, grad: torch.Tensor) -> None:
        self._cache = None

    def invalidate_cache(self) -> None:
        """Recompute the table at the next lookup: for changes the version counters miss (HOGWILD workers write
        the shared parameters from other processes)."""
        self._cache = None

    def check_state(self) -> None:
        """Raise ValueError unless the loaded graph holds valid ids for this encoder and the sampler two ints
        (for tensors loaded from a file)."""
        _check_graph(self.graph, self.num, self.num_relations, None)
        for name, tensor in (("graph", self.graph), ("sampler", self.sampler)):
            if tensor.dtype != torch.long:
                raise ValueError(f"R-GCN: {name} must hold int64 values, got {tensor.dtype}")
        if self.sampler.shape != (2,):
            raise ValueError(f"R-GCN: sampler must hold 2 values, got shape {tuple(self.sampler.shape)}")

    def __getstate__(self) -> dict[str, Any]:  # copies and pickles leave the cache behind
        return {**self.__dict__, "_cache": None}

    def propagate(self) -> torch.Tensor:
        """The raw table, uncached: over the full graph in eval mode, over this step's sampled and dropped-out
        graph in train mode (each call in train mode draws the next sample)."""
        random = self.training and (self.sample_edges is not None or self.edge_dropout > 0
                                    or self.self_loop_dropout > 0)
        if len(self.graph) and int(self.graph[0, 0]) < 0:
            raise RuntimeError("the R-GCN graph was built as a placeholder (num_edges without graph) and never "
                               "loaded: pass graph=training triples, or load a saved model")
        generator = self._next_generator() if random else None
        x = self.base.table()
        edges = self.edges(self.graph if generator is None else self.sample(generator), x.dtype)
        for i, layer in enumerate(self.layers):
            scale = None
            if generator is not None and self.self_loop_dropout > 0:  # drop a node's self-loop, keep the mean
                keep = torch.rand(self.num, 1, generator=generator) >= self.self_loop_dropout
                scale = keep.to(x.device, x.dtype) / (1 - self.self_loop_dropout)
            x = layer(x, edges, scale)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        """A training step's triples: ``sample_edges`` of the graph drawn uniformly without replacement (all
        without it), then each kept with probability ``1 - edge_dropout`` (a dropped fact sends no message either
        way)."""
        hrt = self.graph
        if self.sample_edges is not None and self.sample_edges < len(hrt):
            hrt = hrt[torch.randperm(len(hrt), generator=generator)[: self.sample_edges].to(hrt.device)]
        if self.edge_dropout > 0:
            hrt = hrt[(torch.rand(len(hrt), generator=generator) >= self.edge_dropout).to(hrt.device)]
        return hrt

    def edges(self, hrt: torch.Tensor, dtype: torch.dtype = torch.float32) -> Edges:
        """Message edges of the triples ``hrt`` in both directions, with the paper's normalisation
        ``1 / c_{i,r}`` counted over these triples (so after the dropout, as in the paper)."""
        h, r, t = hrt.unbind(1)
        types = 2 * self.num_relations
        keys = torch.cat([t * types + r, h * types + r + self.num_relations])  # receiver, type
        pairs, group, counts = torch.unique(keys, return_inverse=True, return_counts=True)
        return Edges(torch.cat([h, t]), group, 1.0 / counts[group].to(dtype), pairs // types, pairs % types)

    def _next_generator(self) -> torch.Generator:
        """A CPU generator for the next training step, seeded from ``(seed, step)``; advances the step."""
        seed, step = (int(v) for v in self.sampler.tolist())
        with torch.no_grad():
            self.sampler[1] += 1
        return torch.Generator().manual_seed((seed ^ (step * 0x9E3779B97F4A7C15)) % 2**64)


def _check_settings(width: int, num_layers: int, decomposition: str, num_bases: int, num_blocks: int,
                    edge_dropout: float, self_loop_dropout: float, sample_edges: int | None) -> None:
    if num_layers < 1:
        raise ValueError(f"R-GCN: num_layers must be at least 1, got {num_layers}")
    if decomposition not in ("basis", "block"):
        raise ValueError(f"R-GCN: decomposition must be 'basis' or 'block', not {decomposition!r}")
    if decomposition == "basis" and num_bases < 1:
        raise ValueError(f"R-GCN: num_bases must be at least 1, got {num_bases}")
    if decomposition == "block" and (num_blocks < 1 or width % num_blocks):
        raise ValueError(f"R-GCN: num_blocks ({num_blocks}; default: width // 5) must be positive and divide the "
                         f"entity width {width}")
    if not (0 <= edge_dropout < 1 and 0 <= self_loop_dropout < 1):
        raise ValueError(f"R-GCN: dropout rates must be in [0, 1), got {edge_dropout}, {self_loop_dropout}")
    if sample_edges is not None and sample_edges < 1:
        raise ValueError(f"R-GCN: sample_edges must be positive (or None for full-batch), got {sample_edges}")


def _check_graph(graph: torch.Tensor, num_entities: int, num_relations: int, num_edges: int | None) -> torch.Tensor:
    """The training triples as int64 ``(n, 3)`` with ids in range (and ``n == num_edges`` when given)."""
    if graph.dim() != 2 or graph.shape[1] != 3 or graph.is_floating_point() or graph.is_complex():
        raise ValueError(f"R-GCN: graph must be integer triples of shape (n, 3), got {graph.dtype} "
                         f"{tuple(graph.shape)}")
    if num_edges is not None and num_edges != len(graph):
        raise ValueError(f"R-GCN: num_edges={num_edges} but the graph has {len(graph)} triples")
    graph = graph.long()
    if len(graph) and (graph.min() < 0 or graph[:, [0, 2]].max() >= num_entities
                       or graph[:, 1].max() >= num_relations):
        raise ValueError(f"R-GCN: graph ids out of range for {num_entities} entities and {num_relations} relations")
    return graph
