from __future__ import annotations

import gzip
import logging
import re
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kgem
from kgem.cli import main
from kgem.data import Dataset, Triples, Vocabulary, read_triples, triples_from_df
from kgem.data.readers import iter_label_chunks, order_to_columns
from kgem.errors import DataError
from kgem.models import build_model
from kgem.saving import save_model

ROWS = [("a", "likes", "b"), ("b", "likes", "c"), ("c", "knows", "a")]


def write(path, text: str | bytes) -> None:
    path.write_bytes(text.encode() if isinstance(text, str) else text)


def labels(triples: Triples) -> list[tuple[str, str, str]]:
    return [tuple(row) for row in triples.to_df()[["head", "relation", "tail"]].itertuples(index=False)]


def test_tsv_ids_are_sorted_labels(tmp_path) -> None:
    write(tmp_path / "t.txt", "".join("\t".join(r) + "\n" for r in ROWS))
    triples = read_triples(tmp_path / "t.txt")
    assert list(triples.entities.labels) == ["a", "b", "c"]
    assert list(triples.relations.labels) == ["knows", "likes"]
    assert triples.hrt.tolist() == [[0, 1, 1], [1, 1, 2], [2, 0, 0]]
    assert triples.hrt.dtype == torch.int64


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
@pytest.mark.parametrize("gz", [False, True])
def test_line_endings_and_gzip(tmp_path, ending: str, gz: bool) -> None:
    data = "".join("\t".join(r) + ending for r in ROWS).encode()
    path = tmp_path / ("t.txt.gz" if gz else "t.txt")
    write(path, gzip.compress(data) if gz else data)
    assert labels(read_triples(path)) == ROWS


def test_no_trailing_newline_and_blank_lines(tmp_path) -> None:
    write(tmp_path / "t.txt", "a\tlikes\tb\n\nb\tlikes\tc\nc\tknows\ta")
    assert labels(read_triples(tmp_path / "t.txt")) == ROWS


def test_small_chunks_give_same_result(tmp_path) -> None:
    rng = np.random.default_rng(0)
    rows = [(f"e{rng.integers(50)}", f"r{rng.integers(5)}", f"e{rng.integers(50)}") for _ in range(500)]
    write(tmp_path / "t.txt", "".join("\t".join(r) + "\r\n" for r in rows))
    chunks = list(iter_label_chunks(tmp_path / "t.txt", chunk_bytes=97))
    assert len(chunks) > 10
    assert [tuple(r) for r in np.concatenate(chunks).tolist()] == rows


def test_write_read_round_trip(tmp_path) -> None:
    write(tmp_path / "t.txt", "".join("\t".join(r) + "\n" for r in ROWS))
    original = read_triples(tmp_path / "t.txt")
    original.write(tmp_path / "copy.tsv")
    again = read_triples(tmp_path / "copy.tsv")
    assert torch.equal(again.hrt, original.hrt)
    assert again.entities == original.entities and again.relations == original.relations


def test_csv_with_header_columns_by_name_and_quotes(tmp_path) -> None:
    write(tmp_path / "t.csv", 'object,subject,predicate,weight\nb,a,likes,1\n"c, inc",b,likes,2\na,c,knows,3\n')
    triples = read_triples(tmp_path / "t.csv", delimiter=",", header=True, quotechar='"',
                           columns=("subject", "predicate", "object"), extra_columns="ignore")
    assert labels(triples) == [("a", "likes", "b"), ("b", "likes", "c, inc"), ("c", "knows", "a")]


def test_dglke_raw_column_orders(tmp_path) -> None:
    write(tmp_path / "t.tsv", "".join(f"{h}\t{t}\t{r}\n" for h, r, t in ROWS))
    assert labels(read_triples(tmp_path / "t.tsv", columns=order_to_columns("htr"))) == ROWS
    with pytest.raises(DataError, match="permutation"):
        order_to_columns("hrx")


