"""Nearest neighbours at scale: the exact blocked scan against brute force over the whole table, on in-memory and
mapped tables; the faiss index's recall against that scan, its files and its errors; ``kgem index`` and
``kgem similar --index``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import kgem
from kgem.cli import main
from kgem.data import Vocabulary
from kgem.errors import DataError, KgemError
from kgem.inference import similarity
from kgem.inference.index import NeighbourIndex, build_index, draw_ids, recall, settings_path, similar_indexed
from kgem.inference.similarity import as_real, similar
from kgem.models import Model, build_model
from kgem.models.storage import mapped, mapped_tables

pytest.importorskip("faiss")

E, R = 2000, 5
ENTITIES = Vocabulary.from_labels([f"e{i:04d}" for i in range(E)], kind="entity")  # ids in label order
QUERIES = [f"e{i:04d}" for i in (0, 7, 1999, 512, 7, 1024)]
METRICS = ["cosine", "l2", "dot"]


def make(name: str = "distmult", dim: int = 4) -> Model:
    torch.manual_seed(0)
    return build_model(name, E, R, dim)


def brute_force(model: Model, ids: list[int], metric: str, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every similarity at once over the whole table, the query itself out, a stable descending sort cut at k."""
    with torch.no_grad():
        table = as_real(model.entity(None))
        if metric == "cosine":
            table = F.normalize(table, dim=-1)
        query = table[ids]
        sims = -torch.cdist(query, table) if metric == "l2" else query @ table.T
    sims[torch.arange(len(ids)), torch.as_tensor(ids)] = float("-inf")
    order = sims.sort(dim=1, descending=True, stable=True).indices[:, :k]
    return sims.gather(1, order), order


def neighbours(frame: pd.DataFrame, k: int) -> tuple[np.ndarray, np.ndarray]:
    return (frame["similarity"].to_numpy().reshape(-1, k),
            np.asarray(ENTITIES.ids(frame["neighbour"].tolist())).reshape(-1, k))


