"""The folder of plain files that saved models (``kgem.saving``) and saved circuits (``kgem.circuits.store``) share.

Layout::

    config.json          what to rebuild, the sizes and the sha256 of the weights (its keys are the caller's)
    entities.tsv         the entity vocabulary (``Vocabulary.save``)
    relations.tsv        the relation vocabulary
    weights.safetensors  the state dict

Only JSON, the vocabulary TSV reader and safetensors read these files, none of which can run code from them. Every
problem is a one-line ``ModelFileError`` naming the file; ``what`` ("model", "circuit") names the kind of folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from kgem.atomic import atomic_dir, chmod_as_created
from kgem.data.tensorfile import map_tensors, save_tensors
from kgem.data.vocab import FileVocabulary, Vocabulary
from kgem.errors import KgemError, ModelFileError
from kgem.ops.pages import release_rows
from kgem.version import __version__

CONFIG, ENTITIES, RELATIONS, WEIGHTS = "config.json", "entities.tsv", "relations.tsv", "weights.safetensors"

SaveWeights = Callable[..., None]


def write_folder(target: Path, state: Mapping[str, torch.Tensor], entities: Vocabulary, relations: Vocabulary,
                 config: dict[str, Any], *, what: str, save_weights: SaveWeights = save_tensors) -> None:
    """Write the four files beside ``target`` and swap them in, so an interrupted save leaves the previous save in
    place; ``config["weights_sha256"]`` is filled in here. ``save_weights`` writes the safetensors file a block at a
    time (``kgem.data.tensorfile``) unless the caller passes its own reference to it (``kgem.saving`` does, so it
    can be replaced there)."""
    check_target(target, what)
    with atomic_dir(target) as tmp:
        entities.save(tmp / ENTITIES)
        relations.save(tmp / RELATIONS)
        tensors = {key: value.detach().cpu().contiguous() for key, value in state.items()}
        save_weights(tensors, str(tmp / WEIGHTS), metadata={"format": "pt"})
        chmod_as_created(tmp / WEIGHTS)
        with open(tmp / WEIGHTS, "r+b") as f:  # durable before the swap publishes it
            os.fsync(f.fileno())
        config["weights_sha256"] = sha256(tmp / WEIGHTS)
        with open(tmp / CONFIG, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())


def check_target(target: Path, what: str) -> None:
    """Refuse to replace anything that is not a saved folder: the swap deletes the old contents."""
    if target.exists() and not target.is_dir():
        raise ModelFileError(f"cannot save to {target}: it exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not (target / CONFIG).is_file():
        raise ModelFileError(f"refusing to overwrite {target}: it is not empty and is not a kgem {what} directory "
                             f"(no {CONFIG}); choose another directory or remove it")


def read_config_object(path: Path, what: str) -> dict[str, Any]:
    """config.json parsed, as a JSON object (its keys are checked by the caller)."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{path}: missing (not a kgem {what} directory?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


def check_keys(path: Path, config: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Every key of ``keys`` must be in ``config``."""
    missing = [key for key in keys if key not in config]
    if missing:
        raise ModelFileError(f"{path}: missing keys {', '.join(missing)}")


def check_format(path: Path, config: dict[str, Any], version: int, what: str) -> None:
    """The folder must be in the format ``version`` this kgem reads."""
    if config["format"] != version:
        raise ModelFileError(f"{path}: unknown format version {config['format']!r} (this kgem {__version__} reads "
                             f"version {version}; the {what} was saved by kgem {config['kgem_version']!r})")


def read_contents(root: Path, config: dict[str, Any],
                  mmap: bool = False) -> tuple[Vocabulary, Vocabulary, dict[str, torch.Tensor]]:
    """The entity and relation vocabularies and the weights (on the CPU; ``mmap``: memory-mapped, copy-on-write)
    of the folder ``root``, each checked against its checked ``config``."""
    entities = read_vocab(root / ENTITIES, "entity", config["num_entities"], lazy=mmap)
    relations = read_vocab(root / RELATIONS, "relation", config["num_relations"])
    return entities, relations, read_weights(root / WEIGHTS, config["weights_sha256"], mmap)


def read_vocab(path: Path, kind: str, expected: int, lazy: bool = False) -> Vocabulary:
    """Read one vocabulary and check its size against config.json; ``lazy``: its labels only when first used
    (``FileVocabulary``: a model loaded memory-mapped, whose labels may not fit in memory either)."""
    try:
        vocab = FileVocabulary(path, kind=kind) if lazy else Vocabulary.load(path, kind=kind)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, KgemError) as e:
        raise ModelFileError(f"{path}: unreadable {kind} vocabulary ({e})") from e
    if len(vocab) != expected:
        raise ModelFileError(f"{path}: {len(vocab)} {kind} labels but {CONFIG} says {expected}")
    return vocab


def read_weights(path: Path, expected_sha256: str, mmap: bool = False) -> dict[str, torch.Tensor]:
    """Check the weights' hash (catches truncation and edits), then parse them with safetensors (no pickle), or
    map them (``mmap``: the OS pages the rows in as they are read; ``kgem.data.tensorfile``)."""
    if not path.is_file():
        raise ModelFileError(f"{path}: missing")
    actual = sha256(path)
    if actual != expected_sha256:
        raise ModelFileError(f"{path}: sha256 {actual} does not match {CONFIG} ({expected_sha256}); "
                             f"the file is corrupt, truncated or was modified")
    try:
        return map_tensors(path) if mmap else load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"{path}: not a valid safetensors file ({e})") from e


def not_floating(dtypes: Mapping[str, torch.dtype]) -> list[str]:
    """A problem for each tensor of ``dtypes`` (all meant to be floating point) whose dtype is not."""
    return [f"{key} has dtype {dtype}, expected a floating-point dtype" for key, dtype in dtypes.items()
            if not dtype.is_floating_point]


def not_finite(weights: Mapping[str, torch.Tensor]) -> list[str]:
    """A problem for each floating-point tensor holding NaN or infinite values: no trained weight is one. Checked
    a block at a time, so a table larger than memory (loaded memory-mapped) needs no table-sized mask."""
    return [f"{key} holds NaN or infinite values" for key, value in weights.items()
            if value.dtype.is_floating_point and not _all_finite(value)]


def _all_finite(value: torch.Tensor, block: int = 1 << 22) -> bool:
    """Whether every value is finite, a block of rows at a time, a memory-mapped tensor's pages handed back after
    each block (``kgem.ops.pages``)."""
    if value.ndim == 0:
        return bool(torch.isfinite(value))
    rows = max(1, block // max(1, value[0].numel()))
    for start in range(0, value.shape[0], rows):
        finite = bool(torch.isfinite(value[start : start + rows]).all())
        release_rows(value, start, start + rows)
        if not finite:
            return False
    return True


def sha256(path: Path) -> str:
    """The file's SHA-256 as hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
