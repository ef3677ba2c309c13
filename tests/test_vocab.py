from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_unusual_but_safe_labels_round_trip(tmp_path) -> None:
    vocab = Vocabulary([" padded ", "a\xa0b", "a\u200bb", '"quoted"', "#comment", "NA", "\ufeffbom", "\U0001f600"])
    vocab.save(tmp_path / "v.tsv")
    assert Vocabulary.load(tmp_path / "v.tsv") == vocab


@pytest.mark.parametrize("label", ["a\x85b", "a\u2028b", "a\u2029b", "\x7f", "a\x9fb"])
def test_labels_with_unicode_line_breaks_or_controls_are_refused(tmp_path, label) -> None:
    """NEL, the line and paragraph separators and the C1 controls are line breaks to str.splitlines and editors."""
    with pytest.raises(DataError, match="control character"):
        Vocabulary(["ok", label]).save(tmp_path / "v.tsv")


def test_load_rejects_bad_lines(tmp_path) -> None:
    path = tmp_path / "v.tsv"
    path.write_text("0\ta\n2\tb\n")
    with pytest.raises(DataError, match=r"v.tsv:2: expected '1<TAB>label'"):
        Vocabulary.load(path)


@pytest.mark.parametrize(("label", "problem"), [
    ("a\tb", "control character '\\t'"), ("a\nb", "control character '\\n'"),
    ("a\rb", "control character '\\r'"), ("a\x00b", "control character '\\x00'"), ("", "empty label"),
    ("a\ud800", "not encodable as UTF-8"),
])
def test_save_rejects_labels_that_cannot_be_read_back(tmp_path, label: str, problem: str) -> None:
    with pytest.raises(DataError, match=rf"cannot save entity vocabulary .*: label 1 {re.escape(repr(label))}: "
                                        rf"{re.escape(problem)}"):
        Vocabulary(["ok", label], kind="entity").save(tmp_path / "v.tsv")
    assert not (tmp_path / "v.tsv").exists()


@settings(max_examples=150, deadline=None)
@given(labels=st.lists(st.text(st.characters(), max_size=8), min_size=1, max_size=8, unique=True))
def test_saved_vocabulary_always_reads_back(tmp_path_factory, labels: list[str]) -> None:
    """Whatever the labels, ``save`` either refuses with a DataError or writes a file ``load`` reads back equal."""
    path = tmp_path_factory.mktemp("vocab") / "v.tsv"
    vocab = Vocabulary(labels)
    try:
        vocab.save(path)
    except DataError:
        assert not path.exists()
        return
    assert Vocabulary.load(path) == vocab


def test_a_file_vocabulary_reads_its_labels_only_when_asked_and_saves_by_copying(tmp_path) -> None:
    from kgem.data.vocab import FileVocabulary

    Vocabulary(["b", "a", "c"], kind="entity").save(tmp_path / "v.tsv")
    lazy = FileVocabulary(tmp_path / "v.tsv", kind="entity")
    assert len(lazy) == 3 and lazy._index is None
    lazy.save(tmp_path / "copy.tsv")
    assert (tmp_path / "copy.tsv").read_bytes() == (tmp_path / "v.tsv").read_bytes() and lazy._index is None
    assert lazy == FileVocabulary(tmp_path / "copy.tsv") and lazy._index is None  # compared by their bytes
    Vocabulary(["b", "a", "d"]).save(tmp_path / "other.tsv")
    assert lazy != FileVocabulary(tmp_path / "other.tsv")
    assert lazy.lookup(["c", "z"]).tolist() == [2, -1] and lazy == Vocabulary(["b", "a", "c"])
    with pytest.raises(DataError, match="unknown entity 'z'"):
        lazy.ids(["z"])
