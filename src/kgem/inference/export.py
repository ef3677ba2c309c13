"""Export embeddings as NumPy arrays, label lists and TensorBoard projector files, or as Parquet tables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from kgem.atomic import atomic_write
from kgem.data.parquet import write_embeddings
from kgem.data.triples import INVERSE_SUFFIX
from kgem.data.vocab import Vocabulary
from kgem.errors import DataError
from kgem.inference._common import check_vocab, inference
from kgem.inference.similarity import as_real
from kgem.models.model import Model

PROJECTOR_CONFIG = """embeddings {{
  tensor_name: "{name}"
  tensor_path: "{name}.tsv"
  metadata_path: "{name}_meta.tsv"
}}
"""


def export_embeddings(model: Model, entities: Vocabulary, relations: Vocabulary,
                      directory: str | os.PathLike[str], *,
                      format: Literal["npy", "parquet"] = "npy") -> dict[str, Path]:  # noqa: A002 - kgem export --format
    """Write the embeddings the model scores with (after its normalisation or rotation transform) to ``directory``:

    - ``entity_embeddings.npy``, ``relation_embeddings.npy``: float32 ``(n, d)``; complex rows as interleaved
      (re, im) reals, so ``2 * dim`` columns;
    - ``entities.tsv``, ``relations.tsv``: the labels, one per line, row ``i`` of the array = line ``i``;
    - ``projector/``: ``entities.tsv`` / ``relations.tsv`` (vectors, tab-separated), ``*_meta.tsv`` (labels) and
      ``projector_config.pbtxt`` for the TensorBoard embedding projector.

    A model with reciprocal relations (``inverse=True``) exports all its relation rows; the reciprocal ones are
    labelled ``<label>__inverse``. Every file is written atomically. Returns the written paths by file name.

    ``format="parquet"`` writes ``entities.parquet`` and ``relations.parquet`` instead: one row per entity
    (relation) with its ``id``, ``label`` and ``embedding`` (a fixed-size list of float32; ``kgem.data.parquet``).
    """
    if format not in ("npy", "parquet"):
        raise DataError(f"export format must be 'npy' or 'parquet', got {format!r}")
    check_vocab(model, entities, relations)
    root = Path(directory)
    relation_labels = [str(x) for x in relations.labels]
    if model.inverse:
        relation_labels += [label + INVERSE_SUFFIX for label in relation_labels]
    with inference(model):
        tables = {"entities": _numpy(model.entity(None)), "relations": _numpy(model.relation(None))}
    labels = {"entities": [str(x) for x in entities.labels], "relations": relation_labels}
    if format == "parquet":
        return {f"{name}.parquet": write_embeddings(root / f"{name}.parquet", labels[name], tables[name])
                for name in ("entities", "relations")}
    written: dict[str, Path] = {}
    for name, singular in (("entities", "entity"), ("relations", "relation")):
        _check_labels(labels[name], name)
        written[f"{singular}_embeddings.npy"] = _write_npy(root / f"{singular}_embeddings.npy", tables[name])
        written[f"{name}.tsv"] = _write_lines(root / f"{name}.tsv", labels[name])
        written[f"projector/{name}.tsv"] = _write_vectors(root / "projector" / f"{name}.tsv", tables[name])
        written[f"projector/{name}_meta.tsv"] = _write_lines(root / "projector" / f"{name}_meta.tsv", labels[name])
    config = root / "projector" / "projector_config.pbtxt"
    with atomic_write(config) as f:
        f.write("".join(PROJECTOR_CONFIG.format(name=name) for name in ("entities", "relations")))
    written["projector/projector_config.pbtxt"] = config
    return written


def _numpy(table: torch.Tensor) -> np.ndarray:
    return as_real(table).detach().to(torch.float32).cpu().numpy()


def _check_labels(labels: list[str], name: str) -> None:
    if any(("\t" in x or "\n" in x or "\r" in x) for x in labels):
        raise DataError(f"cannot export {name} as TSV: a label contains a tab or newline")


def _write_npy(path: Path, array: np.ndarray) -> Path:
    """``np.save`` to a temporary file beside ``path``, then rename over it."""
    with atomic_write(path, "wb") as f:
        np.save(f, array)
    return path


def _write_lines(path: Path, lines: list[str]) -> Path:
    with atomic_write(path) as f:
        f.write("".join(f"{line}\n" for line in lines))
    return path


def _write_vectors(path: Path, array: np.ndarray) -> Path:
    """Tab-separated floats, one row per line; ``%.9g`` round-trips float32 exactly."""
    with atomic_write(path) as f:
        pd.DataFrame(array).to_csv(f, sep="\t", header=False, index=False, float_format="%.9g", lineterminator="\n")
    return path
