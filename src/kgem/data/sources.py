"""Where datasets come from: bundled in the package, downloaded from their canonical source, or a local folder.

Downloads go to ``$KGEM_HOME/datasets/<name>`` (default ``~/.cache/kgem``). A download is streamed to a
temporary file, its sha256 checked, the split files extracted into a staging folder (``kgem.data.archives``), and
the staging folder renamed into place last, so an interrupted or corrupt download never looks complete.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from kgem.atomic import atomic_dir
from kgem.data.archives import extract_splits, has_train
from kgem.data.dataset import SPLITS, SUFFIXES, Dataset
from kgem.errors import DataError
from kgem.registry import Registry

log = logging.getLogger("kgem")

CONVE = "https://raw.githubusercontent.com/TimDettmers/ConvE/f3c0eb286025410fa5b4c04696c918264163d0ca"
CODEX = "https://raw.githubusercontent.com/tsafavi/codex/3132e426c2a6b643b70bad679905a3a6270be440/data/triples"
FIGSHARE = "https://ndownloader.figshare.com/files"  # AmpliGraph's copies: zips of <name>/{train,valid,test}.tsv


@dataclass(frozen=True)
class RemoteFile:
    """A file to download; ``sha256=None`` means not pinned yet (the download is reported as unverified)."""

    url: str
    sha256: str | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset: bundled (``bundled=True``), or an ``archive`` (zip or tar, told apart by its first
    bytes) or one ``files`` entry per split.

    ``counts`` are the published sizes: entities, relations, train, valid, test. ``edge_weights``: the column of the
    split files that holds a number per edge (importance, confidence, ...); ``load_dataset`` reads it into each
    split's ``Triples.weights``.
    """

    name: str
    description: str
    counts: tuple[int, int, int, int, int] | None = None
    bundled: bool = False
    archive: RemoteFile | None = None
    files: dict[str, RemoteFile] = field(default_factory=dict)
    inner: str = ""  # folder inside the archive that holds the split files
    edge_weights: int | None = None

    @property
    def pinned(self) -> bool | None:
        """Whether every file of the download has a pinned sha256 (None for a bundled dataset: no download)."""
        if self.bundled:
            return None
        remotes = [*([self.archive] if self.archive else []), *self.files.values()]
        return bool(remotes) and all(r.sha256 is not None for r in remotes)


DATASETS: Registry[DatasetInfo] = Registry("dataset")


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    return DATASETS.register(info.name)(info)


for _info in [
    DatasetInfo("nations", "Nations (Kok & Domingos 2007), ConvE split", (14, 55, 1592, 199, 201), bundled=True),
    DatasetInfo("umls", "UMLS (Kok & Domingos 2007), ConvE split", (135, 46, 5216, 652, 661), bundled=True),
    DatasetInfo("kinships", "Kinships (Kok & Domingos 2007), ConvE split", (104, 25, 8544, 1068, 1074),
                bundled=True),
    DatasetInfo("fb15k237", "FB15k-237 (Toutanova & Chen 2015)", (14541, 237, 272115, 17535, 20466),
                archive=RemoteFile(f"{CONVE}/FB15k-237.tar.gz",
                                   "311df7930f842a02979eaa7a802484a6afe62303c07f915f1e6edbc30cbe05e8")),
    DatasetInfo("wn18rr", "WN18RR (Dettmers et al. 2018)", (40943, 11, 86835, 3034, 3134),
                archive=RemoteFile(f"{CONVE}/WN18RR.tar.gz",
                                   "1eb9152f804c140d163462c0d49f65e5a0b30ab5fbb375c5e3353c11a6249060")),
    DatasetInfo("yago3-10", "YAGO3-10 (Mahdisoltani et al. 2015), ConvE split",
                (123182, 37, 1079040, 5000, 5000), archive=RemoteFile(f"{CONVE}/YAGO3-10.tar.gz")),
    DatasetInfo("codex-s", "CoDEx small (Safavi & Koutra 2020)", (2034, 42, 32888, 1827, 1828), files={
        "train": RemoteFile(f"{CODEX}/codex-s/train.txt",
                            "64f93b7f314f3936a6f65739721429db3f6a7c8f5a1e1104ec3bb544f7434f59"),
        "valid": RemoteFile(f"{CODEX}/codex-s/valid.txt",
                            "3831c0e57daef03c3a18cdd1a72e370b496f696c5218883d35c7d2ab8a6a772c"),
        "test": RemoteFile(f"{CODEX}/codex-s/test.txt",
                           "27127fcb34688c4778e88a39ef3c9b540807da846021e9d9685660ac1838aca1")}),
    DatasetInfo("codex-m", "CoDEx medium (Safavi & Koutra 2020)", (17050, 51, 185584, 10310, 10311), files={
        "train": RemoteFile(f"{CODEX}/codex-m/train.txt",
                            "d99c3437ab51690391a26d96976adf6e5494dba7ef6902e77000551bfa566556"),
        "valid": RemoteFile(f"{CODEX}/codex-m/valid.txt",
                            "11c323096367354940846b9ed940c5dabddc1d20a70474222babe7e7fd28b28d"),
        "test": RemoteFile(f"{CODEX}/codex-m/test.txt",
                           "0575ce05e4ce915e395bb4f708e8df9547989dd4c8c71407cbfd78c19daffcf7")}),
    DatasetInfo("codex-l", "CoDEx large (Safavi & Koutra 2020)", (77951, 69, 551193, 30622, 30622), files={
        split: RemoteFile(f"{CODEX}/codex-l/{split}.txt") for split in SPLITS}),
    DatasetInfo("onet20k", "O*NET20K (Pai & Costabello 2021): jobs and skills, edge values: importance",
                (20643, 19, 461932, 850, 2000), archive=RemoteFile(f"{FIGSHARE}/66192209"), inner="onet20k",
                edge_weights=3),
    DatasetInfo("ppi5k", "PPI5K (Chen et al. 2019): protein interactions, edge values: confidence",
                (4999, 7, 230929, 19017, 21720), archive=RemoteFile(f"{FIGSHARE}/66192224"), inner="ppi5k",
                edge_weights=3),
    DatasetInfo("nl27k", "NL27K (Chen et al. 2019): NELL beliefs, edge values: confidence",
                (27221, 405, 149100, 12274, 14026), archive=RemoteFile(f"{FIGSHARE}/66192212"), inner="nl27k",
                edge_weights=3),
    DatasetInfo("cn15k", "CN15K (Chen et al. 2019): ConceptNet, edge values: confidence",
                (15000, 36, 199417, 16829, 19224), archive=RemoteFile(f"{FIGSHARE}/66192206"), inner="cn15k",
                edge_weights=3),
]:
    register_dataset(_info)


