"""The download path end to end, against a local HTTP server on 127.0.0.1 serving a small fixture."""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

from kgem.cli import main
from kgem.data import DatasetInfo, RemoteFile, load_dataset
from kgem.data.sources import DATASETS, kgem_home
from kgem.errors import DataError

SPLITS = {"train.txt": b"a\tr\tb\r\nb\tr\tc\r\n", "valid.txt": b"a\tr\tc\r\n", "test.txt": b"c\tr\ta\r\n"}
# AmpliGraph's layout of the datasets with a number per edge: <name>/{train,valid,test}.tsv, the number 4th
WEIGHTED = {"train.tsv": b"a\tr\tb\t0.5\nb\tr\tc\t0.125\nc\ts\ta\t1\n", "valid.tsv": b"a\ts\tc\t0.25\n",
            "test.tsv": b"b\ts\ta\t0.75\nc\tr\tb\t0\n"}
WEIGHTS = {"train": [0.5, 0.125, 1.0], "valid": [0.25], "test": [0.75, 0.0]}


def make_archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def make_zip(files: dict[str, bytes], folders: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for folder in folders:
            zf.writestr(zipfile.ZipInfo(folder), b"")  # a directory entry, as zip tools write them
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def weighted_zip(folder: str = "wdata") -> bytes:
    """The weighted splits inside ``folder``, beside the resource-fork files a zip made on macOS carries."""
    files = {f"{folder}/{name}": data for name, data in WEIGHTED.items()}
    return make_zip({**files, f"__MACOSX/{folder}/._train.tsv": b"\x00\x05\x16\x07junk"}, folders=(f"{folder}/",))


def served_archive(server) -> DatasetInfo:
    """The split files as one archive on the local server, registered with its sha256."""
    base, root, _ = server
    archive = make_archive(SPLITS)
    (root / "fixture.tar.gz").write_bytes(archive)
    return DatasetInfo("fixture", "test", archive=RemoteFile(f"{base}/fixture.tar.gz",
                                                             hashlib.sha256(archive).hexdigest()))


def test_archive_download_verify_extract_and_cache(server, tmp_path) -> None:
    requests = server[2]
    info = served_archive(server)
    ds = load_dataset(info, cache_dir=tmp_path / "cache")
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (2, 1, 1)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["fixture"]
    assert sorted(p.name for p in (tmp_path / "cache" / "fixture").iterdir()) == sorted(SPLITS)
    load_dataset(info, cache_dir=tmp_path / "cache")  # second time: from the cache
    assert len(requests) == 1


def test_the_cached_dataset_folder_honours_the_umask(server, tmp_path) -> None:
    info = served_archive(server)
    old = os.umask(0o022)
    try:
        load_dataset(info, cache_dir=tmp_path / "cache")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "cache" / "fixture").stat().st_mode) == 0o755


