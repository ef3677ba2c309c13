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
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from kgem.atomic import atomic_dir
from kgem.data.archives import WHOLE, extract_members, extract_splits, has_train, keep_columns, split_whole
from kgem.data.dataset import SPLITS, SUFFIXES, Dataset
from kgem.data.ogb import prepare_biokg, prepare_wikikg2
from kgem.data.split import check_ratios
from kgem.errors import DataError
from kgem.registry import Registry

log = logging.getLogger("kgem")

CONVE = "https://raw.githubusercontent.com/TimDettmers/ConvE/f3c0eb286025410fa5b4c04696c918264163d0ca"
CODEX = "https://raw.githubusercontent.com/tsafavi/codex/3132e426c2a6b643b70bad679905a3a6270be440/data/triples"
FIGSHARE = "https://ndownloader.figshare.com/files"  # AmpliGraph's copies: zips of <name>/{train,valid,test}.tsv
BORDES = "https://everest.hds.utc.fr/lib/exe/fetch.php?media=en:"  # Bordes et al.'s own downloads of FB15k, WN18
# Git LFS stores the file: its pointer at this commit publishes the sha256 pinned below
HETIONET = "https://github.com/hetio/hetionet/raw/8a6cc0c5604d0e2908786e4de38af67b8e46ee4a/hetnet/tsv"
DB100K = ("https://raw.githubusercontent.com/iieir-km/ComplEx-NNE_AER/47fb01b3fa876a3d5154fa9b4e3c2b9fc2f29f08"
          "/datasets/DB100K")
