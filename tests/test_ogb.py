"""OGB's knowledge graphs in OGB's own format, and OGB's protocol: tiny biokg- and wikikg2-like archives (OGB's member
names and keys, the split files made with torch.save) served on 127.0.0.1 and loaded through ``load_dataset``; their
ids, labels and negatives checked against what was packed; split files naming other globals refused; the protocol's
ranks against brute force (every candidate scored by ``score_hrt``, counted as OGB counts) and a constructed tie."""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kgem.cli import main
from kgem.data import DatasetInfo, RemoteFile, load_dataset
from kgem.data import ogb as ogb_module
from kgem.data.negatives import GivenNegatives
from kgem.data.sources import DATASETS
from kgem.errors import ConfigError, DataError, EvaluationError
from kgem.evaluation.given import evaluate_given, given_evaluator
from kgem.models import build_model
from kgem.pipeline import pipeline

BIOKG_TYPES = {"disease": 3, "drug": 4, "protein": 5}  # OGB's global ids: the types in sorted order
OFFSETS = {"disease": 0, "drug": 3, "protein": 7}
SIGNATURES = [("drug", "protein"), ("protein", "protein"), ("drug", "disease"), ("disease", "protein")]
K = 5  # negatives per side and triple


def saved(obj: object, *, numpy1: bool = False) -> bytes:
    """``torch.save(obj)``; ``numpy1``: with the array reconstruction named as numpy 1 named it (OGB's files do)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    if not numpy1:
        return buffer.getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("data.pkl"):  # protocol 2 names globals as text lines
                data = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
            target.writestr(info.filename, data)
    return out.getvalue()


def gz(text: str) -> bytes:
    return gzip.compress(text.encode())


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def biokg_splits(seed: int = 0) -> dict[str, dict[str, object]]:
    """biokg-like split dicts: per-type ids, types as OGB names them, negatives of the same type for valid/test."""
    rng = np.random.default_rng(seed)
    splits: dict[str, dict[str, object]] = {}
    for split, rows in (("train", 36), ("valid", 6), ("test", 7)):
        relation = rng.integers(0, len(SIGNATURES), rows)
        head_type = np.array([SIGNATURES[r][0] for r in relation])
        tail_type = np.array([SIGNATURES[r][1] for r in relation])
        head = np.array([rng.integers(0, BIOKG_TYPES[t]) for t in head_type])
        tail = np.array([rng.integers(0, BIOKG_TYPES[t]) for t in tail_type])
        data: dict[str, object] = {"head": head, "relation": relation, "tail": tail,
                                   "head_type": head_type.tolist() if split == "train" else head_type,
                                   "tail_type": tail_type.tolist() if split == "train" else tail_type}
        if split != "train":
            data["head_neg"] = np.stack([rng.integers(0, BIOKG_TYPES[t], K) for t in head_type])
            data["tail_neg"] = np.stack([rng.integers(0, BIOKG_TYPES[t], K) for t in tail_type])
        splits[split] = data
    return splits


def biokg_archive(splits: dict[str, dict[str, object]], **replaced: bytes) -> bytes:
    files = {f"biokg/split/random/{split}.pt": saved(data, numpy1=True) for split, data in splits.items()}
    files["biokg/raw/num-node-dict.csv.gz"] = gz("disease,drug,protein\n3,4,5\n")
    files["biokg/RELEASE_v1.txt"] = b"ogbl-biokg\n"
    return zipped({**files, **replaced})


def wikikg2_splits(seed: int = 1) -> dict[str, dict[str, object]]:
    """wikikg2-like split dicts over 40 nodes (node 39 in no triple, an entity all the same)."""
    rng = np.random.default_rng(seed)
    splits: dict[str, dict[str, object]] = {}
    for split, rows in (("train", 40), ("valid", 8), ("test", 8)):
        data: dict[str, object] = {"head": rng.integers(0, 39, rows), "relation": rng.integers(0, 5, rows),
                                   "tail": rng.integers(0, 39, rows)}
        if split != "train":
            data["head_neg"] = rng.integers(0, 40, (rows, 6))
            data["tail_neg"] = rng.integers(0, 40, (rows, 6))
        splits[split] = data
    return splits


def wikikg2_archive(splits: dict[str, dict[str, object]], *, whole: bool = False) -> bytes:
    if whole:  # OGB's short-cut: one split_dict.pt
        files = {"wikikg-v2/split/time/split_dict.pt": saved(splits)}
    else:
        files = {f"wikikg-v2/split/time/{split}.pt": saved(data) for split, data in splits.items()}
    files["wikikg-v2/raw/num-node-list.csv.gz"] = gz("40\n")
    return zipped(files)


def served(server, name: str, archive: bytes) -> DatasetInfo:
    base, root, _ = server
    (root / f"{name}.zip").write_bytes(archive)
    return dataclasses.replace(DATASETS.get(name), archive=RemoteFile(f"{base}/{name}.zip"))


def global_ids(data: dict[str, object], side: str, key: str | None = None) -> np.ndarray:
    ids = np.asarray(data[key or side])
    offsets = np.array([OFFSETS[t] for t in data[f"{side}_type"]])
    return ids + (offsets[:, None] if ids.ndim == 2 else offsets)


@pytest.fixture
def biokg(server, tmp_path):
    splits = biokg_splits()
    info = served(server, "ogbl-biokg", biokg_archive(splits))
    return load_dataset(info, cache_dir=tmp_path / "cache"), splits, info


def test_biokg_loads_with_ogbs_global_ids_typed_labels_and_negatives(biokg, server, tmp_path) -> None:
    ds, splits, info = biokg
    assert (ds.num_entities, ds.num_relations) == (12, 4)
    assert ds.entities.labels.tolist() == [f"{t}:{i}" for t in ("disease", "drug", "protein")
                                           for i in range(BIOKG_TYPES[t])]
    for split, data in splits.items():
        expected = np.stack([global_ids(data, "head"), data["relation"], global_ids(data, "tail")], 1)
        assert ds.splits()[split].hrt.numpy().tolist() == expected.tolist(), split
    assert sorted(ds.negatives) == ["test", "valid"]
    for split in ("valid", "test"):
        negatives = ds.negatives[split]
        assert negatives.head.numpy().tolist() == global_ids(splits[split], "head", "head_neg").tolist()
        assert negatives.tail.numpy().tolist() == global_ids(splits[split], "tail", "tail_neg").tolist()
    folder = tmp_path / "cache" / "ogbl-biokg"
    assert sorted(p.name for p in folder.iterdir()) == [
        "dataset.json", "entities.tsv", "relations.tsv", "test.bin", "test.negatives.safetensors", "train.bin",
        "valid.bin", "valid.negatives.safetensors"]
    requests = server[2]
    again = load_dataset(info, cache_dir=tmp_path / "cache")  # from the cache: no second download
    assert len(requests) == 1 and torch.equal(again.test.hrt, ds.test.hrt)
    assert torch.equal(again.negatives["test"].tail, ds.negatives["test"].tail)


def test_an_archive_at_hand_prepares_a_folder_load_dataset_reads(tmp_path) -> None:
    splits = biokg_splits()
    (tmp_path / "biokg.zip").write_bytes(biokg_archive(splits))
    folder = ogb_module.prepare_archive(tmp_path / "biokg.zip", tmp_path / "ogb" / "biokg", "ogbl-biokg")
    ds = load_dataset("ogbl-biokg", path=folder)
    assert ds.name == "ogbl-biokg" and ds.num_entities == 12 and (tmp_path / "biokg.zip").is_file()
    assert ds.negatives["valid"].head.numpy().tolist() == global_ids(splits["valid"], "head", "head_neg").tolist()
    with pytest.raises(DataError, match="unknown OGB dataset 'ogbl-ppa'"):
        ogb_module.prepare_archive(tmp_path / "biokg.zip", tmp_path / "ppa", "ogbl-ppa")


@pytest.mark.parametrize("whole", [False, True])
def test_wikikg2_keeps_ogbs_ids_and_every_node(server, tmp_path, whole) -> None:
    splits = wikikg2_splits()
    ds = load_dataset(served(server, "ogbl-wikikg2", wikikg2_archive(splits, whole=whole)),
                      cache_dir=tmp_path / "cache")
    assert ds.num_entities == 40 and ds.entities.labels.tolist() == [str(i) for i in range(40)]
    assert ds.relations.labels.tolist() == [str(i) for i in range(ds.num_relations)]
    for split, data in splits.items():
        expected = np.stack([data["head"], data["relation"], data["tail"]], 1)
        assert ds.splits()[split].hrt.numpy().tolist() == expected.tolist()
    assert ds.negatives["valid"].head.numpy().tolist() == splits["valid"]["head_neg"].tolist()
    assert ds.negatives["test"].tail.numpy().tolist() == splits["test"]["tail_neg"].tolist()


class Payload:
    """A class a split file has no business building."""


class Command:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("kind", ["call", "class"])
def test_a_split_file_naming_another_global_is_refused_unrun(server, tmp_path, kind) -> None:
    marker = tmp_path / "ran"
    splits = biokg_splits()
    splits["valid"]["head"] = Command(marker) if kind == "call" else Payload()
    info = served(server, "ogbl-biokg", biokg_archive(splits))
    named = r"posix\.system|os\.system" if kind == "call" else r"[\w.]*Payload"
    with pytest.raises(DataError, match=rf"^biokg/split/random/valid\.pt: refused: it names the global ({named})"):
        load_dataset(info, cache_dir=tmp_path / "cache")
    assert not marker.exists() and not (tmp_path / "cache" / "ogbl-biokg").exists()


def test_malformed_archives_name_their_problem(server, tmp_path) -> None:
    splits = biokg_splits()
    cases = [
        (biokg_archive(splits, **{"../evil.pt": b"x"}), r"refused: the archive holds '\.\./evil\.pt'"),
        (zipped({"biokg/split/random/train.pt": saved(splits["train"])}), "no biokg/raw/num-node-dict.csv.gz"),
        (biokg_archive(splits, **{"biokg/split/random/test.pt": b"not a torch file"}),
         r"^biokg/split/random/test\.pt: not a readable split file"),
        (biokg_archive({**splits, "test": {k: v for k, v in splits["test"].items() if k != "tail_neg"}}),
         r"test\.pt: no 'tail_neg'"),
    ]
    for number, (archive, message) in enumerate(cases):
        info = dataclasses.replace(served(server, "ogbl-biokg", archive), name=f"bad{number}")
        with pytest.raises(DataError, match=message):
            load_dataset(info, cache_dir=tmp_path / "cache")
    bad = biokg_splits()
    bad["test"]["tail_neg"][0, 0] = 99  # no such protein
    with pytest.raises(DataError, match=r"'tail_neg' of row 0 names node 99, outside the \d nodes of its type"):
        load_dataset(served(server, "ogbl-biokg", biokg_archive(bad)), cache_dir=tmp_path / "cache")


def test_torch_too_old_to_read_split_files_safely(server, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(ogb_module, "torch_version", lambda: (2, 5))
    with pytest.raises(DataError, match=r"train\.pt: reading OGB's split files safely needs torch>=2\.6"):
        load_dataset(served(server, "ogbl-biokg", biokg_archive(biokg_splits())), cache_dir=tmp_path / "cache")


def brute_force(model, hrt: torch.Tensor, head_neg: torch.Tensor, tail_neg: torch.Tensor) -> np.ndarray:
    """OGB's rank of every query, head queries first: each candidate triple scored alone by ``score_hrt`` (a head
    query of a reciprocal model as the tail query of the inverse relation), then 0.5 * (#neg > pos + #neg >= pos)
    + 1."""
    ranks = []
    with torch.no_grad():
        for side, negatives in (("head", head_neg), ("tail", tail_neg)):
            for (h, r, t), row in zip(hrt.tolist(), negatives.tolist()):
                candidates = [h if side == "head" else t, *row]
                if side == "tail":
                    triples = [[h, r, e] for e in candidates]
                elif model.inverse:
                    triples = [[t, r + model.num_relations, e] for e in candidates]
                else:
                    triples = [[e, r, t] for e in candidates]
                scores = model.score_hrt(torch.tensor(triples)).numpy()
                positive, negative = scores[0], scores[1:]
                ranks.append(0.5 * ((negative > positive).sum() + (negative >= positive).sum()) + 1)
    return np.array(ranks)


def ogb_metrics(ranks: np.ndarray) -> dict[str, float]:
    return {"mrr": float((1 / ranks).mean()), **{f"hits@{k}": float((ranks <= k).mean()) for k in (1, 3, 10)}}


@pytest.mark.parametrize("inverse", [False, True])
def test_the_protocols_ranks_are_brute_forces(biokg, inverse) -> None:
    ds, _, _ = biokg
    torch.manual_seed(3)
    model = build_model("complex", ds.num_entities, ds.num_relations, 4, inverse=inverse).double()
    negatives = ds.negatives["test"]
    result = evaluate_given(model, ds.test.hrt, head_negatives=negatives.head, tail_negatives=negatives.tail,
                            batch_size=3, memory_budget_bytes=3 * 4 * 3 * 2)  # ids and blocks of 2 scores
    expected = brute_force(model, ds.test.hrt, negatives.head, negatives.tail)
    assert result.ranks.realistic.numpy() == pytest.approx(expected)
    metrics = result.metrics()
    for key, value in ogb_metrics(expected).items():
        assert metrics[key] == pytest.approx(value)
    assert result.ranks.num_candidates.tolist() == [K + 1] * (2 * len(ds.test))
    assert (result.sampled, result.sampler, result.num_negatives, result.filtered) == (True, "given", K, False)
    assert "vs 5 sampled negatives (given with each triple)" in result.describe()
    with pytest.raises(EvaluationError, match="OGB's protocol"):
        result.estimate()


class Fixed(torch.nn.Module):
    """Scores entity ``e`` as ``values[e]`` in every query: ties by construction."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.register_buffer("values", torch.tensor(values))

    @property
    def num_entities(self) -> int:
        return len(self.values)

    def score_t(self, h, r, tails=None):
        return self.values[tails].expand(len(h), -1)

    def score_h(self, r, t, heads=None):
        return self.values[heads].expand(len(t), -1)


def test_a_tie_counts_half_as_ogb_ranks_it() -> None:
    model = Fixed([0.0, 1.0, 2.0, 2.0, 3.0, 0.5])
    # the true tail 2 (score 2) against 3 (a tie), 2 itself (a tie), 4 (better), 0 and 5 (worse)
    result = evaluate_given(model, torch.tensor([[1, 0, 2]]), head_negatives=torch.tensor([[0, 5, 5, 5, 5]]),
                            tail_negatives=torch.tensor([[3, 2, 4, 0, 5]]), sides="tail")
    assert result.ranks.optimistic.tolist() == [2.0] and result.ranks.pessimistic.tolist() == [4.0]
    assert result.ranks.realistic.tolist() == [3.0]  # OGB: 0.5 * (1 + 3) + 1
    metrics = result.metrics()
    assert (metrics["mrr"], metrics["hits@1"], metrics["hits@3"]) == (pytest.approx(1 / 3), 0.0, 1.0)


def test_each_triple_keeps_its_own_negatives_in_any_order_and_fraction(biokg) -> None:
    ds, _, _ = biokg
    torch.manual_seed(0)
    model = build_model("distmult", ds.num_entities, ds.num_relations, 4, inverse=False).double()
    evaluator = given_evaluator(ds.negatives["test"], sides="tail")
    full = evaluator(model, ds.test.hrt).ranks.realistic
    picked = torch.tensor([4, 0, 2])
    assert torch.equal(evaluator(model, ds.test.hrt[picked]).ranks.realistic, full[picked])
    half = given_evaluator(ds.negatives["test"], sides="tail", fraction=0.5, seed=1)(model, ds.test.hrt)
    assert len(half.ranks) == 4 and set(half.ranks.realistic.tolist()) <= set(full.tolist())
    with pytest.raises(EvaluationError, match="have no given negatives"):
        evaluator(model, torch.tensor([[0, 0, 0]]))


def test_negatives_follow_another_vocabulary_by_label() -> None:
    hrt = torch.tensor([[0, 0, 1], [2, 1, 0]])
    negatives = GivenNegatives(hrt, torch.tensor([[1, 0], [0, 2]]), torch.tensor([[0, 0], [1, 2]]), "given")
    moved = negatives.translated(np.array([2, 0, 1]), np.array([1, 0]))  # old entity id -> new, relation likewise
    assert moved.hrt.tolist() == [[2, 1, 0], [1, 0, 2]]
    assert (moved.head.tolist(), moved.tail.tolist()) == ([[0, 2], [2, 1]], [[2, 2], [0, 1]])
    dropped = negatives.translated(np.array([2, 0, -1]), np.array([1, 0]))  # the model lacks entity 2
    assert dropped.hrt.tolist() == [[2, 1, 0]] and dropped.head.tolist() == [[0, 2]]
    with pytest.raises(DataError, match="^given: 1 given negatives name entities the model does not know"):
        negatives.translated(np.array([2, -1, 1]), np.array([1, 0]))  # triple 2 stays; its tail negative 1 cannot


def test_pipeline_and_kgem_evaluate_rank_by_ogbs_protocol(biokg, tmp_path, capsys) -> None:
    ds, _, _ = biokg
    config = {"model": {"name": "distmult", "dim": 8, "inverse": False},
              "training": {"epochs": 3, "frequency": 1, "patience": 5}, "evaluation": {"protocol": "ogb"}}
    result = pipeline(config, data=ds, progress=False, output=tmp_path / "run")
    negatives = ds.negatives["test"]
    model = result.model.double()
    expected = ogb_metrics(brute_force(model, ds.test.hrt, negatives.head, negatives.tail))
    assert result.evaluation.sampler == "given"
    assert result.evaluation.metrics()["mrr"] == pytest.approx(expected["mrr"], rel=1e-5)
    assert len(result.history.validation) == 3  # validated on valid's own negatives every epoch
    folder = tmp_path / "cache" / "ogbl-biokg"
    out = tmp_path / "metrics.csv"
    assert main(["evaluate", str(tmp_path / "run" / "model"), "--data-path", str(folder), "--protocol", "ogb",
                 "--output", str(out), "-q"]) == 0
    assert "given with each triple" in capsys.readouterr().out
    table = pd.read_csv(out, index_col=0)
    assert table.loc["both", "mrr"] == pytest.approx(expected["mrr"], rel=1e-5)


def test_the_protocol_needs_a_dataset_with_given_negatives() -> None:
    with pytest.raises(ConfigError, match="dataset 'nations' gives none for its valid split"):
        pipeline({"data": {"dataset": "nations"}, "evaluation": {"protocol": "ogb"}}, progress=False)
    with pytest.raises(ConfigError, match="protocol ogb ranks against those given with each triple"):
        pipeline({"evaluation": {"protocol": "ogb", "num_negatives": 10}}, progress=False)