def test_dglke_udd_id_format(tmp_path) -> None:
    write(tmp_path / "entities.dict", "0\ta\n1\tb\n2\tc\n")
    write(tmp_path / "relations.dict", "1\tlikes\n0\tknows\n")
    write(tmp_path / "train.tsv", "0\t1\t1\n1\t2\t1\n2\t0\t0\n")  # order htr
    ds = Dataset.from_id_files(tmp_path, order="htr")
    assert labels(ds.train) == ROWS
    assert ds.valid is None
    write(tmp_path / "train.tsv", "0\tx\t1\n")
    with pytest.raises(DataError, match="integer ids"):
        Dataset.from_id_files(tmp_path)
    write(tmp_path / "train.tsv", "0\t7\t1\n")
    with pytest.raises(DataError, match="out of range"):
        Dataset.from_id_files(tmp_path)


def test_dataframe_reader() -> None:
    frame = pd.DataFrame(ROWS, columns=["head", "relation", "tail"])
    assert labels(triples_from_df(frame)) == ROWS
    with pytest.raises(DataError, match="no column"):
        triples_from_df(frame.rename(columns={"tail": "object"}))
    frame.loc[1, "tail"] = None
    with pytest.raises(DataError, match="row 1: empty field"):
        triples_from_df(frame)


@pytest.mark.parametrize(("text", "lineno", "problem"), [
    ("a\tr\tb\na\tr\nb\tr\tc\n", 2, "expected 3 fields, found 2"),
    ("a\tr\tb\nb\tr\tc\nx\ty\tz\tw\n", 3, "expected 3 fields, found 4"),
    ("a\tr\tb\na\t\tc\n", 2, "empty field"),
    ("a\tr\tb\na\tr\t\n", 2, "empty field"),
    ("a\tr\tb\n\tr\tc\n", 2, "empty field"),
])
def test_malformed_line_names_file_line_and_text(tmp_path, text: str, lineno: int, problem: str) -> None:
    write(tmp_path / "bad.txt", text)
    with pytest.raises(DataError, match=rf"bad.txt:{lineno}: {problem}: '"):
        read_triples(tmp_path / "bad.txt")


def test_undecodable_bytes(tmp_path) -> None:
    write(tmp_path / "bad.txt", b"a\tr\tb\nb\tr\t\xff\xfe\n")
    with pytest.raises(DataError, match=r"bad.txt:2: undecodable bytes"):
        read_triples(tmp_path / "bad.txt")


def test_empty_and_missing_files(tmp_path) -> None:
    write(tmp_path / "empty.txt", "")
    with pytest.raises(DataError, match="empty"):
        read_triples(tmp_path / "empty.txt")
    write(tmp_path / "blank.txt", "\n\n")
    with pytest.raises(DataError, match="empty"):
        read_triples(tmp_path / "blank.txt")
    with pytest.raises(DataError, match="no such file"):
        read_triples(tmp_path / "missing.txt")


def test_corrupt_gzip(tmp_path) -> None:
    write(tmp_path / "t.txt.gz", gzip.compress(b"a\tr\tb\n" * 100)[:30])
    with pytest.raises(DataError, match="cannot read"):
        read_triples(tmp_path / "t.txt.gz")


def test_duplicates_counted_kept_or_dropped(tmp_path) -> None:
    write(tmp_path / "t.txt", "a\tr\tb\nb\tr\tc\na\tr\tb\na\tr\tb\n")
    kept = read_triples(tmp_path / "t.txt")
    assert len(kept) == 4 and kept.stats["duplicates"] == 2
    dropped = read_triples(tmp_path / "t.txt", on_duplicates="drop")
    assert dropped.hrt.tolist() == [[0, 0, 1], [1, 0, 2]] and dropped.stats["duplicates"] == 2


def test_fixed_vocabulary_keeps_ids(tmp_path) -> None:
    write(tmp_path / "t.txt", "c\tknows\ta\n")
    entities, relations = Vocabulary.from_labels("abc"), Vocabulary.from_labels(["knows", "likes"])
    assert read_triples(tmp_path / "t.txt", entities=entities, relations=relations).hrt.tolist() == [[2, 0, 0]]


