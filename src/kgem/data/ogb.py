"""OGB's knowledge graphs (Hu et al. 2020, Open Graph Benchmark): ogbl-biokg and ogbl-wikikg2, from OGB's archives.

An archive holds ``<folder>/split/<kind>/{train,valid,test}.pt`` (or one ``split_dict.pt``): torch-saved dicts of
arrays with the keys ``head``, ``relation`` and ``tail``, and for valid and test ``head_neg`` / ``tail_neg``, each
triple's sampled negative heads and tails (OGB ranks the true entity against them). biokg's also name the entity type
of each end (``head_type``, ``tail_type``): its ids count within their type. How many nodes there are (of each type)
is in ``<folder>/raw/``: ``num-node-dict.csv.gz`` (biokg: a column per type) or ``num-node-list.csv.gz`` (wikikg2).

``prepare`` turns that into an imported dataset folder (``kgem.data.imports``) whose entity ids are OGB's global node
ids: wikikg2's as they are; biokg's as OGB's examples number them, the types in sorted order and each type's ids
offset by the nodes of the types before it. Every node is an entity, whether a training triple names it or not, as
in OGB. Labels: a wikikg2 entity's id; a biokg entity's ``<type>:<id within the type>`` (``protein:123``: the row of
OGB's per-type mapping files); a relation's id. The negatives of valid and test lie beside their splits, in the same
ids (``kgem.data.negatives``), for ``evaluation.protocol: ogb``.

The ``.pt`` files are pickles. They are read by ``torch.load(weights_only=True)`` with nothing allowed beyond torch's
own types but numpy's array reconstruction, so a file naming any other global (a function to call, a class to
build) is refused before anything in it runs. No path inside the archive is used to write a file.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import torch

from kgem.atomic import atomic_dir
from kgem.data.archives import safe_members
from kgem.data.imports import ImportReport, write_meta
from kgem.data.negatives import save_negatives
from kgem.data.vocab import Vocabulary
from kgem.errors import DataError

SPLITS = ("train", "valid", "test")
TRIPLE_KEYS = ("head", "relation", "tail")
NEGATIVE_KEYS = ("head_neg", "tail_neg")
TYPE_KEYS = ("head_type", "tail_type")
SAFE_TORCH = (2, 6)  # torch.serialization.safe_globals with globals allowed under the names the files use
SCRATCH = ".ogb-split.pt"  # a split file copied out of the archive for torch.load, removed after

Opener = Callable[[], IO[bytes]]


@dataclass(frozen=True)
class Layout:
    """Where one OGB dataset's files lie in its archive, and whether its ids count within entity types."""

    name: str
    folder: str
    split: str
    typed: bool

    @property
    def counts_file(self) -> str:
        return f"{self.folder}/raw/{'num-node-dict' if self.typed else 'num-node-list'}.csv.gz"

    def split_file(self, split: str) -> str:
        return f"{self.folder}/split/{self.split}/{split}.pt"


BIOKG = Layout("ogbl-biokg", "biokg", "random", typed=True)
WIKIKG2 = Layout("ogbl-wikikg2", "wikikg-v2", "time", typed=False)


def prepare(staging: Path, layout: Layout) -> None:
    """``DatasetInfo.prepare`` of an OGB dataset: read the archive downloaded to ``staging/archive``, write the
    imported dataset folder and its negatives there, remove the archive. One split is in memory at a time (OGB's
    loader holds them all)."""
    archive = staging / "archive"
    rows, num_relations = {}, 0
    with safe_members(archive, layout.name) as found:
        files = {str(path): opener for path, opener in found if opener is not None}
        counts = node_counts(files, layout)
        for split, name, data in split_dicts(files, layout, staging / SCRATCH):
            values = columns(data, layout, name, split)
            rows[split], relations = write_split(staging, layout, split, values, counts)
            num_relations = max(num_relations, relations)
            del data, values  # before the next split file loads
    entities = Vocabulary(entity_labels(counts), kind="entity")
    entities.save(staging / "entities.tsv")
    Vocabulary([str(i) for i in range(num_relations)], kind="relation").save(staging / "relations.tsv")
    write_meta(staging, ImportReport(staging, len(entities), num_relations, rows),
               {"sources": [f"OGB {layout.name}, split {layout.split}"]})
    archive.unlink()


prepare_biokg = partial(prepare, layout=BIOKG)
prepare_wikikg2 = partial(prepare, layout=WIKIKG2)
LAYOUTS = {layout.name: layout for layout in (BIOKG, WIKIKG2)}


