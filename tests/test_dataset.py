from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
import torch

from kgem.cli import build_parser
from kgem.cli.train import overrides_from_flags
from kgem.configs import DataConfig
from kgem.data import Dataset, load_dataset, relation_categories
from kgem.errors import ConfigError, DataError
from kgem.pipeline import load_data, pipeline, resolve_config


def test_unseen_entities_error_names_count_and_examples(toy_folder) -> None:
    expected = r"test.txt: 1 triples .* never occurs in train, e.g. \[\['d', 'likes', 'a'\]\]"
    with pytest.raises(DataError, match=expected):
        Dataset.from_folder(toy_folder, on_unseen="error")


def test_unseen_entities_dropped_and_counted(toy_folder) -> None:
    ds = Dataset.from_folder(toy_folder)
    assert ds.test is not None and len(ds.test) == 1 and ds.test.stats["unseen"] == 1
    assert ds.summary().loc["test", "dropped_unseen"] == 1
    assert ds.num_entities == 3 and ds.num_relations == 2


def test_unseen_entities_kept_join_the_vocabulary_after_trains(toy_folder) -> None:
    dropped, kept = (Dataset.from_folder(toy_folder, on_unseen=u) for u in ("drop", "keep"))
    assert kept.entities.labels.tolist() == ["a", "b", "c", "d"] and kept.num_relations == 2
    assert torch.equal(kept.train.hrt, dropped.train.hrt) and kept.train.entities is kept.entities
    likes = int(kept.relations.ids(["likes"])[0])
    assert kept.test is not None and kept.test.hrt.tolist() == [[2, likes, 0], [3, likes, 0]]
    assert kept.valid is not None and kept.valid.hrt.tolist() == dropped.valid.hrt.tolist()  # type: ignore[union-attr]
    assert kept.summary()["kept_unseen"].tolist() == [0, 0, 1] and "kept_unseen" not in dropped.summary()
    train = pd.DataFrame({"head": ["a"], "relation": ["r"], "tail": ["b"]})
    valid = pd.DataFrame({"head": ["b", "e"], "relation": ["s", "r"], "tail": ["a", "b"]})  # relation s, entity e
    ds = Dataset.from_dfs(train, valid, on_unseen="keep")
    assert ds.entities.labels.tolist() == ["a", "b", "e"] and ds.relations.labels.tolist() == ["r", "s"]
    assert ds.valid is not None and ds.valid.hrt.tolist() == [[1, 1, 0], [2, 0, 1]]
    with pytest.raises(DataError, match="'error', 'drop' or 'keep'"):
        Dataset.from_folder(toy_folder, on_unseen="skip")  # type: ignore[arg-type]


def test_a_run_that_keeps_unseen_entities_ranks_their_test_triples(toy_folder) -> None:
    ranked = {}
    for unseen in ("drop", "keep"):
        result = pipeline({"data": {"dataset": str(toy_folder), "on_unseen": unseen},
                           "model": {"name": "distmult", "dim": 4}, "training": {"epochs": 2}}, progress=False)
        assert result.evaluation is not None and result.model.num_entities == (3 if unseen == "drop" else 4)
        ranked[unseen] = len(result.evaluation.ranks)
    assert ranked == {"drop": 2, "keep": 4}  # test: (c likes a) and, kept, (d likes a); head and tail each


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


def facts_file(path: Path, header: str | None, extra: str = "") -> Path:
    rows = [f"e{i % 10}\tr{i % 3}\te{i // 3}{extra}" for i in range(30)]
    path.write_text("".join(line + "\n" for line in ([header] if header else []) + rows))
    return path


