"""Checkpoints that resume exactly: model, optimizer, scheduler, RNG states, epoch, history, early stopping.

A checkpoint is a folder ``epoch-NNNNNN`` (or ``epoch-NNNNNN-batch-NNNNNNNNN`` when a signal stopped the next
epoch part-way; names sort in training order) with ``state.json`` (scalars) and ``tensors.safetensors`` (every tensor,
flattened to string keys) — no pickle. Folders are written under a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from kgem.atomic import atomic_dir, chmod_as_created
from kgem.data.tensorfile import save_tensors
from kgem.errors import CheckpointError


def flatten(prefix: str, value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor inside nested dicts/lists into ``tensors`` and leave a ``{"__tensor__": key}`` marker."""
    if isinstance(value, torch.Tensor):
        tensors[prefix] = value.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(value, dict):
        return {"__dict__": [[k, flatten(f"{prefix}/{k}", v, tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [flatten(f"{prefix}/{i}", v, tensors) for i, v in enumerate(value)]
    return value


def unflatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of ``flatten`` (dict keys keep their types: optimizer states are keyed by int)."""
    if isinstance(value, dict) and "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if isinstance(value, dict) and "__dict__" in value:
        return {k: unflatten(v, tensors) for k, v in value["__dict__"]}
    if isinstance(value, list):
        return [unflatten(v, tensors) for v in value]
    return value


class Checkpoints:
    """Checkpoints in ``directory`` every ``every`` epochs, keeping the ``keep`` newest."""

    def __init__(self, directory: str | os.PathLike[str], every: int = 1, keep: int = 2) -> None:
        self.directory, self.every, self.keep = Path(directory), every, max(keep, 2)

    def all(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.is_dir() and p.name.startswith("epoch-"))

    def save(self, state: dict[str, Any]) -> Path:
        tensors: dict[str, torch.Tensor] = {}
        scalars = flatten("state", state, tensors)
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{state['epoch']:06d}"  # epochs completed; a mid-epoch one also names the batches done after
        if state.get("partial"):
            name += f"-batch-{state['partial']['batches']:09d}"
        final = self.directory / name
        with atomic_dir(final) as staging:
            save_tensors(tensors, staging / "tensors.safetensors")
            chmod_as_created(staging / "tensors.safetensors")
            (staging / "state.json").write_text(json.dumps(scalars), encoding="utf-8")
        for old in self.all()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load(self, path: Path) -> dict[str, Any]:
        try:
            tensors = load_file(str(path / "tensors.safetensors"))
            scalars = json.loads((path / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, SafetensorError) as e:
            raise CheckpointError(f"checkpoint {path} is corrupt or incomplete: {e}") from e
        try:
            return dict(unflatten(scalars, tensors))
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"checkpoint {path} is corrupt: missing {e}") from e

    def load_latest(self, fallback: bool = False) -> dict[str, Any] | None:
        """The newest checkpoint's state (None if there is none). A corrupt newest one is an error naming it,
        unless ``fallback``, which then takes the one before."""
        found = self.latest(fallback)
        return found[1] if found is not None else None

    def latest(self, fallback: bool = False) -> tuple[Path, dict[str, Any]] | None:
        """``load_latest`` with the folder the state came from (for errors that name it)."""
        found = self.all()
        for i, path in enumerate(reversed(found)):
            try:
                return path, self.load(path)
            except CheckpointError:
                if not fallback or i == len(found) - 1:
                    raise
        return None
