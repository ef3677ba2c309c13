"""Saved models as a directory of plain files: JSON, TSV and safetensors, so loading never runs code.

Layout of a model directory::

    config.json          format version, kgem version, model spec, sizes, extra, sha256 of the weights
    entities.tsv         the entity vocabulary (``Vocabulary.save``)
    relations.tsv        the relation vocabulary
    weights.safetensors  ``model.state_dict()``

Pickle (``torch.save`` / ``torch.load``) is avoided on purpose: unpickling a downloaded model file can execute
arbitrary code. Every file is checked on load and a problem is reported as a ``ModelFileError`` naming the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kgem.atomic import atomic_write, old_copies
from kgem.circuits.model import AnyModel, CircuitModel
from kgem.circuits.store import KIND as CIRCUIT_KIND
from kgem.circuits.store import load_circuit, save_circuit
from kgem.data import Dataset, KnownTriples, Triples, files
from kgem.data.files import CONFIG, ENTITIES, RELATIONS, WEIGHTS
from kgem.data.known import LAZY_ROWS, KnownSplits
from kgem.data.tensorfile import save_tensors
from kgem.data.vocab import Vocabulary
from kgem.errors import KgemError, ModelFileError
from kgem.evaluation.calibrators import Calibrator, calibrator_from_dict, fit_calibrator
from kgem.evaluation.classification import Corruption, corrupt
from kgem.evaluation.classification import score_triples as score_all
from kgem.inference.predictor import LinkPredictor
from kgem.models.builders import build_model
from kgem.models.model import Model, state_mismatch
from kgem.models.representation import Representation
from kgem.models.rgcn import RGCN
from kgem.ops.devices import resolve_device
from kgem.training import foldin
from kgem.version import __version__

__all__ = ["BUILD_ERRORS", "CONFIG", "ENTITIES", "FORMAT_VERSION", "RELATIONS", "WEIGHTS", "LoadedModel",
           "ModelFileError", "load_model", "save_model"]

FORMAT_VERSION = 1
CONFIG_KEYS = ("format", "kgem_version", "spec", "num_entities", "num_relations", "extra", "weights_sha256")
SPEC_TYPES: dict[str, type] = {"name": str, "dim": int, "inverse": bool, "args": dict}
# what building a model from bad arguments raises (torch reports some as RuntimeError, ArithmeticError or
# IndexError): here a spec that does not build, in ``factory.construct`` a config value that does not
BUILD_ERRORS = (KgemError, TypeError, ValueError, RuntimeError, ArithmeticError, IndexError)


@dataclass(frozen=True)
class LoadedModel(LinkPredictor):
    """What ``load_model`` returns: the model (in eval mode), its vocabularies and the saved metadata, with the
    prediction methods of ``LinkPredictor``. ``with_known(dataset)`` attaches the facts to mark or remove. A saved
    generative circuit loads as a ``CircuitModel``, its ``spec`` the circuit's name, dim and args."""

    model: AnyModel
    entities: Vocabulary
    relations: Vocabulary
    spec: dict[str, Any]
    extra: dict[str, Any]
    config: dict[str, Any]
    known: KnownTriples | KnownSplits | None = None
    calibrator: Calibrator | None = None

    def known_triples(self) -> KnownTriples | KnownSplits | None:
        return self.known

    def corruptions(self, dataset: Dataset, positives: torch.Tensor, strategy: Corruption = "uniform",
                    seed: int = 0) -> torch.Tensor:
        """One corruption of each of ``positives`` (this model's ids), never a triple of ``dataset``, drawn as
        ``kgem.evaluation.classification.corrupt`` says: uniform, type-consistent (by ``dataset``'s training
        triples) or hard (by this model's scores)."""
        return corrupt(positives, self.model.num_entities, strategy=strategy, known=self.with_known(dataset).known,
                       train=self.encode(dataset.train), model=self.model, seed=seed)

    def calibrate(self, dataset: Dataset, method: str = "platt", *, negatives: Triples | None = None,
                  corruption: Corruption = "uniform", positive_base_rate: float | None = None,
                  seed: int = 0) -> LoadedModel:
        """A copy whose scores come with probabilities: ``method`` (platt, temperature or isotonic) fitted on the
        valid split's triples and negatives (``negatives``, or corruptions of each, as ``corruption`` says; with
        ``positive_base_rate``, weighted to that share of positives). ``save`` keeps it (``calibration.json``)."""
        if dataset.valid is None:
            raise KgemError("calibration fits on the valid split; the dataset has none")
        positives = self.encode(dataset.valid)
        negative = self.encode(negatives) if negatives is not None else self.corruptions(dataset, positives,
                                                                                           corruption, seed)
        scores = score_all(self.model, torch.cat([positives, negative]))
        labels = np.r_[np.ones(len(positives)), np.zeros(len(negative))]
        fitted = fit_calibrator(method, scores, labels, positive_base_rate=positive_base_rate)
        return replace(self, calibrator=fitted)

    def with_known(self, data: Dataset | Triples | Sequence[Triples]) -> LoadedModel:
        """A copy that knows the triples of ``data`` (all splits of a dataset), matched to this model by label;
        triples whose labels the model does not know are left out. From ``LAZY_ROWS`` triples on they stay where
        they are (``KnownSplits``), and each query indexes only those it needs."""
        parts = list(data.splits().values()) if isinstance(data, Dataset) else (
            [data] if isinstance(data, Triples) else list(data))
        return replace(self, known=self.known_index(parts))

    def known_index(self, parts: Sequence[Triples]) -> KnownTriples | KnownSplits:
        """The true triples of ``parts`` matched to this model by label, indexed (``KnownTriples``), or, from
        ``LAZY_ROWS`` triples on, indexed only for the queries at hand (``KnownSplits``)."""
        encoded = [self.encode(part) for part in parts]
        if sum(len(hrt) for hrt in encoded) >= LAZY_ROWS:
            return KnownSplits(encoded, self.model.num_entities, self.model.num_relations)
        hrt = torch.cat(encoded) if encoded else torch.zeros(0, 3, dtype=torch.long)
        return KnownTriples(hrt, self.model.num_entities, self.model.num_relations)

    def encode(self, triples: Triples) -> torch.Tensor:
        """``triples`` (read with any vocabulary) as ids of this model, leaving out those with unknown labels."""
        if triples.entities == self.entities and triples.relations == self.relations:
            return triples.hrt
        entity_map = torch.from_numpy(self.entities.lookup(triples.entities.labels))
        relation_map = torch.from_numpy(self.relations.lookup(triples.relations.labels))
        hrt = torch.stack([entity_map[triples.hrt[:, 0]], relation_map[triples.hrt[:, 1]],
                           entity_map[triples.hrt[:, 2]]], 1)
        return hrt[(hrt >= 0).all(1)]

    def extend(self, triples: foldin.NewTriples, *, steps: int = 300, lr: float = 0.01,
               init: foldin.Init = "neighbours", new_relations: foldin.NewRelations = "add", unfreeze: bool = False,
               epochs: int = 1, train: Dataset | Triples | None = None, seed: int = 0) -> LoadedModel:
        """A copy grown by the entities and relations of ``triples`` (a file, ``Triples``, a DataFrame or label
        triples) that this model does not know, their rows fitted with every old row frozen, so old scores stay
        bit-identical (``kgem.training.foldin``). ``train``, the old training triples (a dataset: its training
        split), keeps the new rows out of their answers too; with ``unfreeze`` the whole model then trains for
        ``epochs`` on them and ``triples``, with the saved run's objective. What was added and the fit's losses are
        in ``extra["extensions"]``; a calibrator is kept unless unfrozen."""
        old = None if train is None else self.encode(train.train if isinstance(train, Dataset) else train)
        grown = foldin.extend(self.model, self.spec, self.entities, self.relations, triples,
                              objective=foldin.Objective.from_saved(self.extra.get("pipeline", {}).get("training", {})),
                              steps=steps, lr=lr, init=init, new_relations=new_relations, unfreeze=unfreeze,
                              epochs=epochs, train=old, seed=seed)
        extra = {**self.extra, "extensions": [*self.extra.get("extensions", []), grown.report]}
        config = {**self.config, "num_entities": len(grown.entities), "num_relations": len(grown.relations),
                  "extra": extra}
        return replace(self, model=grown.model, entities=grown.entities, relations=grown.relations, extra=extra,
                       config=config, known=None, calibrator=None if unfreeze else self.calibrator)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Save again (e.g. after fine-tuning ``model``, or calibrating it) with the same spec and metadata."""
        if isinstance(self.model, CircuitModel):
            root = save_circuit(self.model.circuit, directory, name=self.model.name, args=self.model.args,
                                entities=self.entities, relations=self.relations, extra=self.extra)
        else:
            root = save_model(self.model, directory, entities=self.entities, relations=self.relations,
                              spec=self.spec, extra=self.extra)
        if self.calibrator is not None:
            save_calibration(root, self.calibrator)
        return root


def save_model(model: Model, directory: str | os.PathLike[str], *, entities: Vocabulary, relations: Vocabulary,
               spec: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Save ``model`` so that ``load_model(directory)`` rebuilds it from ``spec`` and restores its weights.

    ``spec`` is ``{"name", "dim", "inverse", "args"}``, the arguments of ``build_model``; it is checked against
    ``model`` now, so a wrong spec fails at save time rather than when the model is loaded later. The directory is
    written beside the target and swapped in, so an interrupted save leaves the previous save in place.
    """
    target = Path(directory)
    _check_spec(spec, f"cannot save to {target}")
    _check_rebuilds(model, spec)
    if (len(entities), len(relations)) != (model.num_entities, model.num_relations):
        raise ModelFileError(f"cannot save to {target}: vocabularies have {len(entities)} entities and "
                             f"{len(relations)} relations, the model {model.num_entities} and {model.num_relations}")
    config = {"format": FORMAT_VERSION, "kgem_version": __version__, "spec": spec,
              "num_entities": model.num_entities, "num_relations": model.num_relations,
              "extra": {} if extra is None else extra, "weights_sha256": ""}
    try:
        json.dumps(config)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"cannot save to {target}: spec and extra must be JSON-serialisable ({e})") from e
    # save_tensors is passed from here so that it is looked up in this module when the save runs
    files.write_folder(target, model.state_dict(), entities, relations, config, what="model",
                       save_weights=save_tensors)
    return target


