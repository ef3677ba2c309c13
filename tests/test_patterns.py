"""Relation patterns (``kgem.data.patterns``): hand-built graphs with known answers, and a random graph against a
triple-by-triple reference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from kgem import load_dataset
from kgem.data import relation_categories
from kgem.data.patterns import PATTERNS, relation_patterns
from kgem.errors import DataError


def graph(*triples: tuple[int, int, int]) -> torch.Tensor:
    return torch.tensor(triples, dtype=torch.long)


def test_symmetry_and_antisymmetry() -> None:
    # friend: 0-1 both ways and 2->3 one way
    table = relation_patterns(graph((0, 0, 1), (1, 0, 0), (2, 0, 3)), 1, ["friend"])
    row = table.loc["friend"]
    assert row["count"] == 3
    assert row["symmetry"] == pytest.approx(2 / 3) and row["symmetry_support"] == 2
    assert row["antisymmetry"] == pytest.approx(1 / 3) and row["antisymmetry_support"] == 1
    assert row["reflexivity"] == 0 and row["inverse"] is None and row["implies"] is None


def test_inversion_names_the_best_other_relation() -> None:
    parent = [(0, 0, 1), (2, 0, 3), (4, 0, 5)]
    child = [(1, 1, 0), (3, 1, 2)]  # two of the three parent facts reversed
    noise = [(1, 2, 0)]  # one reversed parent fact under another relation: child (2) beats it (1)
    table = relation_patterns(graph(*parent, *child, *noise), 3, ["parent", "child", "noise"])
    assert table.loc["parent", "inverse"] == "child"
    assert table.loc["parent", "inversion"] == pytest.approx(2 / 3) and table.loc["parent", "inversion_support"] == 2
    assert table.loc["child", "inverse"] == "parent" and table.loc["child", "inversion"] == 1.0
    assert table.loc["noise", "inverse"] == "parent" and table.loc["noise", "inversion"] == 1.0
    assert table.loc["parent", "symmetry"] == 0 and table.loc["parent", "antisymmetry"] == 1.0


def test_implication_is_the_subrelation_share() -> None:
    capital_of = [(0, 0, 1), (2, 0, 3)]
    located_in = [(0, 1, 1), (2, 1, 3), (4, 1, 5), (6, 1, 7)]
    table = relation_patterns(graph(*capital_of, *located_in), 2, ["capital_of", "located_in"])
    assert table.loc["capital_of", "implies"] == "located_in" and table.loc["capital_of", "implication"] == 1.0
    assert table.loc["located_in", "implies"] == "capital_of"
    assert table.loc["located_in", "implication"] == 0.5 and table.loc["located_in", "implication_support"] == 2


def test_reflexive_triples_are_their_own_reverse() -> None:
    table = relation_patterns(graph((0, 0, 0), (1, 0, 1), (0, 0, 2)), 1)
    row = table.loc[0]
    assert row["reflexivity"] == pytest.approx(2 / 3) and row["reflexivity_support"] == 2
    assert row["symmetry"] == pytest.approx(2 / 3)  # the loops; (2, 0) is missing
    assert row["antisymmetry"] == 1.0  # a loop never breaks it


def test_ties_go_to_the_lowest_id_and_duplicates_count_once() -> None:
    hrt = graph((0, 0, 1), (0, 0, 1), (0, 1, 1), (0, 2, 1), (1, 2, 0), (1, 1, 0))
    table = relation_patterns(hrt, 3)
    assert table.loc[0, "count"] == 1
    assert table.loc[0, "implies"] == 1 and table.loc[0, "inverse"] == 1  # relations 1 and 2 tie at 1
    assert table.loc[2, "implies"] == 1 and table.loc[2, "implication"] == 1.0  # both its pairs are in relation 1
    assert table.loc[2, "symmetry"] == 1.0


def test_a_relation_without_triples() -> None:
    table = relation_patterns(graph((0, 0, 1)), 2, ["a", "b"])
    row = table.loc["b"]
    assert row["count"] == 0 and all(math.isnan(row[name]) for name in PATTERNS)
    assert all(row[f"{name}_support"] == 0 for name in PATTERNS) and row["inverse"] is None
    assert relation_patterns(torch.zeros(0, 3, dtype=torch.long), 1)["count"].tolist() == [0]


def reference(hrt: torch.Tensor, num_relations: int) -> pd.DataFrame:
    """The patterns triple by triple, from Python sets."""
    facts = {tuple(row) for row in hrt.tolist()}
    rows = []
    for r in range(num_relations):
        mine = sorted((h, t) for h, rel, t in facts if rel == r)
        n = len(mine)

        def best(present: set[tuple[int, int]], mine: list[tuple[int, int]] = mine, r: int = r) -> tuple[int, int]:
            counts = [(sum((h, r2, t) in present for h, t in mine), -r2) for r2 in range(num_relations) if r2 != r]
            support, minus = max(counts, default=(0, 1))
            return (-minus, support) if support else (-1, 0)

        reversed_facts = {(t, rel, h) for h, rel, t in facts}
        inverse, inverse_support = best(reversed_facts)
        implies, implied_support = best(facts)
        symmetric = sum((t, r, h) in facts for h, t in mine)
        loops = sum(h == t for h, t in mine)
        support = {"reflexivity": loops, "symmetry": symmetric,
                   "antisymmetry": sum((t, r, h) not in facts or h == t for h, t in mine),
                   "inversion": inverse_support, "implication": implied_support}
        row: dict[str, object] = {"count": n, "inverse": inverse if inverse >= 0 else None,
                                  "implies": implies if implies >= 0 else None}
        for name in PATTERNS:
            row[name] = support[name] / n if n else float("nan")
            row[f"{name}_support"] = support[name]
        rows.append(row)
    return pd.DataFrame(rows)


def test_a_random_graph_matches_the_reference() -> None:
    generator = torch.Generator().manual_seed(0)
    num_relations = 5
    hrt = torch.stack([torch.randint(0, 6, (150,), generator=generator),
                       torch.randint(0, num_relations, (150,), generator=generator),
                       torch.randint(0, 6, (150,), generator=generator)], 1)
    got = relation_patterns(hrt, num_relations)
    expected = reference(hrt, num_relations)
    for column in expected.columns:
        if column in ("inverse", "implies"):
            assert got[column].tolist() == expected[column].tolist(), column
        else:
            np.testing.assert_allclose(got[column].to_numpy(float), expected[column].to_numpy(float), err_msg=column)
    assert got["count"].sum() == len(torch.unique(hrt, dim=0))
    assert got["category"].tolist() == relation_categories(hrt, num_relations).tolist()


def test_nations_has_a_row_per_relation() -> None:
    nations = load_dataset("nations")
    table = relation_patterns(nations.train.hrt, nations.num_relations, nations.relations.labels)
    assert table.index.tolist() == list(nations.relations.labels)
    assert table["count"].sum() == len(torch.unique(nations.train.hrt, dim=0))
    assert set(table["inverse"].dropna()) <= set(nations.relations.labels)
    assert ((table["symmetry"] + table["antisymmetry"] - table["reflexivity"]).round(12) == 1).all()


def test_bad_input_is_a_data_error() -> None:
    with pytest.raises(DataError, match="2 relation labels for 3 relations"):
        relation_patterns(graph((0, 0, 1)), 3, ["a", "b"])
    with pytest.raises(DataError, match="out of range"):
        relation_patterns(graph((0, 3, 1)), 3)
    with pytest.raises(DataError, match="shape"):
        relation_patterns(torch.zeros(4, 2, dtype=torch.long), 3)
