"""Saved circuits as a directory of plain files: JSON, TSV and safetensors, so loading never runs code.

Layout of a circuit directory (the same files as a saved model, with a circuit's config)::

    config.json          format version, kgem version, kind "circuit", registered name, dim, args, sizes,
                         typed (a domain-constrained circuit), extra (e.g. the pipeline config and test
                         metrics), sha256 of the weights
    entities.tsv         the entity vocabulary (``Vocabulary.save``)
    relations.tsv        the relation vocabulary
    weights.safetensors  ``circuit.state_dict()``; a typed circuit's also holds its boolean masks
                         ``allowed_heads`` and ``allowed_tails`` (relations x entities)

``load_circuit`` rebuilds the circuit with ``build_circuit(name, num_entities, num_relations, dim, **args)`` (for a
typed circuit: wrapped in ``TypedSquared`` with the saved masks as its ``DomainConstraints``) and assigns the saved
tensors, keeping their dtype (a circuit trained in float64 stays float64). Every file is checked
and a problem is a one-line ``ModelFileError`` naming the file. The non-negative circuits draw their initial
tables from a Dirichlet, which the meta device cannot do, so rebuilding allocates the tables once on the CPU (under
a forked RNG, so loading leaves torch's global random state alone) before the saved ones replace them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kgem.circuits.base import Circuit
from kgem.circuits.registry import CIRCUITS, build_circuit
from kgem.circuits.squared import SquaredCircuit
from kgem.circuits.typed import TypedSquared
from kgem.data import files
from kgem.data.files import CONFIG, WEIGHTS
from kgem.data.files import sha256 as _sha256  # noqa: F401 (the tests recompute a tampered file's hash with it)
from kgem.data.types import DomainConstraints
from kgem.data.vocab import Vocabulary
from kgem.errors import KgemError, ModelFileError
from kgem.models.model import state_mismatch
from kgem.version import __version__

FORMAT_VERSION = 1
KIND = "circuit"
CONFIG_KEYS = ("format", "kgem_version", "kind", "name", "dim", "args", "num_entities", "num_relations", "typed",
               "extra", "weights_sha256")
MASKS = ("allowed_heads", "allowed_tails")  # a typed circuit's constraints, saved with its weights
BUILD_ERRORS = (KgemError, TypeError, ValueError, RuntimeError)


@dataclass(frozen=True)
class LoadedCircuit:
    """What ``load_circuit`` returns: the circuit (in eval mode), its vocabularies and the saved config."""

    circuit: Circuit
    entities: Vocabulary
    relations: Vocabulary
    name: str
    args: dict[str, Any]
    config: dict[str, Any]


def save_circuit(circuit: Circuit, directory: str | os.PathLike[str], *, name: str, args: dict[str, Any],
                 entities: Vocabulary, relations: Vocabulary, extra: dict[str, Any] | None = None) -> Path:
    """Save ``circuit`` so that ``load_circuit(directory)`` rebuilds it as ``build_circuit(name, ..., **args)``
    and restores its tensors; ``extra`` is any JSON object kept with it (a run saves its config and metrics). A
    ``TypedSquared`` is saved under its base circuit's ``name`` and ``args``, with its constraint masks.

    ``name`` and ``args`` are checked against ``circuit`` now (same class, same tensor shapes), so a wrong
    description fails at save time rather than when the circuit is loaded later. The directory is written beside
    the target and swapped in, so an interrupted save leaves the previous save in place.
    """
    target = Path(directory)
    where = f"cannot save to {target}"
    if not isinstance(circuit, Circuit):
        raise ModelFileError(f"{where}: expected a kgem Circuit, got {type(circuit).__name__}")
    dim = getattr(circuit, "dim", None)
    config = {"format": FORMAT_VERSION, "kgem_version": __version__, "kind": KIND, "name": name, "dim": dim,
              "args": args, "num_entities": circuit.num_entities, "num_relations": circuit.num_relations,
              "typed": isinstance(circuit, TypedSquared), "extra": {} if extra is None else extra,
              "weights_sha256": ""}
    _check_fields(config, where)
    _check_vocabularies(circuit, entities, relations, where)
    _check_rebuilds(circuit, config, where)
    try:
        json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{where}: args and extra must be JSON-serialisable ({e})") from e
    files.write_folder(target, circuit.state_dict(), entities, relations, config, what=KIND)
    return target


def _check_vocabularies(circuit: Circuit, entities: Any, relations: Any, where: str) -> None:
    for kind, vocab, size in (("entity", entities, circuit.num_entities),
                              ("relation", relations, circuit.num_relations)):
        if not isinstance(vocab, Vocabulary):
            raise ModelFileError(f"{where}: the {kind} vocabulary must be a kgem Vocabulary, got "
                                 f"{type(vocab).__name__}")
        if len(vocab) != size:
            raise ModelFileError(f"{where}: the {kind} vocabulary has {len(vocab)} labels, the circuit {size}")


def _check_rebuilds(circuit: Circuit, config: dict[str, Any], where: str) -> None:
    """``name`` must be the circuit's class and ``args`` must rebuild its tensors, or the save would load as a
    different circuit (or not at all)."""
    cls = CIRCUITS.get(config["name"])
    base = circuit.base if isinstance(circuit, TypedSquared) else circuit
    if type(base) is not cls:
        raise ModelFileError(f"{where}: circuit {config['name']!r} is {cls.__name__}, the circuit is "
                             f"{type(base).__name__}")
    rebuilt = _build(config, where, _constraints(circuit.state_dict()) if config["typed"] else None)
    problem = state_mismatch(rebuilt, circuit.state_dict())
    if problem:
        raise ModelFileError(f"{where}: args {config['args']!r} do not describe this circuit ({problem})")


def load_circuit(directory: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> LoadedCircuit:
    """Load a directory written by ``save_circuit``, checking every file; the circuit is returned in eval mode, on
    ``device``. Only JSON, the vocabulary TSV reader and safetensors read the files, none of which can run code."""
    root = Path(directory)
    if not root.is_dir():
        raise ModelFileError(f"circuit directory {root} does not exist")
    config = _read_config(root / CONFIG)
    entities, relations, weights = files.read_contents(root, config)
    circuit = _rebuild(config, weights, root).to(device)
    circuit.eval()
    return LoadedCircuit(circuit, entities, relations, config["name"], config["args"], config)


def _read_config(path: Path) -> dict[str, Any]:
    """Parse and type-check config.json, so later steps can trust its fields."""
    config = files.read_config_object(path, KIND)
    if "spec" in config and "kind" not in config:
        raise ModelFileError(f"{path}: a saved kgem model, not a circuit (use it with kgem predict or load_model)")
    files.check_keys(path, config, CONFIG_KEYS)
    if config["kind"] != KIND:
        raise ModelFileError(f"{path}: kind must be {KIND!r}, got {config['kind']!r}")
    files.check_format(path, config, FORMAT_VERSION, KIND)
    _check_fields(config, str(path))
    if not isinstance(config["weights_sha256"], str):
        raise ModelFileError(f"{path}: weights_sha256 must be a string, got {config['weights_sha256']!r}")
    if not isinstance(config["extra"], dict):
        raise ModelFileError(f"{path}: extra must be an object, got {config['extra']!r}")
    if not isinstance(config["typed"], bool):
        raise ModelFileError(f"{path}: typed must be true or false, got {config['typed']!r}")
    return config


def _check_fields(config: dict[str, Any], where: str) -> None:
    """The fields ``build_circuit`` takes, with the right JSON types; the name must be registered."""
    if not isinstance(config["name"], str):
        raise ModelFileError(f"{where}: name must be a string, got {config['name']!r}")
    try:
        CIRCUITS.get(config["name"])
    except KgemError as e:
        raise ModelFileError(f"{where}: {e}") from e
    for key in ("dim", "num_entities", "num_relations"):
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ModelFileError(f"{where}: {key} must be a positive integer, got {value!r}")
    if not isinstance(config["args"], dict):
        raise ModelFileError(f"{where}: args must be an object, got {config['args']!r}")


def _constraints(weights: dict[str, torch.Tensor]) -> DomainConstraints:
    return DomainConstraints(weights[MASKS[0]], weights[MASKS[1]])


def _build(config: dict[str, Any], where: str, constraints: DomainConstraints | None = None) -> Circuit:
    """The circuit ``config`` describes, freshly initialised (restricted to ``constraints`` when typed); torch's
    global RNG is left as it was."""
    try:
        with torch.random.fork_rng(devices=[]):
            base = build_circuit(config["name"], config["num_entities"], config["num_relations"], config["dim"],
                                 **config["args"])
            if constraints is None:
                return base
            if not isinstance(base, SquaredCircuit):
                raise ValueError(f"only squared circuits (cp2, complex2) are typed, not {config['name']}")
            return TypedSquared(base, constraints)
    except BUILD_ERRORS as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelFileError(f"{where}: args {config['args']!r} do not build circuit {config['name']!r} "
                             f"({first})") from e


def _rebuild(config: dict[str, Any], weights: dict[str, torch.Tensor], root: Path) -> Circuit:
    """Build the circuit and assign the loaded tensors (keeping their dtype) after checking they fit it."""
    problem = _weights_problem(weights, config["typed"])
    if problem:
        raise ModelFileError(f"{root / WEIGHTS}: does not fit the circuit in {CONFIG}: {problem}")
    circuit = _build(config, str(root / CONFIG), _constraints(weights) if config["typed"] else None)
    problem = state_mismatch(circuit, weights)
    if problem:
        raise ModelFileError(f"{root / WEIGHTS}: does not fit the circuit in {CONFIG}: {problem}")
    circuit.load_state_dict(weights, strict=True, assign=True)
    return circuit


def _weights_problem(weights: dict[str, torch.Tensor], typed: bool) -> str:
    """Non-floating, non-finite or mixed-dtype tensors, and a typed circuit's missing or non-boolean masks; '' if
    there are none. A circuit's parameters are all floating point, saved in any one floating dtype."""
    masks = MASKS if typed else ()
    problems = [f"missing {key} (a typed circuit's constraint mask)" for key in masks if key not in weights]
    problems += [f"{key} has dtype {weights[key].dtype}, expected torch.bool" for key in masks
                 if key in weights and weights[key].dtype != torch.bool]
    if problems:
        return "; ".join(problems)
    parameters = {key: value for key, value in weights.items() if key not in masks}
    problems = files.not_floating({key: value.dtype for key, value in parameters.items()})
    problems += files.not_finite(parameters)
    dtypes = sorted({str(value.dtype) for value in parameters.values()})
    if not problems and len(dtypes) > 1:
        problems = [f"mixed floating-point dtypes: {', '.join(dtypes)}"]
    return "; ".join(problems)

