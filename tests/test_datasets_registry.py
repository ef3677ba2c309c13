"""The registered datasets' download layouts, each served by a local HTTP server on 127.0.0.1 as a tiny fake with the
real file names and columns: named archive members, a selection of columns, one file of facts split by kgem, and
the deprecation of FB15k and WN18; and the registry's own fields."""

from __future__ import annotations

import gzip
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from kgem.cli import main
from kgem.data import Dataset, DatasetInfo, RemoteFile, Triples, load_dataset
from kgem.data.archives import WHOLE
from kgem.data.dataset import SPLITS
from kgem.data.sources import DATASETS
from kgem.errors import DataError
from test_sources import make_archive, make_zip

# Three splits of a fake dataset: the triples each holds, and its file's text (tab-separated h, r, t).
FACTS = {"train": [("a", "r", "b"), ("b", "r", "c"), ("c", "s", "a")], "valid": [("a", "s", "c")],
         "test": [("b", "s", "a"), ("c", "r", "b")]}
TEXT = {split: "".join(f"{h}\t{r}\t{t}\n" for h, r, t in rows).encode() for split, rows in FACTS.items()}
# Hetionet's edges: 60 distinct (source, metaedge, target) over 12 genes, 3 edge kinds and 11 anatomies.
EDGES = [(f"Gene::{i % 12}", ("GpBP", "AeG", "Gr>G")[i % 3], f"Anatomy::UBERON:{(7 * i + 3) % 11}")
         for i in range(60)]


def served_archive(server: tuple[str, Path, list[str]], name: str, archive: bytes) -> DatasetInfo:
    """The registered dataset ``name`` with its archive replaced by ``archive`` on the local server (unpinned)."""
    base, root, _ = server
    (root / name).write_bytes(archive)
    return replace(DATASETS.get(name), archive=RemoteFile(f"{base}/{name}"))


def triples_of(triples: Triples | None) -> list[tuple[str, str, str]]:
    assert triples is not None
    return [tuple(row) for row in triples.to_df()[["head", "relation", "tail"]].values.tolist()]


@pytest.mark.parametrize(("name", "paths", "replacement"), [
    ("fb15k", {split: f"FB15k/freebase_mtr100_mte100-{split}.txt" for split in SPLITS}, "fb15k237"),
    ("wn18", {split: f"wordnet-mlj12/wordnet-mlj12-{split}.txt" for split in SPLITS}, "wn18rr"),
    ("wikidata5m", {split: f"wikidata5m_transductive_{split}.txt" for split in SPLITS}, None),
])
def test_archive_members_named_otherwise_are_read_as_the_splits(server, tmp_path, caplog, name, paths,
                                                                replacement) -> None:
    """The real archives' member names (PyKEEN's datasets read the same paths), beside files that are no split."""
    files = {paths[split]: TEXT[split] for split in SPLITS}
    decoys = {f"{Path(paths['train']).parent}/README": b"not triples\n", "train.txt": b"x\ty\tz\n"}
    info = served_archive(server, name, make_archive({**decoys, **files}))
    ds = load_dataset(info, cache_dir=tmp_path / "cache")
    for split, triples in ds.splits().items():
        assert sorted(triples_of(triples)) == sorted(FACTS[split]), split
    assert sorted(p.name for p in (tmp_path / "cache" / name).iterdir()) == ["test.txt", "train.txt", "valid.txt"]
    deprecation = f"dataset {name!r} is deprecated: its test set leaks through inverse relations"
    if replacement is None:
        assert "deprecated" not in caplog.text
    else:
        assert deprecation in caplog.text and f"use {replacement}, made without them" in caplog.text
        assert "Toutanova & Chen 2015; Dettmers et al. 2018" in caplog.text


def test_a_deprecated_dataset_warns_from_a_local_folder_too(caplog) -> None:
    load_dataset("wn18", path=Path(__file__).parent / "data" / "toy")
    assert "dataset 'wn18' is deprecated" in caplog.text and "use wn18rr" in caplog.text