label = st.text(alphabet=string.ascii_letters + string.digits + " ./_-é", min_size=1, max_size=6)
good_line = st.tuples(label, label, label).map(lambda r: "\t".join(r))
bad_line = st.one_of(
    st.lists(label, min_size=1, max_size=6).filter(lambda xs: len(xs) != 3).map("\t".join),
    st.tuples(label, label).map(lambda r: f"{r[0]}\t\t{r[1]}"),
    st.tuples(label, label).map(lambda r: f"{r[0]}\t{r[1]}\t"),
)


@settings(max_examples=150, deadline=None)
@given(before=st.lists(good_line, max_size=5), bad=bad_line, after=st.lists(good_line, max_size=5),
       crlf=st.booleans(), garbage=st.booleans())
def test_random_bad_lines_always_raise_data_error(tmp_path_factory, before, bad, after, crlf, garbage) -> None:
    path = tmp_path_factory.mktemp("prop") / "t.txt"
    end = "\r\n" if crlf else "\n"
    lines = [line.encode() for line in ["a\tr\tb", *before, bad, *after]]
    if garbage:  # undecodable bytes at the end of the bad line
        lines[len(before) + 1] += b"\xc3\x28"
    path.write_bytes(end.encode().join(lines) + end.encode())
    with pytest.raises(DataError) as info:
        read_triples(path)
    assert str(path) in str(info.value)
    assert f":{len(before) + 2}:" in str(info.value)


@pytest.mark.parametrize(("name", "data", "char", "options"), [
    ("cr.txt", b"a\tr\tb\nc\rd\tr\te\n", "\\r", {}),
    ("nul.txt", b"a\tr\tb\nc\x00d\tr\te\n", "\\x00", {}),
    ("vt.txt", b"a\tr\tb\nc\x0bd\tr\te\n", "\\x0b", {}),
    ("tab.csv", b'a,r,b\nc\td,r,e\n', "\\t", {"delimiter": ","}),
    ("qtab.csv", b'a,r,b\n"c\td",r,e\n', "\\t", {"delimiter": ",", "quotechar": '"'}),
    ("qcr.csv", b'a,r,b\n"c\rd",r,e\n', "\\r", {"delimiter": ",", "quotechar": '"'}),
    ("qnl.csv", b'a,r,b\n"c\nd",r,e\nx,r,y\n', "\\n", {"delimiter": ",", "quotechar": '"'}),
    ("qnul.csv", b'a,r,b\n"c\x00d",r,e\n', "\\x00", {"delimiter": ",", "quotechar": '"'}),
    ("del.txt", b"a\tr\tb\nc\x7fd\tr\te\n", "\\x7f", {}),
    ("nel.txt", "a\tr\tb\nc\x85d\tr\te\n".encode(), "\\x85", {}),
    ("c1.txt", "a\tr\tb\nc\x9fd\tr\te\n".encode(), "\\x9f", {}),
    ("ls.txt", "a\tr\tb\nc\u2028d\tr\te\n".encode(), "\\u2028", {}),
    ("ps.txt", "a\tr\tb\nc\u2029d\tr\te\n".encode(), "\\u2029", {}),
    ("qnel.csv", 'a,r,b\n"c\x85d",r,e\n'.encode(), "\\x85", {"delimiter": ",", "quotechar": '"'}),
])
def test_control_character_in_label_names_file_line_and_character(tmp_path, name, data, char, options) -> None:
    """A label with a tab, CR, LF, NUL or other control character could not be saved and read back as a TSV
    vocabulary (a stray CR used to split the line into an extra triple of empty labels)."""
    write(tmp_path / name, data)
    with pytest.raises(DataError, match=rf"{name}:2: control character '{re.escape(char)}' in a label"):
        read_triples(tmp_path / name, **options)


def test_lone_cr_at_end_of_file_is_a_line_ending(tmp_path) -> None:
    write(tmp_path / "t.txt", "a\tlikes\tb\r\nb\tlikes\tc\r\nc\tknows\ta\r")
    assert labels(read_triples(tmp_path / "t.txt")) == ROWS


