"""Small seeded synthetic graphs, one per relation pattern (symmetry, antisymmetry, inversion, composition, 1-to-N).

Each generator returns a ``Dataset`` whose held-out (valid and test) triples follow from the training triples by
its pattern alone, and whose filtered ranking has *traps*: candidates that a model without the pattern must score
as high as the answer. The docstrings say why. Every graph has a few hundred entities at most, so any model trains
on it in seconds. ``PATTERNS`` maps pattern names to generators; ``implied`` recomputes by brute force the triples a
pattern implies from a set of triples (used by the tests).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from kgem.data.dataset import Dataset
from kgem.data.triples import Triples
from kgem.data.vocab import Vocabulary

Edges = list[tuple[int, str, int]]
DISTRACTORS = 0.25  # random distractor edges per entity and distractor relation


def _dataset(name: str, num_entities: int, relations: list[str], train: Edges, held_out: Edges,
             rng: np.random.Generator) -> Dataset:
    """Shuffle ``held_out`` into valid (a quarter) and test (the rest) and wrap everything as a ``Dataset``."""
    entities = Vocabulary([f"e{i:03d}" for i in range(num_entities)], kind="entity")
    vocab = Vocabulary(relations, kind="relation")
    index = {r: i for i, r in enumerate(relations)}

    def triples(edges: Edges, split: str) -> Triples:
        hrt = torch.tensor([(h, index[r], t) for h, r, t in edges], dtype=torch.long).reshape(-1, 3)
        return Triples(hrt, entities, vocab, source=f"{name}/{split}")

    order = rng.permutation(len(held_out))
    cut = len(held_out) // 4
    valid = [held_out[i] for i in order[:cut]]
    test = [held_out[i] for i in order[cut:]]
    return Dataset(triples(train, "train"), triples(valid, "valid"), triples(test, "test"), name=name)


def _random_edges(rng: np.random.Generator, num_entities: int, relation: str, per_entity: float) -> Edges:
    """``per_entity * num_entities`` distinct random edges without self-loops: distractors that only make the graph
    less trivial. No model represents a random N-to-N relation, and a distance model bends its whole geometry to
    fit one, so distractors stay sparse (``DISTRACTORS``): dense ones (one per entity) measured robustness to noise,
    not the pattern (TransE lost composition, 0.3 instead of 1.0 Hits@1)."""
    count = round(per_entity * num_entities)
    edges: set[tuple[int, int]] = set()
    while len(edges) < count:
        h, t = (int(x) for x in rng.integers(num_entities, size=2))
        if h != t:
            edges.add((h, t))
    return [(h, relation, t) for h, t in sorted(edges)]


def symmetric(seed: int = 0, *, num_pairs: int = 100, held_out: float = 0.3) -> Dataset:
    """``partner`` pairs the entities up (a perfect matching) and is symmetric.

    Train holds both directions of most pairs (the evidence that ``partner`` is symmetric) and one direction of the
    held-out pairs; valid/test hold the missing reverse (b, partner, a). Nothing but symmetry links b to a: a's only
    other edges are two random distractor relations. A model that cannot make r(a, b) ⇔ r(b, a) (TransE: it needs
    r = 0 and a = b, and then b ties with its own reflexive candidate) cannot rank a first.
    """
    rng = np.random.default_rng(seed)
    n = 2 * num_pairs
    perm = rng.permutation(n)
    train: Edges = []
    test: Edges = []
    for i in range(num_pairs):
        a, b = int(perm[2 * i]), int(perm[2 * i + 1])
        train.append((a, "partner", b))
        (test if rng.random() < held_out else train).append((b, "partner", a))
    train += _random_edges(rng, n, "random1", DISTRACTORS) + _random_edges(rng, n, "random2", DISTRACTORS)
    return _dataset("symmetric", n, ["partner", "random1", "random2"], train, test, rng)


def antisymmetric(seed: int = 0, *, num_layers: int = 4, width: int = 14, held_out: float = 0.25) -> Dataset:
    """``before`` links every entity of layer i to every entity of layer i+1 (a layered DAG: antisymmetric).

    Valid/test hold out forward edges (a, before, c) with a in a middle layer 1..L-3, so a has predecessors (layer
    i-1) and c has successors (layer i+2). The layer structure predicts the edge; after filtering, the tail query
    (a, before, ?) still has all of layer i-1 as candidates, which are true in reverse: (b, before, a) is in train.
    A symmetric model (DistMult) scores (a, before, b) = (b, before, a) as high as the answer, so its Hits@1 is at
    most about 1 / (width + 1); the head query mirrors this with layer i+2. Four layers, the fewest with a trap on
    both sides: TransE places layer i+1 at layer i + r, and its unit-norm entities cannot put many points of one
    line on the sphere, so longer DAGs (six layers) failed it for the chain, not for antisymmetry.
    """
    rng = np.random.default_rng(seed)
    layers = rng.permutation(num_layers * width).reshape(num_layers, width)
    train: Edges = []
    test: Edges = []
    for i in range(num_layers - 1):
        for a in layers[i]:
            for c in layers[i + 1]:
                middle = 1 <= i <= num_layers - 3
                (test if middle and rng.random() < held_out else train).append((int(a), "before", int(c)))
    n = num_layers * width
    train += _random_edges(rng, n, "random", DISTRACTORS)
    return _dataset("antisymmetric", n, ["before", "random"], train, test, rng)


def inverse(seed: int = 0, *, num_chains: int = 80, length: int = 4, held_out: float = 0.6) -> Dataset:
    """``next`` and ``prev`` are inverses: next(a_i, a_{i+1}) ⇔ prev(a_{i+1}, a_i), along random chains.

    Train holds every ``next`` edge and the other ``prev`` edges; valid/test hold ``prev`` edges (a_i, prev,
    a_{i-1}) with 2 <= i <= L-2, each implied only by its ``next`` counterpart in train. The held-out positions
    leave traps on both sides: a_{i+1} for the tail query (prev(a_{i+1}, a_i) is true) and a_{i-2} for the head
    query. A model whose relations are symmetric (DistMult: its only inverse of r is r itself) ties each trap
    with the answer. Chains of four, the shortest with both traps: a_0, a_0 + r, a_0 + 2r, ... cannot all be unit
    vectors, so TransE fits a long chain only roughly, and with six it ranked the query entity itself (distance |r|)
    above the answer.
    """
    rng = np.random.default_rng(seed)
    chains = rng.permutation(num_chains * length).reshape(num_chains, length)
    train: Edges = []
    test: Edges = []
    for chain in chains.tolist():
        for i in range(length - 1):
            train.append((chain[i], "next", chain[i + 1]))
        for i in range(1, length):
            middle = 2 <= i <= length - 2
            (test if middle and rng.random() < held_out else train).append((chain[i], "prev", chain[i - 1]))
    n = num_chains * length
    train += _random_edges(rng, n, "random", DISTRACTORS)
    return _dataset("inverse", n, ["next", "prev", "random"], train, test, rng)


def composition(seed: int = 0, *, width: int = 80, held_out: float = 0.4) -> Dataset:
    """``r1`` maps layer A one-to-one onto layer B, ``r2`` maps B onto C, and ``r3`` = r2 ∘ r1 maps A onto C.

    Train holds every r1 and r2 edge and most r3 edges (the evidence of r1(a, b) ∧ r2(b, c) ⇒ r3(a, c)); valid/test
    hold the other r3 edges, each implied only by its r1/r2 path: the bijections are random, so nothing else ties
    a to c. A model that cannot compose relation operators must memorise r3 edge by edge and cannot predict the
    held-out ones (unless it finds a clustering shortcut, see the report of bench/relation_patterns.py).
    """
    rng = np.random.default_rng(seed)
    a_layer, b_layer, c_layer = rng.permutation(3 * width).reshape(3, width).tolist()
    train: Edges = []
    test: Edges = []
    for a, b, c in zip(a_layer, b_layer, c_layer):
        train += [(a, "r1", b), (b, "r2", c)]
        (test if rng.random() < held_out else train).append((a, "r3", c))
    n = 3 * width
    train += _random_edges(rng, n, "random", DISTRACTORS)
    return _dataset("composition", n, ["r1", "r2", "r3", "random"], train, test, rng)


def one_to_n(seed: int = 0, *, num_groups: int = 8, twins: int = 3, num_members: int = 120,
             held_out: float = 0.5) -> Dataset:
    """``member`` is 1-to-N: each group has ``twins`` hubs, and every hub links to every member of its group.

    Every member also belongs to a cross group (drawn independently) through ``cross`` from a cross hub. Valid/test
    hold out (hub, member, x) edges whose twin hubs keep x in train, so the edge is implied by "twin hubs share their
    members". A model that satisfies h ∘ r = t exactly (TransE, RotatE) maps all tails of (h, r) to one point; the
    cross groups then chain every group into one, and x ties with the unfiltered members of the other groups
    (tested). The ranking metric does not ask for exactness, though: a distance model leaves
    each member its own offset from h + r and only needs the members nearer than the rest, and with unit-norm
    entities ``||q - x||^2 = |q|^2 + 1 - 2 q.x`` ranks tails exactly as a dot product does, so on one relation TransE
    ranks as expressively as DistMult. Trained TransE and RotatE pass this graph; the lecture's 1-to-N ✗ is about
    the exact equation, which this ranking test cannot isolate.
    """
    rng = np.random.default_rng(seed)
    hubs = np.arange(num_groups * twins).reshape(num_groups, twins)
    cross_hubs = num_groups * twins + np.arange(num_groups)
    first = num_groups * twins + num_groups
    n = first + num_members
    train: Edges = []
    test: Edges = []
    for x in range(first, n):
        group, cross = int(rng.integers(num_groups)), int(rng.integers(num_groups))
        hidden = int(rng.integers(twins)) if rng.random() < held_out else -1
        for k, hub in enumerate(hubs[group].tolist()):
            (test if k == hidden else train).append((hub, "member", x))
        train.append((int(cross_hubs[cross]), "cross", x))
    return _dataset("one_to_n", n, ["member", "cross"], train, test, rng)


PATTERNS: dict[str, Callable[..., Dataset]] = {
    "symmetric": symmetric, "antisymmetric": antisymmetric, "inverse": inverse, "composition": composition,
    "one_to_n": one_to_n,
}


def implied(pattern: str, hrt: torch.Tensor, relations: Vocabulary) -> set[tuple[int, int, int]]:
    """All triples the ``pattern`` implies from the triples ``hrt``, by brute force over the pattern's relations.

    ``antisymmetric`` and ``one_to_n`` imply by their structure: a forward edge between consecutive layers (two
    entities are in the same layer when they share a successor or a predecessor), and a member shared by twin hubs
    (hubs sharing any member share all).
    """
    rel = {str(label): i for i, label in enumerate(relations.labels)}
    edges = {(h, r, t) for h, r, t in hrt.tolist()}

    def pairs(name: str) -> set[tuple[int, int]]:
        return {(h, t) for h, r, t in edges if r == rel[name]}

    if pattern == "symmetric":
        return {(t, rel["partner"], h) for h, t in pairs("partner")}
    if pattern == "inverse":
        return {(t, rel["prev"], h) for h, t in pairs("next")} | {(t, rel["next"], h) for h, t in pairs("prev")}
    if pattern == "composition":
        r2 = pairs("r2")
        return {(a, rel["r3"], c) for a, b in pairs("r1") for b2, c in r2 if b == b2}
    name = {"antisymmetric": "before", "one_to_n": "member"}[pattern]
    forward = pairs(name)
    out = {(h, rel[name], t) for h, t in forward}
    # a head's tails are shared by any head with a common tail (same layer / twin hubs): close under that relation
    tails: dict[int, set[int]] = {}
    for h, t in forward:
        tails.setdefault(h, set()).add(t)
    for h1, s1 in tails.items():
        for s2 in tails.values():
            if s1 & s2:
                out |= {(h1, rel[name], t) for t in s2}
    return out