def test_openbiolink_reads_head_relation_tail_of_its_six_tab_separated_columns(server, tmp_path) -> None:
    """OpenBioLink's samples are tab-separated despite ``.csv``, with a quality score (which may be empty),
    TP/TN and the source after h, r, t; the negative samples beside them are not read."""
    def sample(rows: list[tuple[str, str, str]], scores: list[str]) -> bytes:
        return "".join(f"{h}\t{r}\t{t}\t{score}\t1\tSTRING\n" for (h, r, t), score in zip(rows, scores)).encode()

    folder = "HQ_DIR/train_test_data"
    files = {f"{folder}/train_sample.csv": sample(FACTS["train"], ["7", "", "9"]), f"{folder}/val_sample.csv":
             sample(FACTS["valid"], ["8"]), f"{folder}/test_sample.csv": sample(FACTS["test"], ["", "6"]),
             f"{folder}/negative_train_sample.csv": b"a\tr\tc\t\t0\tSTRING\n", "HQ_DIR/graph_files/edges.csv": b"x\n"}
    info = served_archive(server, "openbiolink", make_zip(files))
    ds = load_dataset(info, cache_dir=tmp_path / "cache")
    for split, triples in ds.splits().items():
        assert triples_of(triples) == FACTS[split], split
    cached = tmp_path / "cache" / "openbiolink"
    assert sorted(p.name for p in cached.iterdir()) == ["test.tsv", "train.tsv", "valid.tsv"]
    assert (cached / "valid.tsv").read_bytes() == TEXT["valid"]


