"""Parquet and Arrow tables (``kgem.data.parquet``): triples, weights, embeddings and predictions round-trip exactly;
a Parquet folder is the same dataset as its TSV files; integer labels read as their text; bad tables name the file,
row group and row; reading holds one row group at a time, so ``kgem import`` of a table matches the TSV import; the
command lines write and read tables; without pyarrow every path says which extra installs it."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import kgem
from kgem.cli import main
from kgem.data import Dataset
from kgem.data.imports import import_triples
from kgem.data.parquet import (
    iter_table_chunks,
    read_embeddings,
    read_frame,
    table_format,
    write_embeddings,
    write_frame,
    write_triples,
)
from kgem.data.sources import bundled_folder
from kgem.data.triples import Triples, read_triples
from kgem.errors import ConfigError, DataError
from kgem.saving import load_model

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:  # only the test of the message without it runs
    pa = pq = None

UMLS = bundled_folder("umls")
SPLITS = ("train", "valid", "test")
needs_pyarrow = pytest.mark.skipif(pa is None, reason="needs pyarrow: pip install 'kgem[parquet]'")


def weighted(triples: Triples) -> Triples:
    """The triples with a distinct, non-round float32 weight per edge."""
    values = torch.linspace(0.1, 7.3, len(triples), dtype=torch.float32) ** 2
    return replace(triples, weights=values)


def table_file(path: Path, columns: dict[str, list], *, row_group_size: int) -> Path:
    """A Parquet file of ``columns`` written in row groups of ``row_group_size`` rows."""
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def as_tsv_folder(dataset: Dataset, folder: Path) -> Path:
    folder.mkdir()
    for name, split in dataset.splits().items():
        split.write(folder / f"{name}.txt")
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ComplEx trained on nations, saved with its run (so --remove-known finds the dataset)."""
    out = tmp_path_factory.mktemp("parquet") / "run"
    kgem.pipeline(overrides=["data.dataset=nations", "model.dim=8", "training.epochs=2"], progress=False, output=out)
    return out / "model"


# -- triples ---------------------------------------------------------------------------------------------------------