def test_checksum_mismatch_is_an_error_and_caches_nothing(server, tmp_path) -> None:
    base, root, _ = server
    (root / "fixture.tar.gz").write_bytes(make_archive(SPLITS))
    info = DatasetInfo("fixture", "test", archive=RemoteFile(f"{base}/fixture.tar.gz", "0" * 64))
    with pytest.raises(DataError, match="checksum mismatch .* expected sha256 0000.*nothing was cached"):
        load_dataset(info, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_per_split_files_unpinned_are_reported(server, tmp_path, caplog) -> None:
    base, root, _ = server
    for name, data in SPLITS.items():
        (root / name).write_bytes(data)
    files = {split: RemoteFile(f"{base}/{split}.txt") for split in ("train", "valid", "test")}
    info = DatasetInfo("split-files", "test", files=files)
    ds = load_dataset(info, cache_dir=tmp_path / "cache")
    assert len(ds.train) == 2
    assert "unverified download" in caplog.text and hashlib.sha256(SPLITS["train.txt"]).hexdigest() in caplog.text


def test_missing_file_and_unreachable_server(server, tmp_path) -> None:
    base, _, _ = server
    info = DatasetInfo("gone", "test", archive=RemoteFile(f"{base}/missing.tar.gz"))
    with pytest.raises(DataError, match="cannot download .*missing.tar.gz.*404"):
        load_dataset(info, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_archive_without_train_and_corrupt_archive(server, tmp_path) -> None:
    base, root, _ = server
    for name, data in {"empty.tar.gz": make_archive({"other/readme.txt": b"x"}), "bad.tar.gz": b"not a tar"}.items():
        (root / name).write_bytes(data)
    with pytest.raises(DataError, match=r"no train.txt \(or .tsv, .csv\) in the archive"):
        load_dataset(DatasetInfo("e", "t", archive=RemoteFile(f"{base}/empty.tar.gz")), cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match="corrupt archive"):
        load_dataset(DatasetInfo("b", "t", archive=RemoteFile(f"{base}/bad.tar.gz")), cache_dir=tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []


@pytest.mark.parametrize(("kind", "bad"), [("tar", "../../escape/train.txt"), ("zip", "../../escape/train.txt"),
                                           ("zip", "/escape/train.txt"), ("zip", "wdata\\..\\..\\escape\\train.tsv")])
def test_archive_paths_escaping_the_folder_are_refused(server, tmp_path, kind, bad) -> None:
    base, root, _ = server
    pack = make_archive if kind == "tar" else make_zip
    (root / "evil").write_bytes(pack({bad: b"a\tr\tb\n", **SPLITS}))
    with pytest.raises(DataError, match="evil: refused: the archive holds '.*escape/train.*', a path outside its "
                                        "folder"):
        load_dataset(DatasetInfo("evil", "t", archive=RemoteFile(f"{base}/evil")), cache_dir=tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []
    assert not (tmp_path / "escape").exists() and not Path("/escape").exists()


def test_zip_download_reads_each_splits_edge_weights(server, tmp_path) -> None:
    """A zip at a URL without a suffix (as figshare serves them), the .tsv splits in a folder, cached as they are."""
    base, root, requests = server
    (root / "files").mkdir()
    (root / "files" / "123").write_bytes(weighted_zip())
    info = DatasetInfo("weighted", "t", archive=RemoteFile(f"{base}/files/123"), inner="wdata", edge_weights=3)
    ds = load_dataset(info, cache_dir=tmp_path / "cache")
    for split, triples in ds.splits().items():
        assert triples.weights is not None and triples.weights.dtype == torch.float32
        assert triples.weights.tolist() == WEIGHTS[split], split
    assert ds.train.to_df()[["head", "relation", "tail"]].values.tolist() == [["a", "r", "b"], ["b", "r", "c"],
                                                                              ["c", "s", "a"]]
    assert sorted(p.name for p in (tmp_path / "cache" / "weighted").iterdir()) == sorted(WEIGHTED)
    unweighted = load_dataset(info, cache_dir=tmp_path / "cache", edge_weights=None)  # from the cache: train.tsv
    assert len(requests) == 1
    assert all(t.weights is None for t in unweighted.splits().values())
    assert torch.equal(unweighted.test.hrt, ds.test.hrt)


def test_zip_without_the_folders_train_file(server, tmp_path) -> None:
    base, root, _ = server
    (root / "flat").write_bytes(make_zip(WEIGHTED))  # the splits at the top, not in wdata/
    info = DatasetInfo("flat", "t", archive=RemoteFile(f"{base}/flat"), inner="wdata", edge_weights=3)
    with pytest.raises(DataError, match=r"flat: no wdata/train.txt \(or .tsv, .csv\) in the archive \(it holds "
                                        r"\['train.tsv', 'valid.tsv', 'test.tsv'\]\)"):
        load_dataset(info, cache_dir=tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []


def test_per_split_files_keep_their_suffix(server, tmp_path) -> None:
    """A comma-separated split file is cached as .csv, so the reader splits it at commas."""
    base, root, _ = server
    for split, data in (("train", b"a,r,b\nb,r,c\n"), ("valid", b"a,r,c\n"), ("test", b"c,r,a\n")):
        (root / f"{split}.csv").write_bytes(data)
    files = {split: RemoteFile(f"{base}/{split}.csv") for split in ("train", "valid", "test")}
    info = DatasetInfo("commas", "t", files=files)
    ds = load_dataset(info, cache_dir=tmp_path / "cache")
    assert (ds.num_entities, ds.num_relations, len(ds.train)) == (3, 1, 2)
    assert sorted(p.name for p in (tmp_path / "cache" / "commas").iterdir()) == ["test.csv", "train.csv",
                                                                                 "valid.csv"]


def test_datasets_with_a_number_per_edge_are_registered() -> None:
    for name, inner in (("onet20k", "onet20k"), ("ppi5k", "ppi5k"), ("nl27k", "nl27k"), ("cn15k", "cn15k")):
        info = DATASETS.get(name)
        assert info.edge_weights == 3 and info.inner == inner and info.counts is not None
        assert info.archive is not None and info.archive.url.startswith("https://ndownloader.figshare.com/files/")
        assert info.pinned is False  # not downloaded here yet: its sha256 is unknown
    assert DATASETS.get("ppi5k").counts == (4999, 7, 230929, 19017, 21720)
    assert sum(DATASETS.get(name).edge_weights is not None for name in DATASETS) == 4


def test_a_registered_weighted_dataset_from_a_local_folder(tmp_path) -> None:
    """``path=`` with a registered name reads the registered layout: AmpliGraph's own download folder works."""
    folder = tmp_path / "ppi5k"
    folder.mkdir()
    for name, data in WEIGHTED.items():
        (folder / name).write_bytes(data)
    ds = load_dataset("ppi5k", path=folder)
    assert ds.name == "ppi5k" and ds.valid.weights is not None and ds.valid.weights.tolist() == WEIGHTS["valid"]
    assert load_dataset("PPI5K", path=folder, edge_weights=None).train.weights is None
    with pytest.raises(DataError, match="4 fields, but only 3 columns are read"):
        load_dataset("ppi5k", path=folder, edge_weights=None, extra_columns="error")


def test_registry_and_cache_home(monkeypatch, tmp_path) -> None:
    for name in ("fb15k237", "wn18rr", "codex-s", "codex-m", "codex-l", "yago3-10"):
        assert name in DATASETS
    assert DATASETS.get("fb15k237").archive.sha256.startswith("311df793")
    monkeypatch.setenv("KGEM_HOME", str(tmp_path))
    assert kgem_home() == tmp_path
    with pytest.raises(DataError, match="download=False"):
        load_dataset("fb15k237", download=False)


def test_readme_and_kgem_datasets_say_which_downloads_are_checksum_pinned(capsys) -> None:
    """The README claims sha256 checks only for datasets that pin one; ``kgem datasets`` shows the same."""
    text = " ".join((Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8").split())
    pinned = re.search(r"\(default `~/\.cache/kgem`\): (.*?) are checked against a pinned sha256", text)
    unpinned = re.search(r"pinned sha256; (.*?) have no pinned checksum yet", text)
    assert pinned and unpinned, "the README no longer says which downloads are sha256-checked"
    said = {name: True for name in re.findall(r"`([^`]+)`", pinned.group(1))}
    said |= {name: False for name in re.findall(r"`([^`]+)`", unpinned.group(1))}
    downloads = {name: DATASETS.get(name).pinned for name in DATASETS if not DATASETS.get(name).bundled}
    assert said == downloads
    assert main(["datasets"]) == 0
    lines = capsys.readouterr().out.split("\n\n")[0].splitlines()  # the table; why some are deprecated follows
    assert lines[0].split()[5:8] == ["source", "edge_weights", "sha256"]  # the header has no name column
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    for name, info in ((name, DATASETS.get(name)) for name in DATASETS):
        shown = rows[name][8] if rows[name][8] != "NOT" else "NOT pinned"
        assert shown == {None: "-", True: "pinned", False: "NOT pinned"}[info.pinned], name
        assert rows[name][7] == ("-" if info.edge_weights is None else str(info.edge_weights)), name


def test_unpinned_dataset_download_warns_not_verified(server, tmp_path, caplog) -> None:
    base, root, _ = server
    (root / "fixture.tar.gz").write_bytes(make_archive(SPLITS))
    load_dataset(DatasetInfo("loose", "t", archive=RemoteFile(f"{base}/fixture.tar.gz")), cache_dir=tmp_path / "c")
    assert "dataset 'loose' has no pinned sha256: its download is not verified" in caplog.text
