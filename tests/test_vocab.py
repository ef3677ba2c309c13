from __future__ import annotations

import numpy as np
import pytest

from kgem.data import Vocabulary
from kgem.errors import DataError


def test_from_labels_sorted_and_deterministic() -> None:
    a = Vocabulary.from_labels(["c", "a", "b", "a"])
    b = Vocabulary.from_labels(["b", "c", "a"])
    assert list(a.labels) == ["a", "b", "c"]
    assert a == b
    assert a.ids(["c", "a"]).tolist() == [2, 0]
    assert a.lookup(["zzz", "b"]).tolist() == [-1, 1]
    assert list(a.to_labels(np.array([1, 2]))) == ["b", "c"]


def test_unknown_label_suggests_close_match() -> None:
    vocab = Vocabulary.from_labels(["germany", "france"], kind="entity")
    with pytest.raises(DataError, match="unknown entity 'germnay'.*germany"):
        vocab.ids(["germnay"])


def test_duplicates_rejected() -> None:
    with pytest.raises(DataError, match="duplicate label 'x'"):
        Vocabulary(["x", "y", "x"])


def test_save_load_round_trip(tmp_path) -> None:
    vocab = Vocabulary.from_labels(["/m/027rn", "00260881", "with space", "ünïcode"])
    vocab.save(tmp_path / "v.tsv")
    assert Vocabulary.load(tmp_path / "v.tsv") == vocab
    assert (tmp_path / "v.tsv").read_text(encoding="utf-8").splitlines()[0] == "0\t/m/027rn"


def test_load_rejects_bad_lines(tmp_path) -> None:
    path = tmp_path / "v.tsv"
    path.write_text("0\ta\n2\tb\n")
    with pytest.raises(DataError, match=r"v.tsv:2: expected '1<TAB>label'"):
        Vocabulary.load(path)


def test_save_rejects_tab_in_label(tmp_path) -> None:
    with pytest.raises(DataError, match="tab or newline"):
        Vocabulary(["a\tb"]).save(tmp_path / "v.tsv")
