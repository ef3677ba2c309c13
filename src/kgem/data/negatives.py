"""Negatives given with a split: for each of its triples, the entities its head and its tail are ranked against
instead of every entity (OGB's ``head_neg`` / ``tail_neg``, ``kgem.data.ogb``).

They lie beside the split files as ``<split>.negatives.safetensors``: two ``(n, K)`` integer tensors ``head`` and
``tail`` of entity ids of the folder's vocabulary, row ``i`` for the split's triple ``i``. ``Dataset.from_folder``
opens them memory-mapped (``kgem.data.tensorfile``: raw bytes, nothing in the file is run), so the rows are paged in
as evaluation reads them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kgem.data.tensorfile import map_tensors, save_tensors
from kgem.data.triples import Triples, triple_keys
from kgem.errors import DataError, EvaluationError

SUFFIX = ".negatives.safetensors"
SIDES = ("head", "tail")


@dataclass(frozen=True)
class GivenNegatives:
    """The given negatives of one split: ``head`` and ``tail`` ``(n, K)`` entity ids, row ``i`` for the triple
    ``hrt[i]`` (``(n, 3)``, the split's triples in the same ids). ``source`` names them in errors."""

    hrt: torch.Tensor
    head: torch.Tensor
    tail: torch.Tensor
    source: str = "<memory>"

    def __post_init__(self) -> None:
        for side in SIDES:
            ids = getattr(self, side)
            if ids.ndim != 2 or len(ids) != len(self.hrt) or ids.is_floating_point() or ids.dtype == torch.bool:
                raise DataError(f"{self.source}: {side} negatives must be ({len(self.hrt)}, K) integer ids, one row "
                                f"per triple; got {ids.dtype} {tuple(ids.shape)}")

    def __len__(self) -> int:
        return len(self.hrt)

    def rows_for(self, hrt: torch.Tensor) -> torch.Tensor | None:
        """Each triple's row of negatives: None when ``hrt`` is the split itself, in order (the rows are the
        triples'), else the row of the first equal triple of the split; a triple the split lacks is an
        EvaluationError."""
        hrt = hrt.cpu().long()
        if hrt.shape == self.hrt.shape and torch.equal(hrt, self.hrt.long()):
            return None
        both = torch.cat([self.hrt.long(), hrt])
        limits = both.max(0).values.tolist() if len(both) else [0, 0, 0]
        keys = triple_keys(both, max(limits[0], limits[2]) + 1, limits[1] + 1)
        own, asked = keys[: len(self.hrt)], keys[len(self.hrt) :]
        order = torch.argsort(own, stable=True)
        ordered = own[order]
        at = torch.searchsorted(ordered, asked).clamp(max=max(len(ordered) - 1, 0))
        found = ordered[at] == asked if len(ordered) else torch.zeros(len(asked), dtype=torch.bool)
        if not bool(found.all()):
            first = hrt[int(torch.nonzero(~found)[0, 0])].tolist()
            raise EvaluationError(f"{self.source}: {int((~found).sum())} of the {len(hrt)} triples to rank have no "
                                  f"given negatives (the first: {first}); rank the split they were given with")
        return order[at]

    def translated(self, entity_map: np.ndarray, relation_map: np.ndarray) -> GivenNegatives:
        """The negatives in other ids (a model trained with other vocabularies): ``entity_map[old id]`` is the new
        id or -1 for a label the model lacks. Triples naming one are left out, as ``LoadedModel.encode`` leaves them
        out; a negative naming one is a DataError (the model cannot score it)."""
        entities, relations = torch.from_numpy(entity_map).long(), torch.from_numpy(relation_map).long()
        hrt = torch.stack([entities[self.hrt[:, 0]], relations[self.hrt[:, 1]], entities[self.hrt[:, 2]]], 1)
        kept = (hrt >= 0).all(1)
        head, tail = entities[self.head[kept].long()], entities[self.tail[kept].long()]
        unknown = int((head < 0).sum() + (tail < 0).sum())
        if unknown:
            raise DataError(f"{self.source}: {unknown} given negatives name entities the model does not know; "
                            f"evaluate a model trained on this dataset")
        return GivenNegatives(hrt[kept], head, tail, self.source)


def negatives_path(folder: str | os.PathLike[str], split: str) -> Path:
    return Path(folder) / f"{split}{SUFFIX}"


def save_negatives(folder: str | os.PathLike[str], split: str, head: torch.Tensor, tail: torch.Tensor) -> Path:
    """Write a split's negatives beside its file: int32 ids where they fit (half the size of int64), else int64."""
    small = all(not ids.numel() or int(ids.max()) < 2**31 for ids in (head, tail))
    dtype = torch.int32 if small else torch.int64
    path = negatives_path(folder, split)
    save_tensors({"head": head.to(dtype).contiguous(), "tail": tail.to(dtype).contiguous()}, path,
                 metadata={"format": "kgem-given-negatives", "split": split})
    return path


def read_negatives(folder: str | os.PathLike[str], splits: Mapping[str, Triples]) -> dict[str, GivenNegatives]:
    """The given negatives of each split in ``splits`` that has a ``<split>.negatives.safetensors`` in ``folder``,
    memory-mapped; a file that does not hold one ``(n, K)`` row per triple of its split is a DataError naming it."""
    found = {}
    for split, triples in splits.items():
        path = negatives_path(folder, split)
        if not path.is_file():
            continue
        try:
            tensors = map_tensors(path)
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: not a readable safetensors file: {e}") from e
        missing = [side for side in SIDES if side not in tensors]
        if missing:
            raise DataError(f"{path}: no {missing[0]!r} tensor (it holds {sorted(tensors)})")
        found[split] = GivenNegatives(triples.hrt, tensors["head"], tensors["tail"], str(path))
    return found