def load_model(directory: str | os.PathLike[str], *, device: str | torch.device = "cpu",
               mmap: bool = False) -> LoadedModel:
    """Load a directory written by ``save_model``, checking every file; the model is returned in eval mode, its
    tensors on ``device`` (torch's device strings: "cpu", "cuda", "cuda:1", ...). ``mmap`` (CPU) maps the weights
    instead of reading them: a model larger than memory predicts as the OS pages its rows in.

    Only JSON, the vocabulary TSV reader and safetensors are used, none of which can execute code from the files.
    """
    target = resolve_device(device)
    root = Path(directory)
    if not root.is_dir():
        raise ModelFileError(f"model directory {root} does not exist{_backup_hint(root)}")
    if files.read_config_object(root / CONFIG, "model").get("kind") == CIRCUIT_KIND:
        return _load_circuit(root, target)
    config = _read_config(root / CONFIG)
    if mmap and target.type != "cpu":
        raise ModelFileError(f"mmap maps a saved model into CPU memory; load it onto {target} without mmap")
    entities, relations, saved = files.read_contents(root, config, mmap)
    weights = {key: value.to(target) for key, value in saved.items()}
    model = _rebuild(config, weights, root)
    model.eval()
    return LoadedModel(model, entities, relations, config["spec"], config["extra"], config,
                       calibrator=read_calibration(root))


