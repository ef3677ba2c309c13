"""The download path end to end, against a local HTTP server on 127.0.0.1 serving a small fixture."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import re
import stat
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kgem.cli import main
from kgem.data import DatasetInfo, RemoteFile, load_dataset
from kgem.data.sources import DATASETS, kgem_home
from kgem.errors import DataError

SPLITS = {"train.txt": b"a\tr\tb\r\nb\tr\tc\r\n", "valid.txt": b"a\tr\tc\r\n", "test.txt": b"c\tr\ta\r\n"}


def make_archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """Serve ``tmp_path/www`` on 127.0.0.1; yields (base url, folder, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format, *args):  # noqa: A002
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, requests
    finally:
        httpd.shutdown()
        httpd.server_close()


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
    with pytest.raises(DataError, match="no train.txt in the archive"):
        load_dataset(DatasetInfo("e", "t", archive=RemoteFile(f"{base}/empty.tar.gz")), cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match="corrupt archive"):
        load_dataset(DatasetInfo("b", "t", archive=RemoteFile(f"{base}/bad.tar.gz")), cache_dir=tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []


def test_archive_paths_cannot_escape(server, tmp_path) -> None:
    base, root, _ = server
    (root / "evil.tar.gz").write_bytes(make_archive({"../../escape/train.txt": b"a\tr\tb\n", **SPLITS}))
    load_dataset(DatasetInfo("evil", "t", archive=RemoteFile(f"{base}/evil.tar.gz")), cache_dir=tmp_path / "c")
    assert not (tmp_path / "escape").exists()


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
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    for name, info in ((name, DATASETS.get(name)) for name in DATASETS):
        shown = rows[name][7] if rows[name][7] != "NOT" else "NOT pinned"
        assert shown == {None: "-", True: "pinned", False: "NOT pinned"}[info.pinned], name


def test_unpinned_dataset_download_warns_not_verified(server, tmp_path, caplog) -> None:
    base, root, _ = server
    (root / "fixture.tar.gz").write_bytes(make_archive(SPLITS))
    load_dataset(DatasetInfo("loose", "t", archive=RemoteFile(f"{base}/fixture.tar.gz")), cache_dir=tmp_path / "c")
    assert "dataset 'loose' has no pinned sha256: its download is not verified" in caplog.text