@pytest.mark.parametrize("name", ["distmult", "complex"])
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("budget", [None, 64 * 4])  # one block; blocks of 4 rows (the rows bound: 64 / 16 wide)
def test_blocked_similar_equals_brute_force_over_the_whole_table(name: str, metric: str, budget: int | None) -> None:
    model, k = make(name), 5
    frame = similar(model, ENTITIES, QUERIES, k=k, metric=metric, memory_budget_bytes=budget)
    assert frame["rank"].tolist() == list(range(1, k + 1)) * len(QUERIES)
    values, found = neighbours(frame, k)
    expected_values, expected = brute_force(model, [int(i) for i in ENTITIES.ids(QUERIES)], metric, k)
    np.testing.assert_array_equal(found, expected.numpy())
    np.testing.assert_allclose(values, expected_values.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("metric", ["dot", "l2"])
def test_tied_neighbours_rank_lower_id_first_across_blocks(metric: str) -> None:
    """Whole-number rows, so that equal similarities are exactly equal: the query e0000 and e0003, e0900, e1700 are the
    one row (4, 4, 4, 4), nearest by both metrics to itself, the others being drawn from [-3, 3]."""
    model = make()
    with torch.no_grad():
        drawn = torch.randint(-3, 4, model.entity.weight.shape, generator=torch.Generator().manual_seed(1))
        model.entity.weight.copy_(drawn.float())
        model.entity.weight[[0, 3, 900, 1700]] = 4.0
    frame = similar(model, ENTITIES, ["e0000"], k=3, metric=metric, memory_budget_bytes=16 * 4)  # blocks of 4 rows
    assert frame["neighbour"].tolist() == ["e0003", "e0900", "e1700"]


def test_the_scan_never_reads_the_whole_entity_table(monkeypatch: pytest.MonkeyPatch) -> None:
    model, read, released = make(), [], []
    lookup = model.entity.forward

    def blocks_only(ids: torch.Tensor | None = None) -> torch.Tensor:
        assert ids is not None, "the whole table was read"
        read.append(len(ids))
        return lookup(ids)

    monkeypatch.setattr(model.entity, "forward", blocks_only)
    monkeypatch.setattr(similarity, "release_entity_rows", lambda m, start, stop: released.append((start, stop)))
    similar(model, ENTITIES, ["e0000"], k=3, memory_budget_bytes=100 * 4)
    assert read == [1] + [25] * (E // 25)  # the query, then blocks of 100 floats of 4-wide rows
    assert released == [(start, min(start + 25, E)) for start in range(0, E, 25)]


def test_similar_on_a_mapped_entity_table_equals_the_in_memory_answer(tmp_path: Path) -> None:
    with mapped_tables(tmp_path, min_rows=E):
        on_disk = make("complex")
    assert mapped(on_disk.entity.weight) is not None
    in_memory = make("complex")
    assert torch.equal(on_disk.entity.weight, in_memory.entity.weight)
    for metric in METRICS:
        got = similar(on_disk, ENTITIES, QUERIES, k=4, metric=metric, memory_budget_bytes=300 * 4)
        pd.testing.assert_frame_equal(got, similar(in_memory, ENTITIES, QUERIES, k=4, metric=metric,
                                                   memory_budget_bytes=300 * 4))


@pytest.mark.parametrize("metric", METRICS)
def test_index_recall_against_the_exact_scan(metric: str) -> None:
    model = make(dim=8)
    index = build_index(model, metric=metric, memory_budget_bytes=500 * 4)
    assert index.settings.lists == 51 and index.settings.rows == E
    queries = draw_ids(E, 200, seed=1)
    index.probes = 17
    assert recall(index, model, queries, 10) >= 0.9
    index.probes = index.settings.lists  # every cell: exhaustive
    assert recall(index, model, queries, 10) == 1.0


def test_index_search_answers_like_similar() -> None:
    model = make(dim=8)
    index = build_index(model, metric="l2", lists=8, probes=8)
    ids = [int(i) for i in ENTITIES.ids(QUERIES)]
    values, found = index.search(ids, 6)
    exact_values, exact = brute_force(model, ids, "l2", 6)
    assert torch.equal(found, exact)
    torch.testing.assert_close(values, exact_values, rtol=0, atol=1e-4)  # negative distances
    frame = similar_indexed(index, model, ENTITIES, QUERIES, k=6)
    pd.testing.assert_frame_equal(frame[["query", "rank", "neighbour"]],
                                  similar(model, ENTITIES, QUERIES, k=6, metric="l2")[["query", "rank", "neighbour"]])


def test_building_twice_gives_the_same_index_and_save_load_round_trips(tmp_path: Path) -> None:
    model = make(dim=8)
    index = build_index(model, metric="cosine", probes=5, seed=3)
    again = build_index(model, metric="cosine", probes=5, seed=3)
    ids = draw_ids(E, 50, seed=2)
    first = index.search(ids, 10)
    assert all(torch.equal(a, b) for a, b in zip(first, again.search(ids, 10), strict=True))
    index.save(tmp_path / "entities.faiss")
    saved = json.loads(settings_path(tmp_path / "entities.faiss").read_text())
    assert {key: saved[key] for key in ("metric", "num_entities", "dim", "lists", "probes")} == {
        "metric": "cosine", "num_entities": E, "dim": 8, "lists": 51, "probes": 5}
    loaded = NeighbourIndex.load(tmp_path / "entities.faiss")
    assert loaded.settings == index.settings and loaded.probes == 5
    assert all(torch.equal(a, b) for a, b in zip(first, loaded.search(ids, 10), strict=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entities.faiss", "entities.faiss.json"]


def one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_an_index_for_another_model_or_metric_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "idx.faiss"
    build_index(make(dim=8), metric="l2", lists=4).save(file)
    index = NeighbourIndex.load(file)
    with pytest.raises(DataError) as error:
        recall(index, make(dim=4), [0, 1], 5)
    assert one_line(error).startswith(f"{file}: the index was built for another model (2000 entities, 5 relations, "
                                      f"entity rows 8 wide); this one has 2000 entities, 5 relations, rows 4 wide")
    with pytest.raises(DataError) as error:
        index.check(make(dim=8), metric="cosine")
    assert f"{file}: the index was built for metric l2, asked for cosine" in one_line(error)
    with pytest.raises(DataError, match="the index holds entity rows, asked for relation"):
        index.check(make(dim=8), kind="relation")


def test_missing_foreign_or_mismatched_index_files_are_one_line_errors(tmp_path: Path) -> None:
    file = tmp_path / "idx.faiss"
    with pytest.raises(DataError) as error:
        NeighbourIndex.load(file)
    assert one_line(error).startswith(f"{file}.json: no such file")
    build_index(make(dim=8), lists=4).save(file)
    build_index(make(dim=4), lists=4).save(tmp_path / "other.faiss")
    settings_path(file).write_text(settings_path(tmp_path / "other.faiss").read_text())
    with pytest.raises(DataError) as error:
        NeighbourIndex.load(file)
    assert "does not match idx.faiss.json (2000 rows 4 wide" in one_line(error)
    file.write_bytes(b"not an index")
    with pytest.raises(DataError) as error:
        NeighbourIndex.load(file)
    assert one_line(error).startswith(f"{file}: not a faiss index")
    file.unlink()
    with pytest.raises(DataError, match="idx.faiss: no such file"):
        NeighbourIndex.load(file)


def test_without_faiss_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss raises ImportError
    for attempt in (lambda: build_index(make()), lambda: NeighbourIndex.load(tmp_path / "x.faiss")):
        with pytest.raises(KgemError) as error:
            attempt()
        assert "pip install 'kgem[index]'" in one_line(error)


@pytest.fixture(scope="module")
def nations_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("index") / "run"
    assert main(["train", "--dataset", "nations", "--dim", "16", "--epochs", "1", "--batch-size", "128", "-q",
                 "--output", str(out)]) == 0
    return out / "model"


def test_cli_index_then_similar_with_it(nations_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    file = tmp_path / "nations.faiss"
    assert main(["index", str(nations_model), "-o", str(file), "--metric", "l2", "--recall-queries", "14",
                 "-k", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 14 and report["lists"] == report["probes"] == 1  # 14 rows train one cell
    assert report["recall@5"] == 1.0 and report["recall_queries"] == 14
    approximate, exact = tmp_path / "approximate.csv", tmp_path / "exact.csv"
    assert main(["similar", str(nations_model), "usa", "china", "-k", "4", "--index", str(file),
                 "--output", str(approximate)]) == 0
    assert main(["similar", str(nations_model), "usa", "china", "-k", "4", "--metric", "l2",
                 "--output", str(exact)]) == 0
    got, expected = pd.read_csv(approximate), pd.read_csv(exact)
    pd.testing.assert_frame_equal(got.drop(columns="similarity"), expected.drop(columns="similarity"))
    np.testing.assert_allclose(got["similarity"], expected["similarity"], atol=1e-4)
    predictor = kgem.load(nations_model, mmap=True)
    frame = predictor.similar(["usa"], k=4, index=NeighbourIndex.load(file))
    assert list(frame.columns) == ["query", "rank", "neighbour", "similarity"]
    assert frame["neighbour"].tolist() == expected["neighbour"].tolist()[:4]


def test_cli_index_errors_are_one_line(nations_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    file = tmp_path / "nations.faiss"
    assert main(["index", str(nations_model), "-o", str(file), "--metric", "dot", "--recall-queries", "0"]) == 0
    assert "recall" not in capsys.readouterr().out
    build_index(make(), lists=4).save(tmp_path / "other.faiss")
    for argv, message in [
        (["similar", str(nations_model), "usa", "--index", str(tmp_path / "none.faiss")], "none.faiss.json: no such"),
        (["similar", str(nations_model), "usa", "--index", str(file), "--metric", "cosine"],
         "nations.faiss: the index was built for metric dot, asked for cosine"),
        (["similar", str(nations_model), "usa", "--index", str(tmp_path / "other.faiss")],
         "other.faiss: the index was built for another model (2000 entities"),
        (["index", str(nations_model), "-o", str(tmp_path)], "is a folder"),
        (["index", str(nations_model), "-o", str(file), "--probes", "3"], "probes must be a whole number from 1"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (argv, err)