@needs_pyarrow
def test_triples_with_ids_and_weights_round_trip_exactly(tmp_path) -> None:
    train = weighted(kgem.load_dataset("nations").train)
    path = write_triples(train, tmp_path / "train.parquet", ids=True, row_group_rows=300)
    assert pq.ParquetFile(path).num_row_groups == -(-len(train) // 300)
    table = pq.read_table(path)
    assert table.column_names == ["head", "relation", "tail", "head_id", "relation_id", "tail_id", "weight"]
    ids = np.stack([table.column(f"{name}_id").to_numpy() for name in ("head", "relation", "tail")], axis=1)
    assert np.array_equal(ids, train.hrt.numpy())
    back = read_triples(path, edge_weights="weight", extra_columns="ignore")
    assert back.entities == train.entities and back.relations == train.relations
    assert torch.equal(back.hrt, train.hrt)
    assert back.weights is not None and back.weights.dtype == torch.float32
    assert torch.equal(back.weights.view(torch.int32), train.weights.view(torch.int32))  # bit-exact


@needs_pyarrow
def test_triples_write_picks_the_table_by_suffix_and_arrow_files_read_alike(tmp_path) -> None:
    train = kgem.load_dataset("nations").train
    for name in ("t.parquet", "t.pq", "t.feather", "t.arrow"):
        train.write(tmp_path / name)
        back = read_triples(tmp_path / name)
        assert torch.equal(back.hrt, train.hrt) and back.entities == train.entities, name
    assert [table_format(tmp_path / name) for name in ("t.parquet", "t.feather")] == ["parquet", "arrow"]
    (tmp_path / "misnamed.txt").write_bytes((tmp_path / "t.parquet").read_bytes())  # told by its magic bytes
    assert torch.equal(read_triples(tmp_path / "misnamed.txt").hrt, train.hrt)
    train.write(tmp_path / "t.tsv")  # other names stay TSV
    assert table_format(tmp_path / "t.tsv") is None and torch.equal(read_triples(tmp_path / "t.tsv").hrt, train.hrt)


@needs_pyarrow
def test_a_parquet_folder_is_the_same_dataset_as_its_tsv_files(tmp_path) -> None:
    original = Dataset.from_folder(UMLS)
    folder = tmp_path / "umls_parquet"
    for name, split in original.splits().items():
        write_triples(split, folder / f"{name}.parquet", row_group_rows=1000)
    read = Dataset.from_folder(folder)
    assert read.entities == original.entities and read.relations == original.relations
    for name, split in original.splits().items():
        assert torch.equal(read.splits()[name].hrt, split.hrt), name


@needs_pyarrow
def test_integer_label_columns_read_as_their_text_like_a_tsv_file(tmp_path) -> None:
    heads, tails = [7, 12, 7, 300, 12], [12, 300, 5, 7, 7]
    relations = pa.array(["a", "b", "a", "c", "b"]).dictionary_encode()
    path = table_file(tmp_path / "ints.parquet", {"src": pa.array(heads, pa.int32()), "rel": relations,
                                                  "dst": pa.array(tails, pa.uint64())}, row_group_size=2)
    (tmp_path / "ints.tsv").write_text("".join(f"{h}\t{r}\t{t}\n" for h, r, t in zip(heads, "abacb", tails)))
    from_table, from_text = read_triples(path, columns=("src", "rel", "dst")), read_triples(tmp_path / "ints.tsv")
    assert list(from_table.entities.labels) == ["12", "300", "5", "7"]
    assert from_table.entities == from_text.entities and from_table.relations == from_text.relations
    assert torch.equal(from_table.hrt, from_text.hrt)
    assert torch.equal(read_triples(path).hrt, from_text.hrt)  # the same columns by position


# -- bad tables ------------------------------------------------------------------------------------------------------


@needs_pyarrow
def test_a_null_names_the_file_row_group_and_row(tmp_path) -> None:
    tails = ["b", "c", "d", "e", "f", "g", None, "i", "j"]
    path = table_file(tmp_path / "nulls.parquet", {"head": ["a"] * 9, "relation": ["r"] * 9, "tail": tails},
                      row_group_size=4)
    with pytest.raises(DataError) as error:
        read_triples(path)
    assert str(error.value) == f"{path}: row group 1, row 2 (file row 6): null tail (column 'tail')"


@needs_pyarrow
@pytest.mark.parametrize(("column", "values", "problem"), [
    ("w", [1.0, 2.0, None, 4.0, 5.0], "row group 1, row 0 (file row 2): null edge weight (column 'w')"),
    ("w", [1.0, 2.0, 3.0, 4.0, float("nan")], "row group 2, row 0 (file row 4): edge weight nan is not a finite "
                                               "number (column 'w')"),
    ("relation", ["r", "r", "r", "", "r"], "row group 1, row 1 (file row 3): empty label (relation '')"),
    ("head", ["a", "a\tb", "a", "a", "a"], "row group 0, row 1 (file row 1): control character '\\t' in a label "
                                          "(head 'a\\tb')"),
])
def test_bad_values_name_their_row(tmp_path, column: str, values: list, problem: str) -> None:
    columns = {"head": ["a"] * 5, "relation": ["r"] * 5, "tail": ["t"] * 5, "w": [1.0] * 5, column: values}
    path = table_file(tmp_path / "bad.parquet", columns, row_group_size=2)
    with pytest.raises(DataError) as error:
        read_triples(path, edge_weights="w")
    assert str(error.value) == f"{path}: {problem}"


@needs_pyarrow
def test_wrong_columns_name_the_file_and_the_columns_it_has(tmp_path) -> None:
    path = table_file(tmp_path / "t.parquet", {"h": ["a"], "r": ["r"], "t": ["b"], "score": [0.5]},
                      row_group_size=1)
    with pytest.raises(DataError) as error:
        read_triples(path, columns=("h", "r", "tail"), extra_columns="ignore")
    assert str(error.value) == f"{path}: no column 'tail'; it has ['h', 'r', 't', 'score']"
    with pytest.raises(DataError, match=r"column 7 out of range for 4 columns \['h', 'r', 't', 'score'\]"):
        read_triples(path, columns=(0, 1, 7))
    with pytest.raises(DataError, match=r"4 columns \['h', 'r', 't', 'score'\], but only 3 are read .*"
                                        r"extra_columns='ignore'"):
        read_triples(path)
    assert len(read_triples(path, extra_columns="ignore")) == 1
    assert read_triples(path, edge_weights="score").weights.tolist() == [0.5]
    with pytest.raises(DataError, match=r"the tail column 'score' holds double; labels must be strings or "):
        read_triples(path, columns=("h", "r", "score"), extra_columns="ignore")
    with pytest.raises(DataError, match=r"the edge weight column 't' holds string; expected numbers"):
        read_triples(path, edge_weights="t", extra_columns="ignore")


@needs_pyarrow
def test_an_empty_table_and_a_broken_file_are_errors_naming_them(tmp_path) -> None:
    empty = table_file(tmp_path / "empty.parquet", {"h": pa.array([], pa.string()), "r": pa.array([], pa.string()),
                                                    "t": pa.array([], pa.string())}, row_group_size=10)
    with pytest.raises(DataError, match="no triples in file"):
        read_triples(empty)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1" + b"\0" * 20)
    with pytest.raises(DataError, match=f"{broken}: not a readable parquet file"):
        read_triples(broken)


# -- streaming -------------------------------------------------------------------------------------------------------


@needs_pyarrow
def test_reading_holds_one_row_group_at_a_time(tmp_path, monkeypatch) -> None:
    """Each chunk comes from one read of one row group, made only when the chunk is asked for, of only the columns
    used: memory is one group whatever the file's size."""
    rows = 1000
    path = table_file(tmp_path / "many.parquet", {
        "head": [f"e{i % 97}" for i in range(rows)], "note": ["x" * 50] * rows, "relation": ["r"] * rows,
        "tail": [f"e{i % 89}" for i in range(rows)]}, row_group_size=10)
    reads: list[tuple[int, list[str]]] = []
    real = pq.ParquetFile.read_row_group

    def counted(self, i, columns=None, **kwargs):
        reads.append((i, list(columns)))
        return real(self, i, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counted)
    chunks = iter_table_chunks(path, columns=("head", "relation", "tail"), extra_columns="ignore")
    assert reads == []
    for number, chunk in enumerate(chunks):
        assert reads == [(i, ["head", "relation", "tail"]) for i in range(number + 1)]
        assert chunk.shape == (10, 3)
        assert chunk[0].tolist() == [f"e{10 * number % 97}", "r", f"e{10 * number % 89}"]
    assert len(reads) == 100


@needs_pyarrow
def test_the_streaming_import_of_tables_matches_the_tsv_import(tmp_path, monkeypatch) -> None:
    original = Dataset.from_folder(UMLS)
    tables = [write_triples(split, tmp_path / f"{name}.parquet", row_group_rows=256)
              for name, split in original.splits().items()]
    groups = sum(pq.ParquetFile(path).num_row_groups for path in tables)
    reads: list[int] = []
    real = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group",
                        lambda self, i, **kwargs: reads.append(i) or real(self, i, **kwargs))
    from_tables = import_triples(tables, tmp_path / "from_tables")
    from_text = import_triples([UMLS / f"{name}.txt" for name in SPLITS], tmp_path / "from_text")
    assert len(reads) == groups + pq.ParquetFile(tables[0]).num_row_groups  # train twice: vocabularies, then ids
    assert from_tables.rows == from_text.rows and from_tables.leakage == from_text.leakage
    for name in ("entities.tsv", "relations.tsv", *(f"{split}.bin" for split in SPLITS)):
        assert (tmp_path / "from_tables" / name).read_bytes() == (tmp_path / "from_text" / name).read_bytes(), name
    split_tables = import_triples(tables[0], tmp_path / "split_tables", ratios=(0.8, 0.1, 0.1), seed=3)
    split_text = import_triples(UMLS / "train.txt", tmp_path / "split_text", ratios=(0.8, 0.1, 0.1), seed=3)
    assert split_tables.rows == split_text.rows and split_tables.moved_to_train == split_text.moved_to_train
    for split in SPLITS:
        assert ((tmp_path / "split_tables" / f"{split}.bin").read_bytes()
                == (tmp_path / "split_text" / f"{split}.bin").read_bytes()), split


