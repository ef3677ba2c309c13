from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from kgem.data import Vocabulary
from kgem.data.types import DomainConstraints, derive_types, read_entity_types, read_signatures, read_types
from kgem.errors import DataError

ENTITIES = Vocabulary.from_labels(["aspirin", "fever", "headache", "ibuprofen", "ptgs2", "orphan"], kind="entity")
RELATIONS = Vocabulary.from_labels(["binds", "treats", "similar"], kind="relation")
# ids: aspirin 0, fever 1, headache 2, ibuprofen 3, orphan 4, ptgs2 5; binds 0, similar 1, treats 2
TYPES_TSV = "aspirin\tdrug\nibuprofen\tdrug\r\n\nfever\tdisease\nheadache\tdisease\nptgs2\tprotein\n"
SIGNATURES_TSV = "treats\tdrug\tdisease\nbinds\tdrug\tprotein\nsimilar\tdrug\tdrug\nsimilar\tdisease\tdisease\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def files(tmp_path: Path, types: str = TYPES_TSV, signatures: str = SIGNATURES_TSV) -> tuple[Path, Path]:
    return write(tmp_path / "types.tsv", types), write(tmp_path / "signatures.tsv", signatures)


def rows(*entity_lists: list[str]) -> torch.Tensor:
    """A (R, E) mask, one row per relation id, from the entity labels allowed there."""
    mask = torch.zeros(len(entity_lists), len(ENTITIES), dtype=torch.bool)
    for r, labels in enumerate(entity_lists):
        mask[r, torch.from_numpy(ENTITIES.ids(labels))] = True
    return mask


def test_read_types_gives_hand_built_masks(tmp_path: Path) -> None:
    constraints = read_types(*files(tmp_path), ENTITIES, RELATIONS)
    drugs, diseases = ["aspirin", "ibuprofen"], ["fever", "headache"]
    assert torch.equal(constraints.allowed_heads, rows(drugs, drugs + diseases, drugs))  # binds, similar, treats
    assert torch.equal(constraints.allowed_tails, rows(["ptgs2"], drugs + diseases, diseases))
    assert (constraints.num_relations, constraints.num_entities) == (3, 6)


def test_read_entity_types_leaves_unlisted_untyped(tmp_path: Path) -> None:
    types, of_entity = read_entity_types(write(tmp_path / "t.tsv", TYPES_TSV), ENTITIES)
    assert list(types.labels) == ["disease", "drug", "protein"]
    assert of_entity.tolist() == [1, 0, 0, 1, -1, 2]


def test_read_signatures_gzipped(tmp_path: Path) -> None:
    types = Vocabulary.from_labels(["disease", "drug", "protein"], kind="type")
    path = tmp_path / "s.tsv.gz"
    path.write_bytes(gzip.compress(SIGNATURES_TSV.encode()))
    heads, tails, listed = read_signatures(path, RELATIONS, types)
    assert heads.tolist() == [[False, True, False], [True, True, False], [False, True, False]]
    assert tails.tolist() == [[False, False, True], [True, True, False], [True, False, False]]
    assert listed.all()