def prepare_archive(archive: str | os.PathLike[str], folder: str | os.PathLike[str], name: str) -> Path:
    """Write the dataset folder of an OGB archive at hand (``biokg.zip``, ``wikikg-v2.zip``, fetched without kgem)
    into ``folder``, for ``load_dataset(name, path=folder)``; ``folder`` appears complete or not at all."""
    if name not in LAYOUTS:
        raise DataError(f"unknown OGB dataset {name!r}; choose from {', '.join(LAYOUTS)}")
    source = Path(archive).resolve()
    if not source.is_file():
        raise DataError(f"{archive}: no such file")
    with atomic_dir(folder) as staging:
        try:  # the archive is only read: a link to it does, without a copy of gigabytes
            (staging / "archive").symlink_to(source)
        except OSError:
            shutil.copyfile(source, staging / "archive")
        prepare(staging, LAYOUTS[name])
    return Path(folder)


def node_counts(files: dict[str, Opener], layout: Layout) -> dict[str, int]:
    """The number of nodes of each type (biokg: the columns of ``num-node-dict.csv.gz``), or of all of them under
    the type ``""`` (wikikg2: ``num-node-list.csv.gz``), from OGB's raw files."""
    name = layout.counts_file
    if name not in files:
        raise DataError(f"{layout.name}: no {name} in the archive: the number of nodes is unknown")
    try:
        with files[name]() as f:
            frame = pd.read_csv(f, compression="gzip", header=0 if layout.typed else None, nrows=1)
        counts = {str(key) if layout.typed else "": int(value) for key, value in frame.iloc[0].items()}
    except (ValueError, IndexError, OSError, EOFError, pd.errors.ParserError) as e:
        raise DataError(f"{name}: not a table of node counts: {e}") from e
    if not counts or any(count < 0 for count in counts.values()) or (not layout.typed and len(counts) != 1):
        raise DataError(f"{name}: expected {'a count per node type' if layout.typed else 'one count'}, got {counts}")
    return counts