def test_a_line_without_the_selected_columns_names_its_file_and_line(server, tmp_path) -> None:
    folder = "HQ_DIR/train_test_data"
    files = {f"{folder}/train_sample.csv": b"a\tr\tb\t1\t1\tX\nb\tr\n", f"{folder}/val_sample.csv": b"a\tr\tb\n",
             f"{folder}/test_sample.csv": b"a\tr\tb\n"}
    info = served_archive(server, "openbiolink", make_zip(files))
    with pytest.raises(DataError, match=r"train.txt:2: expected at least 3 fields, found 2: 'b\\tr'"):
        load_dataset(info, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def hetionet(server: tuple[str, Path, list[str]], edges: list[tuple[str, str, str]]) -> DatasetInfo:
    """Hetionet's one gzipped edge file (a header line, then source, metaedge, target) on the local server."""
    base, root, _ = server
    text = "source\tmetaedge\ttarget\n" + "".join("\t".join(edge) + "\n" for edge in edges)
    (root / "hetionet-v1.0-edges.sif.gz").write_bytes(gzip.compress(text.encode()))
    return replace(DATASETS.get("hetionet"), files={WHOLE: RemoteFile(f"{base}/hetionet-v1.0-edges.sif.gz")})


def test_one_file_of_facts_is_split_seeded_once_it_is_downloaded(server, tmp_path) -> None:
    info = hetionet(server, EDGES)
    ds = load_dataset(info, cache_dir=tmp_path / "one", on_unseen="error")  # nothing unseen: it would raise
    parts = {split: triples_of(triples) for split, triples in ds.splits().items()}
    assert len(parts["valid"]) == len(parts["test"]) == round(0.1 * len(EDGES))  # the registered fractions
    assert sorted(parts["train"] + parts["valid"] + parts["test"]) == sorted(EDGES)  # disjoint, all, no header
    for split in ("valid", "test"):
        assert {x for h, _, t in parts[split] for x in (h, t)} <= {x for h, _, t in parts["train"] for x in (h, t)}
        assert {r for _, r, _ in parts[split]} <= {r for _, r, _ in parts["train"]}
    assert sorted(p.name for p in (tmp_path / "one" / "hetionet").iterdir()) == ["test.tsv", "train.tsv",
                                                                                 "valid.tsv"]
    again = load_dataset(info, cache_dir=tmp_path / "two")  # a fresh download splits the same way
    assert {split: triples_of(triples) for split, triples in again.splits().items()} == parts
    other = load_dataset(replace(info, seed=1), cache_dir=tmp_path / "three")
    assert sorted(triples_of(other.test)) != sorted(parts["test"])


def test_drkg_splits_the_tsv_in_its_archive_and_drops_repeated_lines(server, tmp_path, caplog) -> None:
    """DRKG's tar lists ``./drkg.tsv`` (no header) beside ``./embed/``; a repeated line is one fact, kept once."""
    text = "".join("\t".join(edge) + "\n" for edge in EDGES) + "\t".join(EDGES[5]) + "\n"
    files = {"./drkg.tsv": text.encode(), "./embed/entities.tsv": b"0\tGene::0\n", "./relation_glossary.tsv": b"x\n"}
    info = served_archive(server, "drkg", make_archive(files))
    ds = load_dataset(info, cache_dir=tmp_path / "cache")
    parts = [triples_of(triples) for triples in ds.splits().values()]
    assert sorted(row for part in parts for row in part) == sorted(EDGES)
    assert [len(part) for part in parts] == [48, 6, 6]
    assert "1 duplicate triples (dropped)" in caplog.text


def test_a_missing_member_is_named_and_nothing_is_cached(server, tmp_path) -> None:
    info = served_archive(server, "drkg", make_archive({"drkg/drkg.tsv": b"a\tr\tb\n"}))
    with pytest.raises(DataError, match=r"drkg: no drkg.tsv in the archive \(it holds \['drkg/drkg.tsv'\]\)"):
        load_dataset(info, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.parametrize("bad", ["../wikidata5m_transductive_train.txt", "/etc/wikidata5m_transductive_train.txt"])
def test_a_member_path_leaving_the_archive_is_refused(server, tmp_path, bad) -> None:
    files = {f"wikidata5m_transductive_{split}.txt": TEXT[split] for split in SPLITS}
    info = served_archive(server, "wikidata5m", make_zip({bad: b"a\tr\tb\n", **files}))
    with pytest.raises(DataError, match="refused: the archive holds .*, a path outside its folder"):
        load_dataset(info, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_db100k_files_are_the_splits(server, tmp_path) -> None:
    base, root, _ = server
    for split in SPLITS:
        (root / f"_{split}.txt").write_bytes(TEXT[split])
    info = replace(DATASETS.get("db100k"), files={split: RemoteFile(f"{base}/_{split}.txt") for split in SPLITS})
    ds = load_dataset(info, cache_dir=tmp_path / "cache")
    assert {split: triples_of(triples) for split, triples in ds.splits().items()} == FACTS


def test_a_layout_that_cannot_work_is_refused_when_registered() -> None:
    archive = RemoteFile("https://example.org/x.zip")
    with pytest.raises(DataError, match="members name files of an archive"):
        DatasetInfo("x", "t", members={"train": "train.txt"})
    with pytest.raises(DataError, match="members name files of an archive for .* got \\['training'\\]"):
        DatasetInfo("x", "t", archive=archive, members={"training": "train.txt"})
    with pytest.raises(DataError, match="a 'all' file and split fractions come together"):
        DatasetInfo("x", "t", archive=archive, members={WHOLE: "all.tsv"})
    with pytest.raises(DataError, match="a 'all' file and split fractions come together"):
        DatasetInfo("x", "t", archive=archive, split=(0.8, 0.1, 0.1))
    with pytest.raises(DataError, match="split ratios must be"):
        DatasetInfo("x", "t", archive=archive, members={WHOLE: "all.tsv"}, split=(0.8, 0.1, 0.2))


# The registrations made from PyKEEN's dataset modules and the datasets' own pages: URL and layout.
REGISTERED = {
    "fb15k": ("https://everest.hds.utc.fr/lib/exe/fetch.php?media=en:fb15k.tgz",
              "FB15k/freebase_mtr100_mte100-train.txt"),
    "wn18": ("https://everest.hds.utc.fr/lib/exe/fetch.php?media=en:wordnet-mlj12.tar.gz",
             "wordnet-mlj12/wordnet-mlj12-train.txt"),
    "openbiolink": ("https://zenodo.org/record/3826919/files/HQ_DIR.zip?download=1",
                    "HQ_DIR/train_test_data/train_sample.csv"),
    "drkg": ("https://dgl-data.s3-us-west-2.amazonaws.com/dataset/DRKG/drkg.tar.gz", "drkg.tsv"),
    "wikidata5m": ("https://zenodo.org/record/5546383/files/wikidata5m_transductive.tar.gz",
                   "wikidata5m_transductive_train.txt"),
}


def test_the_registered_layouts() -> None:
    for name, (url, train) in REGISTERED.items():
        info = DATASETS.get(name)
        assert info.archive is not None and info.archive.url == url, name
        assert info.members.get("train", info.members.get(WHOLE)) == train, name
    assert DATASETS.get("openbiolink").members["valid"] == "HQ_DIR/train_test_data/val_sample.csv"
    assert DATASETS.get("openbiolink").columns == (0, 1, 2)
    hetionet = DATASETS.get("hetionet")
    assert hetionet.header and hetionet.split == (0.8, 0.1, 0.1) and hetionet.pinned
    assert hetionet.files[WHOLE].url.startswith("https://github.com/hetio/hetionet/raw/")
    assert DATASETS.get("db100k").files["test"].url.endswith("/datasets/DB100K/_test.txt")
    assert {name for name in DATASETS if DATASETS.get(name).deprecated} == {"fb15k", "wn18"}


def test_every_registered_dataset_has_sane_fields() -> None:
    for name in DATASETS:
        info = DATASETS.get(name)
        assert info.name == name and info.description.strip() and info.description != name, name
        assert info.counts is not None and len(info.counts) == 5, name
        entities, _, train, valid, test = info.counts
        assert all(isinstance(c, int) and c > 0 for c in info.counts), name
        assert train > max(valid, test) and entities > 1, name
        if info.split is not None:  # the counts are kgem's split of all facts by the registered fractions
            total = train + valid + test
            assert (valid, test) == (round(info.split[1] * total), round(info.split[2] * total)), name
        remotes = [*([info.archive] if info.archive else []), *info.files.values()]
        assert info.bundled != bool(remotes), name
        for remote in remotes:
            assert re.fullmatch(r"https?://[a-z0-9.-]+\.[a-z]+/\S+", remote.url), (name, remote.url)
            assert remote.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", remote.sha256), name


def test_kgem_datasets_shows_why_a_dataset_is_deprecated(capsys) -> None:
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.split("\n\n")[0].splitlines()[2:]}
    assert rows["fb15k"].endswith("FB15k (Bordes et al. 2013) [deprecated]")
    assert not rows["fb15k237"].endswith("[deprecated]")
    notes = out.split("\n\n")[1].splitlines()
    assert notes[0] == "deprecated (kept to reproduce published results):"
    assert [line.split(":")[0] for line in notes[1:]] == ["  fb15k", "  wn18"]
    assert notes[2].endswith("use wn18rr, made without them")


def test_the_seeded_split_is_the_libraries_split(server, tmp_path) -> None:
    """The cached split is ``Dataset.from_split`` of the same facts and seed: one split function, not two."""
    ds = load_dataset(hetionet(server, EDGES), cache_dir=tmp_path / "cache")
    facts = tmp_path / "facts.tsv"
    facts.write_text("".join("\t".join(edge) + "\n" for edge in EDGES))
    direct = Dataset.from_split(facts, (0.8, 0.1, 0.1), seed=0)
    for split in SPLITS:
        assert triples_of(getattr(ds, split)) == triples_of(getattr(direct, split)), split
    assert torch.equal(ds.test.hrt, direct.test.hrt)  # type: ignore[union-attr]