@pytest.mark.parametrize(("types", "signatures", "message"), [
    ("aspirin\tdrug\taspirin\n", SIGNATURES_TSV, r"types.tsv:1: expected 2 fields, found 3"),
    (TYPES_TSV + "asprin\tdrug\n", SIGNATURES_TSV, r"types.tsv:7: unknown entity 'asprin' \(did you mean 'aspirin'"),
    (TYPES_TSV + "fever\tsymptom\n", SIGNATURES_TSV, r"types.tsv:7: entity 'fever' has a type already, on line 4"),
    ("aspirin\t\n", SIGNATURES_TSV, r"types.tsv:1: empty field"),
    (TYPES_TSV, "treats\tdrug\n", r"signatures.tsv:1: expected 3 fields, found 2"),
    (TYPES_TSV, SIGNATURES_TSV + "cures\tdrug\tdisease\n", r"signatures.tsv:5: unknown relation 'cures'"),
    (TYPES_TSV, SIGNATURES_TSV + "treats\tdrugs\tdisease\n", r"signatures.tsv:5: unknown type 'drugs' \(did you"),
    (TYPES_TSV, SIGNATURES_TSV + "treats\tdrug\tgene\n", r"signatures.tsv:5: unknown type 'gene'"),
    (TYPES_TSV, SIGNATURES_TSV.replace("binds\tdrug\tprotein\n", ""), r"relation 'binds' has no signature line"),
])
def test_bad_files_give_one_line_errors(tmp_path: Path, types: str, signatures: str, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        read_types(*files(tmp_path, types, signatures), ENTITIES, RELATIONS)
    assert "\n" not in str(info.value)


def test_untyped_relations_unconstrained(tmp_path: Path) -> None:
    paths = files(tmp_path, signatures=SIGNATURES_TSV.replace("binds\tdrug\tprotein\n", ""))
    constraints = read_types(*paths, ENTITIES, RELATIONS, untyped_relations="unconstrained")
    assert constraints.allowed_heads[0].all() and constraints.allowed_tails[0].all()
    assert not constraints.allowed_heads[2, ENTITIES.ids(["fever", "orphan"])].any()
    with pytest.raises(DataError, match="untyped_relations must be"):
        read_types(*paths, ENTITIES, RELATIONS, untyped_relations="ignore")  # type: ignore[arg-type]


def test_derive_types_equals_hand_computed_masks() -> None:
    hrt = torch.tensor([[0, 0, 1], [2, 0, 1], [0, 1, 3], [0, 0, 1]])  # 4 entities, relation 2 unseen
    constraints = derive_types(hrt, num_entities=4, num_relations=3)
    assert constraints.allowed_heads.tolist() == [[True, False, True, False], [True, False, False, False],
                                                  [False] * 4]
    assert constraints.allowed_tails.tolist() == [[False, True, False, False], [False, False, False, True],
                                                  [False] * 4]
    with pytest.raises(DataError, match=r"out of range for 3 entities and 3 relations: heads 0\.\.2, "
                                        r"relations 0\.\.1, tails 1\.\.3"):
        derive_types(hrt, num_entities=3, num_relations=3)
    with pytest.raises(DataError, match=r"shape \(n, 3\)"):
        derive_types(hrt[:, :2], num_entities=4, num_relations=3)


def test_check_triples(tmp_path: Path) -> None:
    constraints = read_types(*files(tmp_path), ENTITIES, RELATIONS)
    labels = [("aspirin", "treats", "fever"), ("fever", "treats", "aspirin"), ("ibuprofen", "binds", "ptgs2"),
              ("ibuprofen", "binds", "aspirin"), ("orphan", "similar", "fever"), ("aspirin", "similar", "fever")]
    hrt = torch.tensor([[ENTITIES.ids([h])[0], RELATIONS.ids([r])[0], ENTITIES.ids([t])[0]] for h, r, t in labels])
    # per-slot masks: similar allows drug or disease in each slot, so the (drug, disease) pair passes
    assert constraints.check(hrt).tolist() == [True, False, True, False, False, True]
    assert constraints.check(hrt[:0]).shape == (0,)
    with pytest.raises(DataError, match="out of range"):
        constraints.check(torch.tensor([[0, 3, 1]]))
    with pytest.raises(DataError, match="integer tensor"):
        constraints.check(hrt.float())


def test_constraints_validate_their_masks() -> None:
    with pytest.raises(DataError, match="allowed_heads must be a boolean"):
        DomainConstraints(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(DataError, match="differ in shape"):
        DomainConstraints(torch.zeros(2, 3, dtype=torch.bool), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(DataError, match="slot must be"):
        derive_types(torch.tensor([[0, 0, 1]]), 2, 1).allowed("middle")
