"""Domain constraints: which entities may be the head (domain) and the tail (range) of each relation.

The constraints are two boolean masks over (relation, entity), ``allowed_heads (R, E)`` and ``allowed_tails (R, E)``,
held by ``DomainConstraints``. They come from type files (``read_types``) or, where a dataset has none, from the
training graph (``derive_types``). Semantic metrics (Sem@k) and type-aware models read them.

File format: two UTF-8 TSV files (LF or CRLF, optionally gzipped; blank lines are skipped, no header).

* Entity types, one ``entity<TAB>type`` line per typed entity. An entity has at most one type; an entity that is
  not listed has no type and fits no typed slot.
* Relation signatures, ``relation<TAB>subject_type<TAB>object_type`` lines. A relation may have several lines: its
  heads may then be of any of the subject types and its tails of any of the object types. Every relation needs at
  least one line, unless ``untyped_relations="unconstrained"`` (then a relation without a line allows every entity).

Entity and relation labels must be in the given vocabularies and type labels must be types of the entity file; a
bad line is a one-line DataError naming the file, the line and the problem.

The masks constrain each slot on its own: a relation with the signatures (A, B) and (C, D) allows heads of type A or
C and tails of type B or D, so ``check`` also accepts an (A, D) triple. Per-slot metrics (Sem@k looks at one slot
per query) are exact.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from kgem.data.readers import iter_line_chunks, validate_chunk
from kgem.data.vocab import Vocabulary
from kgem.errors import DataError

UntypedRelations = Literal["error", "unconstrained"]
SLOTS = ("head", "tail")


@dataclass(frozen=True)
class DomainConstraints:
    """Boolean masks ``allowed_heads (R, E)`` and ``allowed_tails (R, E)``: ``allowed_heads[r, e]`` says that entity
    ``e`` may be the head of relation ``r``, ``allowed_tails[r, e]`` that it may be its tail."""

    allowed_heads: torch.Tensor
    allowed_tails: torch.Tensor

    def __post_init__(self) -> None:
        for name, mask in (("allowed_heads", self.allowed_heads), ("allowed_tails", self.allowed_tails)):
            if mask.dtype != torch.bool or mask.ndim != 2:
                raise DataError(f"{name} must be a boolean (relations, entities) tensor, got {mask.dtype} "
                                f"{tuple(mask.shape)}")
        if self.allowed_heads.shape != self.allowed_tails.shape:
            raise DataError(f"allowed_heads {tuple(self.allowed_heads.shape)} and allowed_tails "
                            f"{tuple(self.allowed_tails.shape)} differ in shape")

    @property
    def num_relations(self) -> int:
        return self.allowed_heads.shape[0]

    @property
    def num_entities(self) -> int:
        return self.allowed_heads.shape[1]

    def allowed(self, slot: str) -> torch.Tensor:
        """The mask of the ``slot``: "head" (the domains) or "tail" (the ranges)."""
        if slot not in SLOTS:
            raise DataError(f"slot must be 'head' or 'tail', got {slot!r}")
        return self.allowed_heads if slot == "head" else self.allowed_tails

    def to(self, device: torch.device | str) -> DomainConstraints:
        return DomainConstraints(self.allowed_heads.to(device), self.allowed_tails.to(device))

    def check(self, hrt: torch.Tensor) -> torch.Tensor:
        """Whether each triple of ``hrt (n, 3)`` respects the constraints: a bool ``(n,)`` on the masks' device."""
        hrt = check_ids(hrt, self.num_entities, self.num_relations).to(self.allowed_heads.device)
        h, r, t = hrt.T
        return self.allowed_heads[r, h] & self.allowed_tails[r, t]

    @classmethod
    def from_types(cls, entity_types: torch.Tensor, head_types: torch.Tensor,
                   tail_types: torch.Tensor) -> DomainConstraints:
        """Masks from each entity's type id ``(E,)`` (-1: untyped) and each relation's allowed subject and object
        types ``(R, T)`` (bool); an untyped entity is allowed nowhere."""
        typed = entity_types >= 0
        index = entity_types.clamp(min=0).long()
        return cls(head_types[:, index] & typed, tail_types[:, index] & typed)


def check_ids(hrt: torch.Tensor, num_entities: int, num_relations: int) -> torch.Tensor:
    """``hrt`` as int64 ``(n, 3)``; a DataError for another shape or an id out of range."""
    if hrt.ndim != 2 or hrt.shape[1] != 3 or hrt.is_floating_point() or hrt.is_complex() or hrt.dtype == torch.bool:
        raise DataError(f"triples must be an integer tensor of shape (n, 3), got {hrt.dtype} {tuple(hrt.shape)}")
    hrt = hrt.long()
    if len(hrt):
        lo, hi = hrt.min(0).values.tolist(), hrt.max(0).values.tolist()
        if min(lo) < 0 or hi[0] >= num_entities or hi[2] >= num_entities or hi[1] >= num_relations:
            raise DataError(f"triple ids out of range for {num_entities} entities and {num_relations} relations: "
                            f"heads {lo[0]}..{hi[0]}, relations {lo[1]}..{hi[1]}, tails {lo[2]}..{hi[2]}")
    return hrt


