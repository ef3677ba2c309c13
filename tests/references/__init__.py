"""Per-family model references for the registry harness (tests/test_models.py) and the learning test
(tests/test_learning.py). One module per module of ``kgem.models``; adding a model adds one row to each table.

``REFERENCE``: name -> list of (interaction arguments, naive formula on one triple's rows). The formula gets the
raw rows the interaction sees for h, r, t (1-D tensors; complex for complex kinds) and the interaction itself (for
its own parameters, e.g. a core tensor), and returns a float, written as plainly as possible (Python loops over
coordinates), never by calling the interaction.

``RECIPES``: name -> (interaction arguments, approach "slcwa" | "1vsall", loss name, loss arguments[, options]) for
training on UMLS in tests/test_learning.py; the optional ``options`` dict overrides ``DEFAULTS`` there (dim, lr,
epochs, batch_size, num_negatives, and the pass marks min_mrr / min_ratio, lowered only for a model that cannot
reach them by design, e.g. UM, which ignores the relation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Formula = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.nn.Module], float]
References = dict[str, list[tuple[dict[str, Any], Formula]]]
Recipes = dict[str, tuple[Any, ...]]


def merged(*tables: dict[str, Any]) -> dict[str, Any]:
    """Union of per-family tables; a name in two families is a mistake."""
    out: dict[str, Any] = {}
    for table in tables:
        clash = set(out) & set(table)
        assert not clash, f"models registered in two reference tables: {clash}"
        out.update(table)
    return out