def split_dicts(files: dict[str, Opener], layout: Layout, scratch: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Each split, the archive path it came from and its dict, a split file at a time (or all from OGB's one
    ``split_dict.pt``)."""
    whole = layout.split_file("split_dict")
    if whole in files:
        found = load_split_file(files[whole], whole, scratch)
        if not isinstance(found, dict):
            raise DataError(f"{whole}: expected a dict of the three splits, got {type(found).__name__}")
        parts: Iterator[tuple[str, str, Any]] = ((split, f"{whole}[{split!r}]", found.get(split)) for split in SPLITS)
    else:
        missing = [layout.split_file(split) for split in SPLITS if layout.split_file(split) not in files]
        if missing:
            raise DataError(f"{layout.name}: no {missing[0]} in the archive (it holds {sorted(files)[:10]})")
        parts = ((split, layout.split_file(split), load_split_file(files[layout.split_file(split)],
                                                                    layout.split_file(split), scratch))
                 for split in SPLITS)
    for split, name, data in parts:
        if not isinstance(data, dict):
            raise DataError(f"{name}: expected a dict of arrays, got {type(data).__name__}")
        yield split, name, data
        del data  # before the next split file loads


def load_split_file(opener: Opener, name: str, scratch: Path) -> Any:
    """A ``.pt`` member of the archive, copied to ``scratch`` (torch reads a file it can seek) and loaded with
    only torch's types and numpy arrays allowed; anything else is a DataError naming ``name``."""
    if torch_version() < SAFE_TORCH:
        raise DataError(f"{name}: reading OGB's split files safely needs torch>=2.6 (torch.load weights_only with "
                        f"numpy's array globals allowed by name); this is torch {torch.__version__}")
    try:
        with opener() as source, open(scratch, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 24)
        with torch.serialization.safe_globals(numpy_globals()):
            return torch.load(scratch, map_location="cpu", weights_only=True)
    except Exception as e:  # an untrusted file: whatever torch.load makes of it is this file's DataError
        raise DataError(f"{name}: {refusal(e)}") from e
    finally:
        scratch.unlink(missing_ok=True)


def torch_version() -> tuple[int, int]:
    major, minor = (int(part) for part in re.findall(r"\d+", torch.__version__)[:2])
    return major, minor


def numpy_globals() -> list[Any]:
    """What an array pickled by numpy 1 or 2 names: the reconstruction function (under both module names), the
    array and dtype classes (bool, integers, floats, strings, objects: an object array's items are unpickled under
    the same rules)."""
    core = np._core if hasattr(np, "_core") else np.core  # numpy 2 / numpy 1
    rebuild = core.multiarray._reconstruct
    dtypes = {type(np.dtype(code)) for code in "?bhilqBHILQefdUSO"}
    return [(rebuild, "numpy.core.multiarray._reconstruct"), (rebuild, "numpy._core.multiarray._reconstruct"),
            np.ndarray, np.dtype, *sorted(dtypes, key=str)]


def refusal(error: Exception) -> str:
    """One line on why torch.load did not read a split file: the global it refused, or its first complaint."""
    text = str(error)
    named = re.search(r"GLOBAL ([\w.]+)", text)
    if named:
        return (f"refused: it names the global {named.group(1)}, which a split file of arrays has no use for "
                f"(read with torch.load weights_only: nothing in it was run)")
    text = text.split("WeightsUnpickler error:")[-1]
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
    return f"not a readable split file: {first[:300]}"


def columns(data: dict[str, Any], layout: Layout, name: str, split: str) -> dict[str, np.ndarray]:
    """The arrays of one split's dict (from ``name``): the triples' columns, their types (biokg) and negatives
    (valid and test must have them; train's are read where given), checked for shape and kind."""
    wanted = [*TRIPLE_KEYS, *(TYPE_KEYS if layout.typed else ())]
    if split != "train" or "head_neg" in data:
        wanted += NEGATIVE_KEYS
    missing = [key for key in wanted if key not in data]
    if missing:
        raise DataError(f"{name}: no {missing[0]!r} (it holds {sorted(map(str, data))})")
    found = {key: array(data[key], name, key) for key in wanted}
    rows = len(found["head"])
    for key, values in found.items():
        shape = (rows, values.shape[1] if values.ndim == 2 else 0) if key in NEGATIVE_KEYS else (rows,)
        if values.shape != shape or (key in NEGATIVE_KEYS and values.ndim != 2):
            raise DataError(f"{name}: {key!r} has shape {values.shape}; expected {rows} rows like 'head'"
                            f"{' of K ids' if key in NEGATIVE_KEYS else ''}")
        if key not in TYPE_KEYS and values.dtype.kind not in "iu":
            raise DataError(f"{name}: {key!r} holds {values.dtype} values, not integer ids")
    return found


def array(value: Any, name: str, key: str) -> np.ndarray:
    """A column as a numpy array: integer ids as int64, entity types as str."""
    if isinstance(value, torch.Tensor):
        value = value.numpy()
    elif not isinstance(value, np.ndarray | list | tuple):
        raise DataError(f"{name}: {key!r} is a {type(value).__name__}, not an array")
    found = np.asarray(value)
    if key in TYPE_KEYS:
        return found.astype(str)
    return found.astype(np.int64) if found.dtype.kind in "iu" else found


def global_ids(ids: np.ndarray, types: np.ndarray | None, counts: dict[str, int], name: str, key: str) -> np.ndarray:
    """Ids counted within their type (``types``, one per row) as global ids, the types in sorted order; without
    types (one count under ``""``) the ids themselves. An id out of its type's range is a DataError."""
    order = sorted(counts)
    sizes = np.array([counts[t] for t in order], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    if types is None:
        code = np.zeros(len(ids), dtype=np.int64)
    else:
        known, code = np.unique(types, return_inverse=True)
        unknown = sorted(set(known.tolist()) - set(order))
        if unknown:
            raise DataError(f"{name}: entity type {unknown[0]!r} of {key!r} is not among the node types {order}")
        code = np.searchsorted(order, known)[code]
    shape = (-1, 1) if ids.ndim == 2 else (-1,)
    limit, base = sizes[code].reshape(shape), offsets[code].reshape(shape)
    bad = (ids < 0) | (ids >= limit)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1) if ids.ndim == 2 else bad)[0])
        value = int(np.asarray(ids[row])[np.asarray(bad[row])].reshape(-1)[0])
        raise DataError(f"{name}: {key!r} of row {row} names node {value}, outside the {int(limit[row].item())} "
                        f"nodes of its type")
    return ids if types is None else ids + base


def write_split(folder: Path, layout: Layout, split: str, values: dict[str, np.ndarray],
                counts: dict[str, int]) -> tuple[int, int]:
    """A split's id file (``<split>.bin``, global ids) and its negatives; returns its rows and the relations it
    needs (its largest relation id + 1)."""
    relation = values["relation"]
    if len(relation) and int(relation.min()) < 0:
        raise DataError(f"{layout.name} {split}: a negative relation id")
    ends = {}
    for key in ("head", "tail", *(NEGATIVE_KEYS if "head_neg" in values else ())):
        types = values[f"{key.split('_')[0]}_type"] if layout.typed else None
        ends[key] = global_ids(values[key], types, counts, f"{layout.name} {split}", key)
    hrt = np.stack([ends["head"], relation, ends["tail"]], axis=1)
    with open(folder / f"{split}.bin", "wb") as f:
        np.ascontiguousarray(hrt, dtype=np.int64).tofile(f)
    if "head_neg" in ends:
        save_negatives(folder, split, torch.from_numpy(ends["head_neg"]), torch.from_numpy(ends["tail_neg"]))
    return len(hrt), int(relation.max()) + 1 if len(relation) else 0


def entity_labels(counts: dict[str, int]) -> list[str]:
    """The labels in global id order: ``<type>:<id within the type>``, or the id alone without types."""
    return [f"{kind}:{i}" if kind else str(i) for kind in sorted(counts) for i in range(counts[kind])]