# -- embeddings and predictions --------------------------------------------------------------------------------------


@needs_pyarrow
def test_exported_embeddings_equal_the_npy_export_bit_for_bit(model_dir, tmp_path) -> None:
    loaded = load_model(model_dir)
    written = loaded.export(tmp_path / "parquet", format="parquet")
    assert sorted(written) == ["entities.parquet", "relations.parquet"]
    loaded.export(tmp_path / "npy")
    for name, singular in (("entities", "entity"), ("relations", "relation")):
        labels, vectors = read_embeddings(tmp_path / "parquet" / f"{name}.parquet")
        expected = np.load(tmp_path / "npy" / f"{singular}_embeddings.npy")
        assert vectors.dtype == np.float32 and vectors.shape == expected.shape == (len(labels), 16)  # complex: 2 * 8
        assert np.array_equal(vectors.view(np.uint32), expected.view(np.uint32))
        assert labels.tolist() == (tmp_path / "npy" / f"{name}.tsv").read_text().splitlines()
        assert pq.read_table(tmp_path / "parquet" / f"{name}.parquet").column("id").to_pylist() == list(
            range(len(labels)))
    assert read_embeddings(tmp_path / "parquet" / "relations.parquet")[0][-1].endswith("__inverse")


@needs_pyarrow
def test_an_embedding_table_keeps_its_dtype_and_rows_across_row_groups(tmp_path) -> None:
    vectors = np.random.default_rng(0).standard_normal((7, 3))  # float64
    path = write_embeddings(tmp_path / "e.arrow", [f"x{i}" for i in range(7)], vectors)
    labels, back = read_embeddings(path)
    assert labels.tolist() == [f"x{i}" for i in range(7)] and back.dtype == np.float64
    assert np.array_equal(back, vectors)
    with pytest.raises(DataError, match="2 labels for 7 embedding rows"):
        write_embeddings(tmp_path / "f.parquet", ["a", "b"], vectors)