def derive_types(hrt: torch.Tensor, num_entities: int, num_relations: int) -> DomainConstraints:
    """Constraints observed in a graph (the training triples, where a dataset has no type files): a relation's
    domain is the set of its heads in ``hrt`` and its range the set of its tails. A relation without a triple
    allows no entity."""
    hrt = check_ids(hrt, num_entities, num_relations)
    heads = torch.zeros(num_relations, num_entities, dtype=torch.bool)
    tails = torch.zeros(num_relations, num_entities, dtype=torch.bool)
    heads[hrt[:, 1], hrt[:, 0]] = True
    tails[hrt[:, 1], hrt[:, 2]] = True
    return DomainConstraints(heads, tails)


def read_rows(path: Path, num_fields: int) -> tuple[np.ndarray, np.ndarray]:
    """``(line numbers (m,), labels (m, num_fields))`` of the non-blank lines of a TSV file, validated as the
    triple readers do (field counts, empty fields, control characters, UTF-8)."""
    numbers: list[int] = []
    rows: list[list[str]] = []
    for first, data in iter_line_chunks(path):
        validate_chunk(path, data, first, "\t", num_fields)
        for i, line in enumerate(data.decode("utf-8").split("\n")[:-1]):
            if line:
                numbers.append(first + i)
                rows.append(line.split("\t"))
    return np.asarray(numbers, dtype=np.int64), np.asarray(rows, dtype=object).reshape(-1, num_fields)


def lookup_rows(path: Path, vocab: Vocabulary, labels: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """Ids of ``labels`` (one column of the file); an unknown label is a DataError naming its line."""
    ids = vocab.lookup(labels)
    if (ids < 0).any():
        i = int(np.flatnonzero(ids < 0)[0])
        bad = str(labels[i])
        raise DataError(f"{path}:{int(numbers[i])}: unknown {vocab.kind} {bad!r}{vocab.suggest(bad)}")
    return ids


def read_entity_types(path: str | os.PathLike[str], entities: Vocabulary) -> tuple[Vocabulary, torch.Tensor]:
    """``(type vocabulary, type id of each entity (E,) int64, -1 for an untyped entity)`` from ``entity<TAB>type``
    lines; an entity listed twice is a DataError."""
    path = Path(path)
    numbers, rows = read_rows(path, 2)
    ids = lookup_rows(path, entities, rows[:, 0], numbers)
    order = np.argsort(ids, kind="stable")
    repeated = order[1:][ids[order][1:] == ids[order][:-1]]
    if len(repeated):
        again = int(repeated.min())
        before = int(np.flatnonzero(ids == ids[again])[0])
        raise DataError(f"{path}:{int(numbers[again])}: entity {rows[again, 0]!r} has a type already, on line "
                        f"{int(numbers[before])}")
    types = Vocabulary.from_labels(rows[:, 1], kind="type")
    of_entity = torch.full((len(entities),), -1, dtype=torch.int64)
    of_entity[torch.from_numpy(ids)] = torch.from_numpy(types.lookup(rows[:, 1]))
    return types, of_entity


def read_signatures(path: str | os.PathLike[str], relations: Vocabulary,
                    types: Vocabulary) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(subject types (R, T), object types (R, T), listed (R,))``, booleans, from
    ``relation<TAB>subject_type<TAB>object_type`` lines; ``listed`` says which relations have a line."""
    path = Path(path)
    numbers, rows = read_rows(path, 3)
    rel = torch.from_numpy(lookup_rows(path, relations, rows[:, 0], numbers))
    subject = torch.from_numpy(lookup_rows(path, types, rows[:, 1], numbers))
    obj = torch.from_numpy(lookup_rows(path, types, rows[:, 2], numbers))
    heads = torch.zeros(len(relations), len(types), dtype=torch.bool)
    tails = torch.zeros(len(relations), len(types), dtype=torch.bool)
    heads[rel, subject] = True
    tails[rel, obj] = True
    listed = torch.zeros(len(relations), dtype=torch.bool)
    listed[rel] = True
    return heads, tails, listed


def read_types(entity_types_path: str | os.PathLike[str], signatures_path: str | os.PathLike[str],
               entities: Vocabulary, relations: Vocabulary, *,
               untyped_relations: UntypedRelations = "error") -> DomainConstraints:
    """Constraints from an entity-types file and a relation-signatures file (formats in the module docstring).

    ``untyped_relations``: "error" (a relation without a signature line is a DataError) or "unconstrained" (it
    allows every entity, typed or not, in both slots)."""
    if untyped_relations not in ("error", "unconstrained"):
        raise DataError(f"untyped_relations must be 'error' or 'unconstrained', got {untyped_relations!r}")
    types, of_entity = read_entity_types(entity_types_path, entities)
    heads, tails, listed = read_signatures(signatures_path, relations, types)
    missing = torch.nonzero(~listed).squeeze(1)
    if len(missing) and untyped_relations == "error":
        first = str(relations.labels[int(missing[0])])
        raise DataError(f"{signatures_path}: relation {first!r} has no signature line ({len(missing)} relations have "
                        "none; pass untyped_relations='unconstrained' to allow every entity for them)")
    constraints = DomainConstraints.from_types(of_entity, heads, tails)
    constraints.allowed_heads[missing] = True
    constraints.allowed_tails[missing] = True
    return constraints