def _load_circuit(root: Path, device: torch.device) -> LoadedModel:
    """A saved generative circuit (``kgem.circuits.store``) as a loaded model."""
    loaded = load_circuit(root, device=device)
    model = CircuitModel(loaded.circuit, loaded.name, loaded.args).eval()
    spec = {"name": loaded.name, "dim": loaded.config["dim"], "args": loaded.args}
    return LoadedModel(model, loaded.entities, loaded.relations, spec, loaded.config["extra"], loaded.config,
                       calibrator=read_calibration(root))


CALIBRATION = "calibration.json"  # a calibrated model's calibrator, beside its weights


def save_calibration(directory: str | os.PathLike[str], calibrator: Calibrator) -> Path:
    """Write ``calibrator`` into the saved model folder ``directory`` (atomically; JSON, never a pickle)."""
    path = Path(directory) / CALIBRATION
    with atomic_write(path) as f:
        json.dump(calibrator.to_dict(), f, indent=1)
    return path


def read_calibration(root: Path) -> Calibrator | None:
    """The calibrator saved in ``root``, or None; a malformed file is a ModelFileError naming it."""
    path = root / CALIBRATION
    if not path.exists():
        return None
    try:
        return calibrator_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KgemError) as e:
        raise ModelFileError(f"{path}: not a calibrator kgem can read ({e})") from e


def _backup_hint(root: Path) -> str:
    """Point at the old save if a crash between the two renames of ``atomic.swap_into_place`` left it aside."""
    backups = old_copies(root)
    return f" (a previous save was left at {backups[-1]}; rename it back to recover)" if backups else ""


def _read_config(path: Path) -> dict[str, Any]:
    """Parse and type-check config.json, so later steps can trust its fields."""
    config = files.read_config_object(path, "model")
    files.check_keys(path, config, CONFIG_KEYS)
    files.check_format(path, config, FORMAT_VERSION, "model")
    for key in ("num_entities", "num_relations"):
        if not _is_int(config[key]) or config[key] < 0:
            raise ModelFileError(f"{path}: {key} must be a non-negative integer, got {config[key]!r}")
    if not isinstance(config["extra"], dict) or not isinstance(config["weights_sha256"], str):
        raise ModelFileError(f"{path}: extra must be an object and weights_sha256 a string")
    _check_spec(config["spec"], str(path))
    return config