@needs_pyarrow
def test_prediction_frames_round_trip(model_dir, tmp_path) -> None:
    loaded = load_model(model_dir)
    frames = {"tails": loaded.predict_tails([("usa", "intergovorgs"), ("uk", "embassy")], k=4),
              "scores": loaded.score_triples([("usa", "intergovorgs", "uk")]),
              "similar": loaded.similar(["usa", "china"], k=3)}
    for name, frame in frames.items():
        for suffix in (".parquet", ".feather"):
            path = write_frame(frame, tmp_path / f"{name}{suffix}")
            pd.testing.assert_frame_equal(read_frame(path), frame)
    metrics = pd.DataFrame({"mrr": [0.5, 0.25]}, index=pd.Index(["head", "tail"], name="side"))
    pd.testing.assert_frame_equal(read_frame(write_frame(metrics, tmp_path / "m.parquet", index=True)),
                                  metrics.reset_index())


# -- command lines ---------------------------------------------------------------------------------------------------


@needs_pyarrow
def test_predict_writes_and_reads_tables_from_the_command_line(model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "preds.parquet"
    assert main(["predict", str(model_dir), "--head", "usa", "--relation", "intergovorgs", "-k", "3",
                 "--output", str(out)]) == 0
    assert f"wrote 3 rows to {out}" in capsys.readouterr().out
    loaded = load_model(model_dir)
    pd.testing.assert_frame_equal(read_frame(out), loaded.predict_tails([("usa", "intergovorgs")], k=3))
    pq.write_table(pa.table({"head": ["usa", "uk"], "relation": ["embassy", "embassy"]}), tmp_path / "queries.parquet")
    assert main(["predict", str(model_dir), "--file", str(tmp_path / "queries.parquet"), "-k", "2",
                 "--output", str(tmp_path / "many.feather")]) == 0
    pd.testing.assert_frame_equal(read_frame(tmp_path / "many.feather"),
                                  loaded.predict_tails([("usa", "embassy"), ("uk", "embassy")], k=2))
    assert main(["evaluate", str(model_dir), "-q", "--output", str(tmp_path / "metrics.parquet")]) == 0
    assert read_frame(tmp_path / "metrics.parquet")["side"].tolist() == ["head", "tail", "both"]
    assert main(["similar", str(model_dir), "usa", "-k", "2", "--output", str(tmp_path / "similar.parquet")]) == 0
    pd.testing.assert_frame_equal(read_frame(tmp_path / "similar.parquet"), loaded.similar(["usa"], k=2))


@needs_pyarrow
def test_export_import_and_train_from_the_command_line(model_dir, tmp_path, capsys) -> None:
    assert main(["export", str(model_dir), str(tmp_path / "emb"), "--format", "parquet"]) == 0
    out = capsys.readouterr().out
    assert "entities.parquet, relations.parquet" in out and "TensorBoard" not in out
    assert read_embeddings(tmp_path / "emb" / "entities.parquet")[0].tolist() == list(
        load_model(model_dir).entities.labels)

    nations = kgem.load_dataset("nations")
    folder = tmp_path / "nations_parquet"
    for name, split in nations.splits().items():
        table = pq.read_table(write_triples(split, tmp_path / f"{name}.parquet")).rename_columns(["s", "p", "o"])
        folder.mkdir(exist_ok=True)
        pq.write_table(table.select(["o", "p", "s"]), folder / f"{name}.parquet", row_group_size=500)
    assert main(["import", *(str(folder / f"{name}.parquet") for name in SPLITS), "-o", str(tmp_path / "imported"),
                 "--columns", "s", "p", "o"]) == 0
    capsys.readouterr()
    imported = Dataset.from_folder(tmp_path / "imported")
    assert imported.entities == nations.entities and torch.equal(imported.test.hrt, nations.test.hrt)

    assert main(["train", "--dataset", str(folder), "--format", "raw_udd_trh", "--dim", "8", "--epochs", "1", "-q",
                 "--output", str(tmp_path / "run")]) == 0
    trained = load_model(tmp_path / "run" / "model")
    assert trained.entities == nations.entities and trained.relations == nations.relations


# -- without pyarrow -------------------------------------------------------------------------------------------------


def test_without_pyarrow_each_path_names_the_extra(model_dir, tmp_path, monkeypatch, capsys) -> None:
    """Runs whether pyarrow is installed or not: the file is told by its magic bytes before pyarrow is needed."""
    train = kgem.load_dataset("nations").train
    path = tmp_path / "train.parquet"
    path.write_bytes(b"PAR1" + bytes(32))
    train.write(tmp_path / "train.tsv")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError
    message = "reading or writing Parquet/Arrow needs pyarrow, which is not installed: pip install 'kgem[parquet]'"
    for call in (lambda: read_triples(path), lambda: train.write(tmp_path / "again.parquet"),
                 lambda: write_frame(pd.DataFrame({"a": [1]}), tmp_path / "f.parquet")):
        with pytest.raises(ConfigError) as error:
            call()
        assert str(error.value) == message
    assert torch.equal(read_triples(tmp_path / "train.tsv").hrt, train.hrt)  # text files need no pyarrow
    for argv in (["import", str(path), "-o", str(tmp_path / "imported")],
                 ["predict", str(model_dir), "--head", "usa", "--relation", "embassy",
                  "--output", str(tmp_path / "p.pq")],
                 ["export", str(model_dir), str(tmp_path / "emb"), "--format", "parquet"]):
        assert main(argv) == 2, argv
        assert capsys.readouterr().err.strip() == f"kgem: error: {message}", argv
