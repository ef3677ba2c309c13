"""A seeded graph with a confidence on every edge, where the confidence tells true facts from noise.

``noisy_confidences`` draws a hidden bilinear model (entity vectors, one matrix per relation); each head's true
tails under a relation are the ones it scores highest. Every true edge gets a high confidence; the training split
also holds random *noise* edges with low confidences, as an automatically extracted graph (NELL, ConceptNet, PPI
predictions: NL27K, CN15K, PPI5K) holds wrong facts its extractor was unsure of. Valid and test hold out true edges
and fresh noise edges, so the test triples of highest confidence are facts a model can infer, and those of lowest
confidence are noise it should not rank high (AmpliGraph evaluates FocusE on those two ends of the test split).

A model that reads the confidences can learn the true structure and discount the noise; one that does not fits the
noise as if it were fact. It is the fixture of the FocusE benchmark and tests: small enough to train in seconds.
"""

from __future__ import annotations

import numpy as np
import torch

from kgem.data.dataset import Dataset
from kgem.data.triples import Triples
from kgem.data.vocab import Vocabulary


def noisy_confidences(seed: int = 0, *, num_entities: int = 300, num_relations: int = 6, rank: int = 6,
                      tails: int = 4, noise: float = 0.5, held_out: float = 0.2) -> Dataset:
    """``num_entities`` entities; under each of ``num_relations`` relations every entity's ``tails`` best tails
    under a hidden rank-``rank`` bilinear model are true. ``noise`` random non-true edges per true edge join the
    graph with confidences in [0, 0.4); true edges have confidences in [0.6, 1]. A share ``held_out`` of the true
    edges, and as many fresh noise edges per split as it has true ones times ``noise``, form valid (a quarter) and
    test (the rest); every entity and relation keeps a training edge."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(num_entities, rank))
    matrices = rng.normal(size=(num_relations, rank, rank))
    scores = np.einsum("hi,rij,tj->rht", vectors, matrices, vectors)
    scores[:, np.arange(num_entities), np.arange(num_entities)] = -np.inf  # no self-loops
    best = np.argsort(-scores, axis=2)[:, :, :tails]
    true = np.stack(np.broadcast_arrays(np.arange(num_entities)[None, :, None], np.arange(num_relations)[:, None, None],
                                        best), -1).reshape(-1, 3)[:, [0, 1, 2]]
    true = np.unique(true, axis=0)
    held = _held_out(rng, true, held_out)
    taken = {tuple(row) for row in true.tolist()}
    splits = {}
    for name, rows in (("train", true[~held]), ("valid", None), ("test", None)):
        if rows is None:
            picked = np.flatnonzero(held)
            cut = len(picked) // 4
            rows = true[picked[:cut]] if name == "valid" else true[picked[cut:]]
        fake = _noise_edges(rng, round(noise * len(rows)), num_entities, num_relations, taken)
        values = np.r_[rng.uniform(0.6, 1.0, len(rows)), rng.uniform(0.0, 0.4, len(fake))]
        splits[name] = (np.concatenate([rows, fake]), values)
    entities = Vocabulary([f"e{i:03d}" for i in range(num_entities)], kind="entity")
    relations = Vocabulary([f"r{i}" for i in range(num_relations)], kind="relation")
    made = {name: Triples(torch.from_numpy(hrt[:, [0, 1, 2]].astype(np.int64)), entities, relations,
                          f"noisy_confidences/{name}", weights=torch.from_numpy(values.astype(np.float32)))
            for name, (hrt, values) in splits.items()}
    return Dataset(made["train"], made["valid"], made["test"], name="noisy_confidences")


def _held_out(rng: np.random.Generator, true: np.ndarray, share: float) -> np.ndarray:
    """A mask of about ``share`` of the true edges, never an entity's or relation's last training edge."""
    held = np.zeros(len(true), dtype=bool)
    left_entity = np.bincount(true[:, [0, 2]].ravel(), minlength=int(true[:, [0, 2]].max()) + 1)
    left_relation = np.bincount(true[:, 1])
    for i in rng.permutation(len(true))[: round(share * len(true))]:
        h, r, t = true[i]
        if left_entity[h] > 1 and left_entity[t] > 1 and left_relation[r] > 1:
            held[i] = True
            left_entity[h] -= 1
            left_entity[t] -= 1
            left_relation[r] -= 1
    return held


def _noise_edges(rng: np.random.Generator, count: int, num_entities: int, num_relations: int,
                 taken: set[tuple[int, int, int]]) -> np.ndarray:
    """``count`` distinct random edges without self-loops, none of them in ``taken`` (which they join)."""
    rows: list[tuple[int, int, int]] = []
    while len(rows) < count:
        h, t = (int(x) for x in rng.integers(num_entities, size=2))
        edge = (h, int(rng.integers(num_relations)), t)
        if h != t and edge not in taken:
            taken.add(edge)
            rows.append(edge)
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)
