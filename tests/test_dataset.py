from __future__ import annotations

import pandas as pd
import pytest
import torch

from kgem.data import Dataset, load_dataset, relation_categories
from kgem.errors import DataError


def test_unseen_entities_error_names_count_and_examples(toy_folder) -> None:
    expected = r"test.txt: 1 triples .* never occurs in train, e.g. \[\['d', 'likes', 'a'\]\]"
    with pytest.raises(DataError, match=expected):
        Dataset.from_folder(toy_folder)


def test_unseen_entities_dropped_and_counted(toy_folder) -> None:
    ds = Dataset.from_folder(toy_folder, on_unseen="drop")
    assert ds.test is not None and len(ds.test) == 1 and ds.test.stats["unseen"] == 1
    assert ds.summary().loc["test", "dropped_unseen"] == 1
    assert ds.num_entities == 3 and ds.num_relations == 2


def test_bundled_datasets_match_published_counts() -> None:
    for name, counts in {"nations": (14, 55, 1592, 199, 201), "umls": (135, 46, 5216, 652, 661),
                         "kinships": (104, 25, 8544, 1068, 1074)}.items():
        ds = load_dataset(name)
        assert (ds.num_entities, ds.num_relations, *(len(t) for t in ds.splits().values())) == counts


def test_known_filters_all_splits(toy_folder) -> None:
    ds = Dataset.from_folder(toy_folder, on_unseen="drop")
    assert len(ds.known()) == 6 and len(ds.known(["train"])) == 4
    with pytest.raises(DataError, match="unknown split"):
        ds.known(["training"])


def test_from_dataframes_share_vocabulary() -> None:
    train = pd.DataFrame({"head": ["a", "b"], "relation": ["r", "r"], "tail": ["b", "c"]})
    test = pd.DataFrame({"head": ["c"], "relation": ["r"], "tail": ["a"]})
    ds = Dataset.from_dfs(train, test=test)
    assert ds.test is not None and ds.test.hrt.tolist() == [[2, 0, 0]]


def test_add_inverse_doubles_relations() -> None:
    ds = load_dataset("nations")
    inv = ds.train.add_inverse()
    assert inv.num_relations == 2 * ds.num_relations and len(inv) == 2 * len(ds.train)
    n, R = len(ds.train), ds.num_relations
    assert torch.equal(inv.hrt[n:], torch.stack([ds.train.hrt[:, 2], ds.train.hrt[:, 1] + R, ds.train.hrt[:, 0]], 1))
    assert inv.relations.labels[R] == f"{ds.relations.labels[0]}__inverse"


def test_relation_categories_hand_made() -> None:
    hrt = torch.tensor([
        [0, 0, 1], [2, 0, 3],              # r0: 1-1
        [0, 1, 1], [0, 1, 2], [0, 1, 3],   # r1: one head, many tails: 1-N
        [1, 2, 0], [2, 2, 0], [3, 2, 0],   # r2: N-1
        [0, 3, 1], [0, 3, 2], [1, 3, 1], [1, 3, 2],  # r3: N-N
    ])
    assert relation_categories(hrt, 4).tolist() == ["1-1", "1-N", "N-1", "N-N"]


def test_describe_and_str() -> None:
    ds = load_dataset("umls")
    info = ds.describe()
    assert info["relation_categories"].sum() == ds.num_relations
    assert info["degrees"].loc["out", "mean"] == pytest.approx(len(ds.train) / ds.num_entities)
    assert "umls: 135 entities, 46 relations" in str(ds)


def test_missing_train_file(tmp_path) -> None:
    with pytest.raises(DataError, match="no training file"):
        Dataset.from_folder(tmp_path)
