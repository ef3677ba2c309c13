"""Graph statistics: relation categories (1-1 / 1-N / N-1 / N-N) and degree summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from kgem.ops.pages import release_rows

CATEGORIES = ("1-1", "1-N", "N-1", "N-N")


def _mean_group_size(keys: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """For each group g: the mean number of rows per distinct key within g."""
    pairs, counts = torch.unique(torch.stack([groups, keys], 1), dim=0, return_counts=True)
    total = torch.zeros(num_groups).index_add_(0, pairs[:, 0], counts.float())
    distinct = torch.zeros(num_groups).index_add_(0, pairs[:, 0], torch.ones(len(pairs)))
    return total / distinct.clamp(min=1)


LARGE_ROWS = 1 << 22  # triples from which the categories are counted in bounded memory (``_blocked_group_size``)


def _blocked_group_size(hrt: torch.Tensor, column: int, num_relations: int, block: int = 1 << 22) -> torch.Tensor:
    """For each relation, the triples per distinct entity in ``column`` (0: heads, 2: tails): the keys
    ``entity * num_relations + relation`` in one int64 array, sorted in place, counted a block at a time."""
    keys = np.empty(len(hrt), dtype=np.int64)
    total = np.zeros(num_relations, dtype=np.int64)
    for start in range(0, len(hrt), block):
        rows = hrt[start : start + block].numpy()
        keys[start : start + block] = rows[:, column] * num_relations + rows[:, 1]
        total += np.bincount(rows[:, 1], minlength=num_relations)
        release_rows(hrt, start, start + block)
    keys.sort()
    distinct = np.zeros(num_relations, dtype=np.int64)
    for start in range(0, len(keys), block):
        part = keys[start : start + block + 1]  # one key past the block: where the block's last run ends
        first = part[:-1][part[:-1] != part[1:]] if len(part) > 1 else part[:0]
        if start + block >= len(keys):
            first = np.append(first, part[-1])
        distinct += np.bincount(first % num_relations, minlength=num_relations)
    return torch.from_numpy(total / np.maximum(distinct, 1)).float()


def relation_categories(hrt: torch.Tensor, num_relations: int, threshold: float = 1.5) -> np.ndarray:
    """Category of each relation (Bordes et al. 2013): tails per head and heads per tail against ``threshold``.

    Duplicate triples count once; from ``LARGE_ROWS`` triples on (the exact count's ``unique`` over rows needs
    some 250 bytes a triple), the counts go a block at a time with one sorted array of keys (8 bytes a triple),
    and a duplicate counts as often as it occurs."""
    if len(hrt) >= LARGE_ROWS:
        tails_per_head = _blocked_group_size(hrt, 0, num_relations)
        heads_per_tail = _blocked_group_size(hrt, 2, num_relations)
    else:
        h, r, t = torch.unique(hrt, dim=0).unbind(1)
        tails_per_head = _mean_group_size(h, r, num_relations)
        heads_per_tail = _mean_group_size(t, r, num_relations)
    many_tails = (tails_per_head >= threshold).numpy()
    many_heads = (heads_per_tail >= threshold).numpy()
    index = many_heads.astype(int) * 2 + many_tails.astype(int)  # 0: 1-1, 1: 1-N, 2: N-1, 3: N-N
    return np.asarray(CATEGORIES, dtype=object)[index]


def degree_stats(hrt: torch.Tensor, num_entities: int) -> pd.DataFrame:
    """Mean, median, max and zero counts of out-, in- and total degree of the entities."""
    out_deg = torch.bincount(hrt[:, 0], minlength=num_entities).numpy()
    in_deg = torch.bincount(hrt[:, 2], minlength=num_entities).numpy()
    rows = {}
    for name, deg in (("out", out_deg), ("in", in_deg), ("total", out_deg + in_deg)):
        rows[name] = {"mean": float(deg.mean()), "median": float(np.median(deg)), "max": int(deg.max()),
                      "zero": int((deg == 0).sum())}
    return pd.DataFrame(rows).T


def corruption_probabilities(hrt: torch.Tensor, num_relations: int) -> np.ndarray:
    """Per relation, the Bernoulli probability of corrupting the head: ``tph / (tph + hpt)`` (Wang et al. 2014)."""
    hrt = torch.unique(hrt, dim=0)
    h, r, t = hrt.unbind(1)
    tph = _mean_group_size(h, r, num_relations)
    hpt = _mean_group_size(t, r, num_relations)
    return (tph / (tph + hpt).clamp_min(1e-12)).numpy()