LEAKAGE = ("its test set leaks through inverse relations: many test triples (h, r, t) have their inverse (t, r', h) in "
           "train, so a rule that only looks it up rivals trained models (Toutanova & Chen 2015; Dettmers et al. "
           "2018); use {}, made without them")


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

    Downloads laid out otherwise say how: ``members`` names the archive's file of each split (or of ``WHOLE``, one
    file of all facts), ``columns`` picks head, relation and tail from files with more columns (``header``: their
    first line names them), and ``split`` (train, valid, test fractions, with ``seed``) has kgem split the
    ``WHOLE`` file once, when it is downloaded. ``deprecated`` says why a dataset should not be used, and what
    instead: ``load_dataset`` logs it as a warning.
    """

    name: str
    description: str
    counts: tuple[int, int, int, int, int] | None = None
    bundled: bool = False
    archive: RemoteFile | None = None
    files: dict[str, RemoteFile] = field(default_factory=dict)
    inner: str = ""  # folder inside the archive that holds the split files
    edge_weights: int | None = None
    members: dict[str, str] = field(default_factory=dict)  # split (or WHOLE) -> its file's path in the archive
    columns: tuple[int, int, int] | None = None  # the head, relation and tail columns of files with more
    header: bool = False  # each file's first line names its columns
    split: tuple[float, float, float] | None = None  # train, valid, test fractions of the WHOLE file
    seed: int = 0  # of that split
    deprecated: str | None = None
    # A format of its own: called with the staging folder, where the download lies as ``archive`` (or the
    # ``files`` under their split names); it leaves split files there that ``Dataset.from_folder`` reads.
    prepare: Callable[[Path], None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        """A layout that cannot work is a mistake in the registration: said when it is made, not at download."""
        if not set(self.members) <= {*SPLITS, WHOLE} or (self.members and self.archive is None):
            raise DataError(f"dataset {self.name!r}: members name files of an archive for {[*SPLITS, WHOLE]}, got "
                            f"{sorted(self.members)}")
        if (self.split is None) == (WHOLE in {*self.members, *self.files}):
            raise DataError(f"dataset {self.name!r}: a {WHOLE!r} file and split fractions come together")
        if self.split is not None:
            check_ratios(self.split)

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
    DatasetInfo("fb15k", "FB15k (Bordes et al. 2013)", (14951, 1345, 483142, 50000, 59071),
                archive=RemoteFile(f"{BORDES}fb15k.tgz"), deprecated=LEAKAGE.format("fb15k237"),
                members={split: f"FB15k/freebase_mtr100_mte100-{split}.txt" for split in SPLITS}),
    DatasetInfo("wn18", "WN18 (Bordes et al. 2013)", (40943, 18, 141442, 5000, 5000),
                archive=RemoteFile(f"{BORDES}wordnet-mlj12.tar.gz"), deprecated=LEAKAGE.format("wn18rr"),
                members={split: f"wordnet-mlj12/wordnet-mlj12-{split}.txt" for split in SPLITS}),
    # OpenBioLink's own link (zenodo); its files are tab-separated despite .csv, 6 columns: h, r, t, quality, TP/TN,
    # source (quality may be empty)
    DatasetInfo("openbiolink", "OpenBioLink2020 (Breit et al. 2020): biomedical, directed high-quality split",
                (180992, 28, 4192002, 188394, 183011),
                archive=RemoteFile("https://zenodo.org/record/3826919/files/HQ_DIR.zip?download=1"),
                members={split: f"HQ_DIR/train_test_data/{name}_sample.csv"
                         for split, name in (("train", "train"), ("valid", "val"), ("test", "test"))},
                columns=(0, 1, 2)),
    # 2,250,197 edges of 24 kinds among 45,158 of its 47,031 nodes; split: valid and test 10% each of all edges
    DatasetInfo("hetionet", "Hetionet v1.0 (Himmelstein et al. 2017): biomedical, split by kgem (seed 0)",
                (45158, 24, 1800157, 225020, 225020), header=True, split=(0.8, 0.1, 0.1), files={
                    WHOLE: RemoteFile(f"{HETIONET}/hetionet-v1.0-edges.sif.gz",
                                      "611f0411ac666be4e0270e54bbca67407e14720bfc3099311f0f5eec25c5a947")}),
    # 5,874,261 lines (DRKG's Readme); PyKEEN's deduplicated count suggests 3 repeat a line, which are dropped
    DatasetInfo("drkg", "DRKG (Ioannidis et al. 2020): drug repurposing, split by kgem (seed 0)",
                (97238, 107, 4699406, 587426, 587426), split=(0.8, 0.1, 0.1),
                archive=RemoteFile("https://dgl-data.s3-us-west-2.amazonaws.com/dataset/DRKG/drkg.tar.gz"),
                members={WHOLE: "drkg.tsv"}),
    # the copy PyKEEN uses (the project page links a Dropbox file)
    DatasetInfo("wikidata5m", "Wikidata5M (Wang et al. 2021), transductive split",
                (4594485, 822, 20614279, 5163, 5133),
                archive=RemoteFile("https://zenodo.org/record/5546383/files/wikidata5m_transductive.tar.gz"),
                members={split: f"wikidata5m_transductive_{split}.txt" for split in SPLITS}),
    # valid and test pinned from the repository's git objects; train's object was not at hand
    DatasetInfo("db100k", "DB100K (Ding et al. 2018): DBpedia", (99604, 470, 597572, 50000, 50000), files={
        "train": RemoteFile(f"{DB100K}/_train.txt"),
        "valid": RemoteFile(f"{DB100K}/_valid.txt", "ab1abc4327c4c18ae3b9384be2d876e51eb5dab7b71bfc06ddc42f4a974811da"),
        "test": RemoteFile(f"{DB100K}/_test.txt", "99c562445be98a57a1781fba6f09c30346469c96a91c208a74936bfbb2e540b9")}),
]:
    register_dataset(_info)

# OGB's knowledge graphs, from OGB's own archives (ogb/linkproppred/master.csv), which publish no checksum:
# ``kgem.data.ogb`` reads their torch-saved splits without running them, and keeps each valid and test triple's
# negatives for ``evaluation.protocol: ogb``
OGB = "http://snap.stanford.edu/ogb/data/linkproppred"
for _info in [
    DatasetInfo("ogbl-biokg", "ogbl-biokg (Hu et al. 2020, OGB): biomedical, 5 entity types, random split, "
                "negatives given", (93773, 51, 4762678, 162886, 162870), archive=RemoteFile(f"{OGB}/biokg.zip"),
                prepare=prepare_biokg),
    DatasetInfo("ogbl-wikikg2", "ogbl-wikikg2 (Hu et al. 2020, OGB): Wikidata, time split, negatives given",
                (2500604, 535, 16109182, 429456, 598543), archive=RemoteFile(f"{OGB}/wikikg-v2.zip"),
                prepare=prepare_wikikg2),
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
    if info is not None and info.deprecated:
        log.warning("dataset %r is deprecated: %s", info.name, info.deprecated)
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
            if info.members:
                extract_members(archive, staging, info.members, source=info.archive.url)
            elif info.prepare is None:
                extract_splits(archive, staging, info.inner, source=info.archive.url)
            if info.prepare is None:
                archive.unlink()
        for split, remote in info.files.items():
            download_file(remote, staging / split_file_name(split, remote.url), desc=f"{info.name}/{split}")
        if info.columns is not None or info.header:
            keep_columns(staging, info.columns or (0, 1, 2), header=info.header)
        if info.split is not None:
            split_whole(staging, info.split, seed=info.seed)
        if info.prepare is not None:
            info.prepare(staging)
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
