"""Split one set of facts into train / valid / test so that every entity and relation of valid and test is also
in train (otherwise those triples could not be scored).

Coverage first: after one seeded shuffle, the first triple of each head entity, each tail entity and each
relation goes to train. The remaining triples, in shuffled order, fill valid and test to their share of *all*
triples, and the rest is train. So the ratios hold exactly unless coverage alone needs more than the train share.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from kgem.errors import DataError


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """``(train, valid, test)`` from 3 fractions, or ``(train, test)`` from 2; they must sum to 1."""
    values = [float(x) for x in ratios]
    if len(values) == 2:
        values = [values[0], 0.0, values[1]]
    if len(values) != 3 or min(values) < 0 or abs(sum(values) - 1) > 1e-6 or values[0] <= 0:
        raise DataError(f"split ratios must be (train, valid, test) or (train, test) fractions summing to 1 "
                        f"with train > 0, got {list(ratios)}")
    return values[0], values[1], values[2]


def split_indices(hrt: torch.Tensor, ratios: Sequence[float] = (0.8, 0.1, 0.1), *,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row indices of ``hrt (n, 3)`` for train, valid and test (each in shuffled order)."""
    _, valid_share, test_share = check_ratios(ratios)
    n = len(hrt)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    shuffled = hrt.numpy()[order]
    forced = np.zeros(n, dtype=bool)  # positions in ``order`` that must be train
    for column in range(3):
        forced[np.unique(shuffled[:, column], return_index=True)[1]] = True
    free = np.flatnonzero(~forced)
    num_valid, num_test = round(valid_share * n), round(test_share * n)
    if num_valid + num_test > len(free):
        raise DataError(f"cannot hold out {num_valid} valid and {num_test} test triples of {n}: {int(forced.sum())} "
                        f"must stay in train so that every entity and relation appears there; lower the valid/test "
                        f"ratios")
    valid, test = free[:num_valid], free[num_valid : num_valid + num_test]
    train = np.concatenate([np.flatnonzero(forced), free[num_valid + num_test :]])
    return tuple(torch.from_numpy(order[part]) for part in (np.sort(train), valid, test))  # type: ignore[return-value]
