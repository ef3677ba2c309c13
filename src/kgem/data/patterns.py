"""Relation patterns mined from a graph: how far each relation is reflexive, symmetric, antisymmetric, the inverse
of another relation, or a subrelation of another (implies it).

Each pattern is a rule whose body is a triple ``(h, r, t)`` of the relation; over the relation's distinct triples:

* reflexivity ``r(x, x)``: the triple is a self-loop, ``h = t``;
* symmetry ``r(x, y) -> r(y, x)``: ``(t, r, h)`` is present too (a self-loop is its own reverse);
* antisymmetry ``r(x, y) and r(y, x) -> x = y``: ``(t, r, h)`` is absent, or ``h = t``;
* inversion ``r(x, y) -> r'(y, x)`` for the best other relation ``r'``: ``(t, r', h)`` is present;
* implication ``r(x, y) -> r'(x, y)`` for the best other relation ``r'`` (``r`` is a subrelation of ``r'``):
  ``(h, r', t)`` is present.

A pattern's support is the number of the relation's triples that satisfy it, its confidence that number over the
relation's triple count (the rule-mining sense: how often the rule holds where its body does). The best ``r'``
has the highest support, the lowest id among ties.

Everything is computed with sorted integer keys and joins over (head, tail) pairs, never a Python loop per triple:
a triple meets the relations of its own pair (implication) and of its reversed pair (symmetry, inversion).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from kgem.data.stats import relation_categories
from kgem.data.types import check_ids
from kgem.errors import DataError

PATTERNS = ("reflexivity", "symmetry", "antisymmetry", "inversion", "implication")
ANY_ENTITY = np.iinfo(np.int64).max  # the entity count of the id check: any id from 0 up


def _pair_ids(h: np.ndarray, t: np.ndarray, num_entities: int) -> tuple[np.ndarray, np.ndarray]:
    """``(pair id of each (h, t), pair id of each (t, h) or -1 where that pair has no triple)``; pair ids index the
    sorted distinct pairs."""
    keys = h * num_entities + t
    pairs, own = np.unique(keys, return_inverse=True)
    reverse_keys = t * num_entities + h
    at = np.minimum(np.searchsorted(pairs, reverse_keys), len(pairs) - 1)
    reverse = np.where(pairs[at] == reverse_keys, at, -1) if len(pairs) else reverse_keys[:0]
    return own.reshape(-1), reverse


def _partner_counts(r: np.ndarray, pair: np.ndarray, partner_pair: np.ndarray,
                    num_relations: int) -> tuple[np.ndarray, np.ndarray]:
    """For every (relation ``a``, relation ``b``): how many triples ``(h, a, t)`` meet ``b`` on their partner pair
    (a triple of relation ``b`` with pair ``partner_pair``; -1: none). Returns the distinct ``a * R + b`` codes and
    their counts: the join, each triple repeated once per relation of its partner pair."""
    order = np.argsort(pair, kind="stable")
    relations_by_pair = r[order]
    per_pair = np.bincount(pair)
    first = np.cumsum(per_pair) - per_pair
    rows = np.flatnonzero(partner_pair >= 0)
    lengths = per_pair[partner_pair[rows]]
    triple = np.repeat(rows, lengths)
    within = np.arange(len(triple)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    partner = relations_by_pair[np.repeat(first[partner_pair[rows]], lengths) + within]
    return np.unique(r[triple] * num_relations + partner, return_counts=True)


def _best_other(codes: np.ndarray, counts: np.ndarray, num_relations: int) -> tuple[np.ndarray, np.ndarray]:
    """Per relation ``a``: the relation ``b != a`` of the highest count (lowest id among ties) and that count; -1
    and 0 where no other relation meets it."""
    a, b = codes // num_relations, codes % num_relations
    other = a != b
    a, b, counts = a[other], b[other], counts[other]
    order = np.lexsort((b, -counts, a))  # by a, then the highest count, then the lowest b
    a, b, counts = a[order], b[order], counts[order]
    first = np.ones(len(a), dtype=bool)
    first[1:] = a[1:] != a[:-1]
    best, support = np.full(num_relations, -1, dtype=np.int64), np.zeros(num_relations, dtype=np.int64)
    best[a[first]], support[a[first]] = b[first], counts[first]
    return best, support


def relation_patterns(hrt: torch.Tensor, num_relations: int,
                      relation_labels: Sequence[str] | np.ndarray | None = None) -> pd.DataFrame:
    """One row per relation (labelled if ``relation_labels`` are given, else its id): ``count`` (distinct
    triples), ``category`` (1-1 / 1-N / N-1 / N-N, ``relation_categories``), then for each pattern of the module
    docstring its confidence (NaN for a relation without triples) and ``<pattern>_support``; ``inverse`` and
    ``implies`` name the best other relation of inversion and implication (None where no other relation fits).

    Duplicate triples count once."""
    hrt = check_ids(hrt, ANY_ENTITY, num_relations)
    if relation_labels is not None and len(relation_labels) != num_relations:
        raise DataError(f"{len(relation_labels)} relation labels for {num_relations} relations")
    h, r, t = torch.unique(hrt, dim=0).numpy().T
    num_entities = int(max(h.max(), t.max())) + 1 if len(h) else 0
    count = np.bincount(r, minlength=num_relations)
    pair, reverse = _pair_ids(h, t, num_entities)
    reverse_codes, reverse_counts = _partner_counts(r, pair, reverse, num_relations)
    own_codes, own_counts = _partner_counts(r, pair, pair, num_relations)
    symmetric = np.zeros(num_relations, dtype=np.int64)
    diagonal = reverse_codes // num_relations == reverse_codes % num_relations
    symmetric[reverse_codes[diagonal] // num_relations] = reverse_counts[diagonal]
    loops = np.bincount(r[h == t], minlength=num_relations)
    inverse, inverse_support = _best_other(reverse_codes, reverse_counts, num_relations)
    implies, implied_support = _best_other(own_codes, own_counts, num_relations)
    support = {"reflexivity": loops, "symmetry": symmetric, "antisymmetry": count - symmetric + loops,
               "inversion": inverse_support, "implication": implied_support}
    labels = list(relation_labels) if relation_labels is not None else list(range(num_relations))
    frame = pd.DataFrame({"count": count, "category": relation_categories(hrt, num_relations)}, index=labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        for name in PATTERNS:
            frame[name] = support[name] / count
            frame[f"{name}_support"] = support[name]
    frame["inverse"] = [labels[i] if i >= 0 else None for i in inverse]
    frame["implies"] = [labels[i] if i >= 0 else None for i in implies]
    frame.index.name = "relation"
    return frame