def test_undecodable_bytes_in_quoted_file(tmp_path) -> None:
    write(tmp_path / "bad.csv", b'a,r,b\n"c",r,\xff\n')
    with pytest.raises(DataError, match=r"bad.csv:2: undecodable bytes"):
        read_triples(tmp_path / "bad.csv", delimiter=",", quotechar='"')


def test_dataframe_label_with_control_character_names_row() -> None:
    frame = pd.DataFrame([("a", "r", "b"), ("c\td", "r", "e")], columns=["head", "relation", "tail"])
    with pytest.raises(DataError, match=r"DataFrame row 1: control character '\\t' in a label"):
        triples_from_df(frame)


def test_readme_read_triples_example_with_bom(tmp_path, monkeypatch) -> None:
    """The README's own CSV example, run as written on a file that starts with a UTF-8 byte order mark."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    example = re.search(r"`(kgem\.read_triples\(path, [^`]*\))`", readme)
    assert example is not None, "the README no longer shows kgem.read_triples(path, ...)"
    path = tmp_path / "facts.csv"
    write(path, b"\xef\xbb\xbfs,p,o\na,likes,b\nb,likes,c\nc,knows,a\n")
    triples = eval(example.group(1), {"kgem": kgem, "path": path})
    assert labels(triples) == ROWS


@pytest.mark.parametrize(("gz", "quotechar"), [(False, None), (True, None), (False, '"')])
def test_bom_stripped_without_header(tmp_path, gz: bool, quotechar: str | None) -> None:
    data = b"\xef\xbb\xbf" + "".join("\t".join(r) + "\n" for r in ROWS).encode() + b'"d"\tknows\ta\n'
    path = tmp_path / ("t.txt.gz" if gz else "t.txt")
    write(path, gzip.compress(data) if gz else data)
    assert labels(read_triples(path, quotechar=quotechar))[:3] == ROWS


def test_bom_stripped_in_dglke_dict(tmp_path) -> None:
    write(tmp_path / "entities.dict", b"\xef\xbb\xbf0\ta\n1\tb\n2\tc\n")
    write(tmp_path / "relations.dict", b"\xef\xbb\xbf0\tknows\n1\tlikes\n")
    write(tmp_path / "train.tsv", b"\xef\xbb\xbf0\t1\t1\n1\t1\t2\n2\t0\t0\n")
    assert labels(Dataset.from_id_files(tmp_path).train) == ROWS


NA_LIKE = ["NA", "null", "NaN", "None", "nan", "N/A", "#N/A", "<NA>", "NULL", "-nan", "n/a", "1.#IND"]


@pytest.mark.parametrize("options", [{}, {"delimiter": ",", "quotechar": '"'}])
def test_na_like_labels_are_strings(tmp_path, options) -> None:
    sep = options.get("delimiter", "\t")
    rows = [(NA_LIKE[i], NA_LIKE[(i + 1) % len(NA_LIKE)], NA_LIKE[(i + 2) % len(NA_LIKE)]) for i in range(12)]
    write(tmp_path / "t.txt", "".join(sep.join(r) + "\n" for r in rows) + '"q",r,"s"\n'.replace(",", sep))
    assert labels(read_triples(tmp_path / "t.txt", **options))[:12] == rows


def test_predict_file_reads_na_like_labels_as_strings(tmp_path, capsys) -> None:
    entities, relations = Vocabulary(["null", "NaN", "None"]), Vocabulary(["NA"])
    spec = {"name": "distmult", "dim": 4, "inverse": False, "args": {}}
    model = build_model("distmult", len(entities), len(relations), dim=4, inverse=False)
    save_model(model, tmp_path / "model", entities=entities, relations=relations, spec=spec)
    write(tmp_path / "q.csv", "head,relation\nnull,NA\nNone,NA\n")
    assert main(["predict", str(tmp_path / "model"), "--file", str(tmp_path / "q.csv"), "-k", "1"]) == 0
    out = capsys.readouterr().out.split("\n")
    assert out[1].split()[:2] == ["null", "NA"] and out[2].split()[:2] == ["None", "NA"], out


def test_extra_column_is_an_error_naming_the_option(tmp_path) -> None:
    """A 4th column (an edge weight, as DGL-KE's --has_edge_importance writes) is not silently dropped."""
    write(tmp_path / "w.txt", "\n" + "".join("\t".join(r) + "\t0.5\n" for r in ROWS))
    with pytest.raises(DataError, match=r"w.txt:2: 4 fields, but only 3 columns are read .*extra_columns='ignore'"):
        read_triples(tmp_path / "w.txt")
    assert labels(read_triples(tmp_path / "w.txt", extra_columns="ignore")) == ROWS
    write(tmp_path / "w.csv", 'weight,object,subject,predicate\n1,b,a,likes\n2,"c, inc",b,likes\n')
    with pytest.raises(DataError, match=r"w.csv:1: 4 fields"):
        read_triples(tmp_path / "w.csv", delimiter=",", header=True, quotechar='"',
                     columns=("subject", "predicate", "object"))
    with pytest.raises(DataError, match="extra_columns must be 'error' or 'ignore'"):
        read_triples(tmp_path / "w.txt", extra_columns="drop")  # type: ignore[arg-type]


def test_header_like_first_line_warns_once(tmp_path, caplog) -> None:
    write(tmp_path / "h.tsv", "Subject\tPredicate\tObject\n" + "".join("\t".join(r) + "\n" for r in ROWS))
    with caplog.at_level(logging.WARNING, logger="kgem"):
        triples = read_triples(tmp_path / "h.tsv")
    assert len(triples) == 4
    warnings = [r.getMessage() for r in caplog.records if "header" in r.getMessage()]
    assert len(warnings) == 1 and "h.tsv:1" in warnings[0] and "header=True" in warnings[0]
    assert "\n" not in warnings[0]
    caplog.clear()
    assert labels(read_triples(tmp_path / "h.tsv", header=True)) == ROWS
    write(tmp_path / "real.tsv", "h\tr\tt\nt\tr\th\n")  # labels that happen to look like column names
    read_triples(tmp_path / "real.tsv")
    write(tmp_path / "plain.tsv", "".join("\t".join(r) + "\n" for r in ROWS))
    read_triples(tmp_path / "plain.tsv")
    assert not [r for r in caplog.records if "header" in r.getMessage()]


def test_a_file_of_bare_cr_line_endings_says_so(tmp_path) -> None:
    """Not 'expected 3 fields, found 9' or 'extra columns', which would send the user the wrong way."""
    write(tmp_path / "mac.txt", "a\tr\tb\rb\tr\tc\rc\tr\ta\r")
    with pytest.raises(DataError, match=r"mac.txt:1: lines end with a bare CR"):
        read_triples(tmp_path / "mac.txt")


def test_the_delimiter_follows_the_suffix_in_every_reader(tmp_path) -> None:
    """A .csv file is comma-separated whichever door reads it (read_triples, a folder, explicit files, one file to
    split); any other suffix is tab-separated; an explicit delimiter wins."""
    from kgem.data import Dataset

    rows = [f"e{i},r{i % 2},e{i + 1}" for i in range(10)]
    write(tmp_path / "train.csv", "\n".join(rows) + "\n")
    write(tmp_path / "test.csv", "e1,r0,e2\n")
    write(tmp_path / "semi.csv", "a;r;b\n")
    assert list(read_triples(tmp_path / "train.csv").entities.labels[:2]) == ["e0", "e1"]
    assert len(Dataset.from_files(tmp_path / "train.csv", None, tmp_path / "test.csv").test) == 1
    assert len(Dataset.from_folder(tmp_path).train) == 10
    write(tmp_path / "facts.csv", "\n".join(f"e{i % 4},r{i % 2},e{(i * 3 + 1) % 4}" for i in range(40)) + "\n")
    assert Dataset.from_split(tmp_path / "facts.csv", (0.8, 0.1, 0.1)).num_entities == 4
    assert len(read_triples(tmp_path / "semi.csv", delimiter=";")) == 1
