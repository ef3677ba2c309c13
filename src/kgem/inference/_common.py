"""Shared plumbing of the inference helpers: eval mode, devices, label tables in.

Scores are found by the entity scan (``kgem.models.scan``) and reduced by its running top-k, within one memory
budget: ``memory_budget_bytes`` (default ``kgem.models.scan.DEFAULT_MEMORY_BUDGET``, as evaluation's)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from kgem.circuits.model import AnyModel
from kgem.data.vocab import Vocabulary
from kgem.errors import DataError
from kgem.evaluation.evaluator import eval_mode, model_device

Queries = Sequence[Sequence[str]] | pd.DataFrame


inference = eval_mode  # model.eval() + no_grad, the previous mode restored after
device_of = model_device


def check_vocab(model: AnyModel, entities: Vocabulary | None, relations: Vocabulary | None) -> None:
    """The vocabularies must have one label per row of the model's (forward) tables."""
    if entities is not None and len(entities) != model.num_entities:
        raise DataError(f"entity vocabulary has {len(entities)} labels, the model {model.num_entities} entities")
    if relations is not None and len(relations) != model.num_relations:
        raise DataError(f"relation vocabulary has {len(relations)} labels, the model {model.num_relations} relations")


def label_columns(rows: Queries, names: Sequence[str]) -> list[np.ndarray]:
    """Columns ``names`` of a DataFrame, or of a list of label tuples, as object arrays."""
    if isinstance(rows, pd.DataFrame):
        missing = [n for n in names if n not in rows.columns]
        if missing:
            raise DataError(f"expected columns {list(names)}, missing {missing} (got {list(rows.columns)})")
        return [rows[n].to_numpy(dtype=object) for n in names]
    table = np.asarray(list(rows), dtype=object)
    if len(table) == 0:
        table = table.reshape(0, len(names))
    if table.ndim != 2 or table.shape[1] != len(names):
        raise DataError(f"expected a list of ({', '.join(names)}) label tuples")
    return [table[:, j] for j in range(len(names))]


def to_ids(vocab: Vocabulary, labels: Sequence[str] | np.ndarray, device: torch.device) -> torch.Tensor:
    """Ids of labels on ``device``; an unknown label raises DataError with close matches."""
    return torch.as_tensor(vocab.ids(labels), dtype=torch.int64, device=device)


def check_k(k: int) -> None:
    if k < 1:
        raise DataError(f"k must be at least 1, got {k}")
