"""Splitting one set of facts: exact ratios, nothing unseen in valid/test, seeded, and clear errors."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from kgem.data import Dataset, load_dataset
from kgem.data.split import split_indices
from kgem.errors import DataError


def all_umls_facts() -> pd.DataFrame:
    return pd.concat([t.to_df() for t in load_dataset("umls").splits().values()], ignore_index=True)


def test_split_is_a_partition_with_exact_ratios_and_nothing_unseen() -> None:
    facts = all_umls_facts()
    ds = Dataset.from_split(facts, (0.8, 0.1, 0.1), seed=1)
    assert ds.valid is not None and ds.test is not None
    sizes = [len(ds.train), len(ds.valid), len(ds.test)]
    assert sum(sizes) == len(facts.drop_duplicates())
    assert sizes[1] == round(0.1 * sum(sizes)) and sizes[2] == round(0.1 * sum(sizes))
    rows = {tuple(x) for x in torch.cat([ds.train.hrt, ds.valid.hrt, ds.test.hrt]).tolist()}
    assert len(rows) == sum(sizes)  # disjoint
    for split in (ds.valid, ds.test):  # every id in valid/test occurs in train
        assert set(split.hrt[:, [0, 2]].flatten().tolist()) <= set(ds.train.hrt[:, [0, 2]].flatten().tolist())
        assert set(split.hrt[:, 1].tolist()) <= set(ds.train.hrt[:, 1].tolist())
    again = Dataset.from_split(facts, (0.8, 0.1, 0.1), seed=1)
    assert torch.equal(again.test.hrt, ds.test.hrt)  # type: ignore[union-attr]
    other = Dataset.from_split(facts, (0.8, 0.1, 0.1), seed=2)
    assert not torch.equal(other.test.hrt, ds.test.hrt)  # type: ignore[union-attr]


def test_two_ratios_mean_train_and_test() -> None:
    ds = Dataset.from_split(all_umls_facts(), (0.9, 0.1))
    assert ds.valid is None and ds.test is not None


def test_entity_seen_once_always_lands_in_train() -> None:
    dense = [[a, 0, b] for a in range(5) for b in range(5) if a != b]
    hrt = torch.tensor([*dense, [5, 1, 6]])
    for seed in range(20):
        train, valid, test = split_indices(hrt, (0.6, 0.2, 0.2), seed=seed)
        assert 20 in train.tolist()  # the only triple with entities 5, 6 and relation 1
        assert sorted([*train.tolist(), *valid.tolist(), *test.tolist()]) == list(range(21))


def test_impossible_or_malformed_ratios_are_clear_errors() -> None:
    chain = torch.tensor([[i, 0, i + 1] for i in range(10)])  # every triple is needed for coverage
    with pytest.raises(DataError, match="must stay in train"):
        split_indices(chain, (0.5, 0.25, 0.25))
    with pytest.raises(DataError, match="summing to 1"):
        split_indices(chain, (0.5, 0.6))