def _check_spec(spec: object, where: str) -> None:
    """The spec must hold exactly what ``build_model`` needs, with the right JSON types."""
    if not isinstance(spec, dict):
        raise ModelFileError(f"{where}: spec must be an object with keys {', '.join(SPEC_TYPES)}")
    for key, kind in SPEC_TYPES.items():
        value = spec.get(key)
        if not isinstance(value, kind) or (kind is int and not _is_int(value)):
            raise ModelFileError(f"{where}: spec[{key!r}] must be a {kind.__name__}, got {value!r}")
    if spec["dim"] <= 0:
        raise ModelFileError(f"{where}: spec['dim'] must be positive, got {spec['dim']!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rebuild(config: dict[str, Any], weights: dict[str, torch.Tensor], root: Path) -> Model:
    """Rebuild the model from its spec on the meta device (no memory, no init) and assign the loaded tensors."""
    try:
        model = _build_meta(config["spec"], config["num_entities"], config["num_relations"])
    except BUILD_ERRORS as e:
        raise ModelFileError(f"{root / CONFIG}: spec does not build a model ({_first_line(e)})") from e
    problem = _state_mismatch(model, weights)
    if problem:
        raise ModelFileError(f"{root / WEIGHTS}: does not fit the model in {CONFIG}: {problem}")
    model.load_state_dict(weights, strict=True, assign=True)
    leftover = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:  # a tensor outside the state dict would be left without data: a bug in kgem, not in the file
        raise RuntimeError(f"tensors not restored from the state dict: {', '.join(leftover)}")
    _check_loaded(model, root)
    return model


def _first_line(error: BaseException) -> str:
    """torch appends C++ context to some messages; the first line is the problem."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _check_loaded(model: Model, root: Path) -> None:
    """Fail now, naming the file, rather than at the first prediction: the encoder's graph must hold valid ids,
    and the model must score a triple (interaction arguments of a wrong type only show there)."""
    for module in model.modules():
        if isinstance(module, RGCN):
            try:
                module.check_state()
            except ValueError as e:
                raise ModelFileError(f"{root / WEIGHTS}: {e}") from e
    try:
        model.probe()
    except BUILD_ERRORS as e:
        raise ModelFileError(f"{root / CONFIG}: the model it describes cannot score ({_first_line(e)})") from e


def _build_meta(spec: dict[str, Any], num_entities: int, num_relations: int) -> Model:
    with torch.device("meta"):
        return build_model(spec["name"], num_entities, num_relations, spec["dim"], inverse=spec["inverse"],
                           **spec["args"])


def _state_mismatch(model: Model, weights: dict[str, torch.Tensor]) -> str:
    """Describe missing, unexpected, wrongly shaped and wrongly typed tensors; '' if the weights fit the model.
    Floating-point tensors may be saved in any floating dtype (a model trained in float64), but all in the same
    one; integer ones (R-GCN's graph) in exactly theirs."""
    problem = state_mismatch(model, weights)
    if problem:
        return problem
    expected = model.state_dict()
    floats = {key: value.dtype for key, value in weights.items() if expected[key].is_floating_point()}
    problems = files.not_floating(floats)
    problems += [f"{key} has dtype {value.dtype}, expected {expected[key].dtype}" for key, value in weights.items()
                 if not expected[key].is_floating_point() and value.dtype != expected[key].dtype]
    problems += files.not_finite(weights)
    if not problems and len(set(floats.values())) > 1:
        groups = {str(dtype): [key for key, d in floats.items() if d == dtype] for dtype in set(floats.values())}
        problems = ["mixed floating-point dtypes: " + ", ".join(f"{dtype} ({', '.join(keys)})"
                                                                for dtype, keys in sorted(groups.items()))]
    return "; ".join(problems)


def _check_rebuilds(model: Model, spec: dict[str, Any]) -> None:
    """The saved spec must rebuild ``model`` (same tensors, interaction settings and inverse flag), or the save
    would load as a different model."""
    try:
        rebuilt = _build_meta(spec, model.num_entities, model.num_relations)
    except BUILD_ERRORS as e:
        raise ModelFileError(f"cannot save: spec {spec!r} does not build a model ({e})") from e
    problem = _state_mismatch(rebuilt, dict(model.state_dict()))
    if not problem and (rebuilt.inverse != model.inverse or _settings(rebuilt) != _settings(model)):
        problem = f"the model is {model.interaction!r} with inverse={model.inverse}"
    if problem:
        raise ModelFileError(f"cannot save: spec {spec!r} does not describe this model ({problem})")


def _settings(model: Model) -> tuple[Any, ...]:
    """The interaction's class and plain attributes (e.g. TransE's ``p``) and each representation's kind and
    constraint (e.g. ``normalize="step"``); compared by ``==`` so 1 equals 1.0."""
    interaction = model.interaction
    plain = {k: v for k, v in vars(interaction).items() if not k.startswith("_") and k != "training"}
    tables = [(m.saved_as(), m.kind, m.normalize) for m in model.modules() if isinstance(m, Representation)]
    return type(interaction), plain, tables