def test_header_option_reaches_the_reader(tmp_path, caplog) -> None:
    path = facts_file(tmp_path / "facts.tsv", "head\trelation\ttail")
    with caplog.at_level(logging.WARNING, logger="kgem"):
        plain = load_data(DataConfig(dataset=str(path), split=[1.0, 0.0, 0.0]))
    assert "head" in plain.entities.labels and "facts.tsv:1: the first line" in caplog.text
    caplog.clear()
    skipped = load_data(DataConfig(dataset=str(path), split=[1.0, 0.0, 0.0], header=True))
    assert "head" not in skipped.entities.labels and len(skipped.train) == 30
    assert "looks like a header" not in caplog.text
    assert DataConfig().header is False


def test_header_flag_on_kgem_train() -> None:
    parse = build_parser().parse_args
    assert "data.header=True" in overrides_from_flags(parse(["train", "--header"]))
    assert resolve_config(None, overrides_from_flags(parse(["train", "--header"]))).data.header is True
    assert not any(o.startswith("data.header") for o in overrides_from_flags(parse(["train"])))


def test_extra_columns_option_reaches_the_reader(tmp_path) -> None:
    path = facts_file(tmp_path / "weighted.tsv", None, extra="\t0.5")
    with pytest.raises(DataError, match=r"weighted.tsv:1: 4 fields.*extra_columns"):
        load_data(DataConfig(dataset=str(path)))
    ds = load_data(resolve_config(None, [f"data.dataset={path}", "data.extra_columns=ignore"]).data)
    assert len(ds.train) + len(ds.valid) + len(ds.test) == 30
    assert DataConfig().extra_columns == "error"


def test_readme_unseen_default_is_drop_with_warning(toy_folder, caplog) -> None:
    """The README says unseen valid/test triples are dropped by default with a warning; every entry point agrees."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert "unseen in train are dropped by default" in " ".join(readme.split())
    train = pd.read_csv(toy_folder / "train.txt", sep="\t", header=None, names=["head", "relation", "tail"])
    test = pd.read_csv(toy_folder / "test.txt", sep="\t", header=None, names=["head", "relation", "tail"])
    loaders = {
        "load_dataset": lambda: load_dataset("toy", path=toy_folder),
        "from_folder": lambda: Dataset.from_folder(toy_folder),
        "from_files": lambda: Dataset.from_files(toy_folder / "train.txt", None, toy_folder / "test.txt"),
        "from_dfs": lambda: Dataset.from_dfs(train, test=test),
        "config": lambda: load_data(DataConfig(dataset=str(toy_folder))),
    }
    for name, load in loaders.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="kgem"):
            ds = load()
        assert ds.test is not None and ds.test.hrt.tolist() == [[2, 1, 0]] and ds.test.stats["unseen"] == 1, name
        drops = [r.getMessage() for r in caplog.records if "unseen" in r.getMessage()]
        assert len(drops) == 1 and "dropped 1 of 2 triples" in drops[0], (name, drops)
        assert "('d', 'likes', 'a')" in drops[0] and "on_unseen='error'" in drops[0], (name, drops)
    with pytest.raises(DataError, match="1 triples have an entity or relation that never occurs in train"):
        load_dataset("toy", path=toy_folder, on_unseen="error")


def test_quotechar_option_reads_csv_fields_that_hold_the_delimiter(tmp_path) -> None:
    """A CSV written by pandas or a spreadsheet quotes 'carol, jr'; data.quotechar / --quotechar reads it."""
    folder = tmp_path / "quoted"
    folder.mkdir()
    rows = ['"carol, jr",likes,bob', 'bob,likes,"carol, jr"', 'bob,knows,"dave ""d"""']
    (folder / "train.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match="4 fields, .* If a quoted field holds the delimiter, read with quotechar"):
        load_data(DataConfig(dataset=str(folder)))
    ds = load_data(DataConfig(dataset=str(folder), quotechar='"'))
    assert sorted(ds.entities.labels) == ["bob", "carol, jr", 'dave "d"']
    args = build_parser().parse_args(["train", "--quotechar", '"'])
    assert resolve_config(None, overrides_from_flags(args)).data.quotechar == '"'
    with pytest.raises(ConfigError, match="data.quotechar must be one character"):
        DataConfig(quotechar="''")
