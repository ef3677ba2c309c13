"""Streaming import (``kgem import``): the imported folder opens memory-mapped and trains exactly as the files it
came from; the import is the same whatever the chunk size; a seeded split keeps every entity and relation in train;
leakage is counted exactly; memory does not grow with the input; broken folders are named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kgem.data import Dataset, load_dataset
from kgem.data.imports import import_triples
from kgem.data.sources import bundled_folder
from kgem.errors import DataError
from kgem.pipeline import pipeline

UMLS = bundled_folder("umls")
SPLIT_FILES = [UMLS / "train.txt", UMLS / "valid.txt", UMLS / "test.txt"]


def write_lines(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("".join(f"{h}\t{r}\t{t}\n" for h, r, t in rows))
    return path


def test_an_imported_folder_holds_the_splits_and_vocabularies_the_files_give(tmp_path) -> None:
    report = import_triples(SPLIT_FILES, tmp_path / "umls")
    imported, original = load_dataset(str(tmp_path / "umls")), Dataset.from_folder(UMLS)
    assert report.rows == {"train": 5216, "valid": 652, "test": 661}
    assert imported.entities == original.entities and imported.relations == original.relations
    for name, split in original.splits().items():
        assert torch.equal(imported.splits()[name].hrt, split.hrt), name
    meta = json.loads((tmp_path / "umls" / "dataset.json").read_text())
    assert meta["format"] == "kgem-imported" and meta["splits"]["train"]["rows"] == 5216


def test_training_on_an_imported_folder_equals_training_on_the_files(tmp_path) -> None:
    import_triples(SPLIT_FILES, tmp_path / "umls")

    def run(dataset: str):
        return pipeline({"data": {"dataset": dataset}, "model": {"name": "complex", "dim": 8},
                         "training": {"epochs": 2, "early_stopping": False, "batch_size": 512}}, progress=False)

    mapped, plain = run(str(tmp_path / "umls")), run("umls")
    assert mapped.history.losses == plain.history.losses
    for (name, x), (_, y) in zip(mapped.model.state_dict().items(), plain.model.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert mapped.metrics()["mrr"].tolist() == plain.metrics()["mrr"].tolist()
    query = [("virus", "causes")]
    assert mapped.predict_tails(query, k=3).equals(plain.predict_tails(query, k=3))


def test_the_import_does_not_depend_on_the_chunk_size_and_the_map_is_copy_on_write(tmp_path) -> None:
    import_triples(SPLIT_FILES, tmp_path / "big")
    import_triples(SPLIT_FILES, tmp_path / "small", chunk_bytes=700)
    for name in ("train.bin", "valid.bin", "test.bin", "entities.tsv", "relations.tsv"):
        assert (tmp_path / "big" / name).read_bytes() == (tmp_path / "small" / name).read_bytes(), name
    train = load_dataset(str(tmp_path / "small")).train.hrt
    before = (tmp_path / "small" / "train.bin").read_bytes()
    train[0] = 0  # a process's change stays in its own pages
    assert (tmp_path / "small" / "train.bin").read_bytes() == before


def test_a_seeded_split_keeps_every_entity_and_relation_in_train(tmp_path) -> None:
    rows = [(f"e{i % 40}", f"r{i % 3}", f"e{(i * 7 + i // 40) % 40}") for i in range(400)]
    rows.append(("lonely", "rare", "e1"))  # the only triple naming two labels: it must end in train
    source = write_lines(tmp_path / "all.tsv", rows)
    report = import_triples(source, tmp_path / "a", ratios=(0.6, 0.2, 0.2), seed=3)
    again = import_triples(source, tmp_path / "b", ratios=(0.6, 0.2, 0.2), seed=3, chunk_bytes=300)
    import_triples(source, tmp_path / "c", ratios=(0.6, 0.2, 0.2), seed=4)
    assert sum(report.rows.values()) == len(rows) and report.rows == again.rows
    assert (tmp_path / "a" / "test.bin").read_bytes() == (tmp_path / "b" / "test.bin").read_bytes()
    assert (tmp_path / "a" / "test.bin").read_bytes() != (tmp_path / "c" / "test.bin").read_bytes()
    data = load_dataset(str(tmp_path / "a"))
    train = data.train.hrt
    for split in (data.valid, data.test):
        assert split is not None and 0.1 < len(split) / len(rows) < 0.3
        assert torch.isin(split.hrt[:, [0, 2]], train[:, [0, 2]]).all()
        assert torch.isin(split.hrt[:, 1], train[:, 1]).all()
    lonely = data.entities.ids(["lonely"])[0]
    assert (train[:, 0] == lonely).any() and report.moved_to_train >= 0


def test_leakage_counts_held_out_duplicates_and_reverses_exactly(tmp_path) -> None:
    train = write_lines(tmp_path / "train.tsv", [("a", "r", "b"), ("b", "r", "c"), ("c", "s", "d"), ("x", "r", "y")])
    test = write_lines(tmp_path / "test.tsv", [("a", "r", "b"), ("d", "r", "c"), ("a", "s", "c"), ("q", "r", "a")])
    report = import_triples([train, None, test], tmp_path / "out")  # no valid file: train and test only
    assert report.rows == {"train": 4, "test": 3}
    assert report.dropped_unseen == {"test": 1}  # q is not in train
    assert report.leakage["test"]["duplicates"] == 1  # (a, r, b)
    assert report.leakage["test"]["reverses"] == 1  # (d, r, c) reverses (c, s, d)
    assert ["a", "r", "b"] in report.leakage["test"]["examples"]


def test_broken_imported_folders_are_named(tmp_path) -> None:
    import_triples(SPLIT_FILES, tmp_path / "umls")
    folder = tmp_path / "umls"
    with open(folder / "test.bin", "r+b") as f:
        f.truncate(100)
    with pytest.raises(DataError, match="test.bin: 100 bytes, expected 661 rows"):
        load_dataset(str(folder))
    (folder / "test.bin").unlink()
    with pytest.raises(DataError, match="test.bin: missing"):
        load_dataset(str(folder))
    with pytest.raises(DataError, match="no such file"):
        import_triples(tmp_path / "absent.tsv", tmp_path / "x")
    with pytest.raises(DataError, match="ratios split one file"):
        import_triples(SPLIT_FILES, tmp_path / "y", ratios=(0.8, 0.1, 0.1))


PEAK = """
import resource, sys
from kgem.data.imports import import_triples
import_triples(sys.argv[1], sys.argv[2], ratios=(0.8, 0.1, 0.1), chunk_bytes=1 << 20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_kib(source: Path, out: Path) -> int:
    done = subprocess.run([sys.executable, "-c", PEAK, str(source), str(out)], capture_output=True, text=True,
                          timeout=300, check=True)
    return int(done.stdout.split()[-1])


def test_peak_memory_of_an_import_does_not_grow_with_the_input(tmp_path) -> None:
    rng = np.random.default_rng(0)
    lines = [f"entity{h}\trel{r}\tentity{t}\n" for h, r, t in rng.integers(0, 500, size=(100_000, 3)) % [500, 20, 500]]
    small, large = tmp_path / "small.tsv", tmp_path / "large.tsv"
    small.write_text("".join(lines))
    with open(large, "w") as f:
        for _ in range(10):
            f.write("".join(lines))
    assert large.stat().st_size > 9 * small.stat().st_size > 20 * 2**20
    first, second = peak_kib(small, tmp_path / "a"), peak_kib(large, tmp_path / "b")
    assert second - first < 40 * 1024, (first, second)  # 10x the input (25 MB more) costs under 40 MB


def test_kgem_import_reads_dgl_ke_layouts_and_trains(tmp_path) -> None:
    htr = tmp_path / "htr.tsv"
    htr.write_text("".join(f"{h}\t{t}\t{r}\n" for h, r, t in (line.split("\t") for line in
                                                             (UMLS / "train.txt").read_text().splitlines())))
    kgem = [sys.executable, "-m", "kgem"]
    done = subprocess.run([*kgem, "import", str(htr), "-o", str(tmp_path / "data"), "--format", "raw_udd_htr",
                           "--split", "0.9", "0.05", "0.05", "--chunk-mb", "0.01"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["num_relations"] == 46
    trained = subprocess.run([*kgem, "train", "--dataset", str(tmp_path / "data"), "--dim", "8", "--epochs", "1",
                              "-q", "--output", str(tmp_path / "run")], capture_output=True, text=True, timeout=120,
                             check=False)
    assert trained.returncode == 0, trained.stderr
    bad = subprocess.run([*kgem, "import", str(htr), "-o", str(tmp_path / "x"), "--format", "udd_hrt"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "raw_udd_" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
