"""Graph statistics: relation categories (1-1 / 1-N / N-1 / N-N) and degree summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

CATEGORIES = ("1-1", "1-N", "N-1", "N-N")


def _mean_group_size(keys: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """For each group g: the mean number of rows per distinct key within g."""
    pairs, counts = torch.unique(torch.stack([groups, keys], 1), dim=0, return_counts=True)
    total = torch.zeros(num_groups).index_add_(0, pairs[:, 0], counts.float())
    distinct = torch.zeros(num_groups).index_add_(0, pairs[:, 0], torch.ones(len(pairs)))
    return total / distinct.clamp(min=1)


def relation_categories(hrt: torch.Tensor, num_relations: int, threshold: float = 1.5) -> np.ndarray:
    """Category of each relation (Bordes et al. 2013): tails per head and heads per tail against ``threshold``."""
    hrt = torch.unique(hrt, dim=0)
    h, r, t = hrt.unbind(1)
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