def kgem_home() -> Path:
    """The cache root: ``$KGEM_HOME`` or ``~/.cache/kgem``."""
    return Path(os.environ.get("KGEM_HOME") or Path.home() / ".cache" / "kgem")


def bundled_folder(name: str) -> Path:
    return Path(str(resources.files("kgem.data").joinpath("bundled", name)))


def load_dataset(name: str | DatasetInfo, *, path: str | os.PathLike[str] | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, download: bool = True,
                 **options: Any) -> Dataset:
    """Load a dataset by registered name (bundled or downloaded into the cache) or from a local folder.

    ``path`` (or a ``name`` that is an existing folder) reads train/valid/test files from that folder.
    ``options`` go to ``Dataset.from_folder`` (``on_unseen``, ``on_duplicates``, reader options). A registered
    dataset with a number per edge (``DatasetInfo.edge_weights``, also with ``path``) reads it into each split's
    ``weights``; ``edge_weights=None`` reads the triples without it.
    """
    info = name if isinstance(name, DatasetInfo) else DATASETS.get(name) if name in DATASETS else None
    options = reader_defaults(info, options)
    label = info.name if info else str(name)
    if path is not None:
        return Dataset.from_folder(path, name=label, **options)
    if info is None and Path(label).is_dir():
        return Dataset.from_folder(label, **options)
    info = info or DATASETS.get(label)  # an unknown name: the error lists the known ones
    if info.bundled:
        return Dataset.from_folder(bundled_folder(info.name), name=info.name, **options)
    folder = fetch(info, Path(cache_dir) if cache_dir else kgem_home() / "datasets", download=download)
    return Dataset.from_folder(folder, name=info.name, **options)


def reader_defaults(info: DatasetInfo | None, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the registered layout as defaults: the column of edge weights, unless the caller passes
    ``edge_weights=None``, which reads the triples without it (that column then ignored: ``extra_columns``)."""
    if info is None or info.edge_weights is None:
        return options
    if "edge_weights" in options and options["edge_weights"] is None:
        return {"extra_columns": "ignore", **options}
    return {"edge_weights": info.edge_weights, **options}


def fetch(info: DatasetInfo, root: Path, *, download: bool = True) -> Path:
    """The folder with the dataset's split files, downloading it first if it is not in ``root``."""
    final = root / info.name
    if has_train(final):
        return final
    if not download:
        raise DataError(f"dataset {info.name!r} is not in {root} and download=False")
    root.mkdir(parents=True, exist_ok=True)
    if not info.pinned:
        log.warning("dataset %r has no pinned sha256: its download is not verified", info.name)
    with atomic_dir(final) as staging:  # mode 0o777 less the umask, as the cache it becomes
        if info.archive is not None:
            archive = staging / "archive"  # zip or tar: ``extract_splits`` reads which from its first bytes
            download_file(info.archive, archive, desc=info.name)
            extract_splits(archive, staging, info.inner, source=info.archive.url)
            archive.unlink()
        for split, remote in info.files.items():
            download_file(remote, staging / split_file_name(split, remote.url), desc=f"{info.name}/{split}")
        if not has_train(staging):
            raise DataError(f"dataset {info.name!r}: the download holds no train file")
    return final


def split_file_name(split: str, url: str) -> str:
    """The name a downloaded split file is kept under: the split and the URL's suffix (which tells the reader the
    delimiter and compression), ``.txt`` for a URL with none it reads."""
    return split + next((suffix for suffix in SUFFIXES if url.endswith(suffix)), ".txt")


def download_file(remote: RemoteFile, dest: Path, *, desc: str = "download") -> None:
    """Stream ``remote`` to ``dest`` with a progress bar, verifying its sha256; nothing is left on failure."""
    tmp = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(remote.url, timeout=60) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False) as bar:
                while block := response.read(2**20):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise DataError(f"cannot download {remote.url}: {e}; download it yourself and pass path=FOLDER") from e
    got = digest.hexdigest()
    if remote.sha256 is not None and got != remote.sha256:
        tmp.unlink()
        raise DataError(f"checksum mismatch for {remote.url}: expected sha256 {remote.sha256}, got {got}; "
                        f"nothing was cached")
    if remote.sha256 is None:
        log.warning("unverified download %s (no pinned checksum): sha256 %s", remote.url, got)
    os.replace(tmp, dest)
