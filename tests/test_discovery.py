"""Discovery (query_topn, discover_facts, find_clusters, find_duplicates) against the predict path, brute force over
every candidate of a tiny graph, and hand-counted graph statistics; and its CLI commands end to end."""

from __future__ import annotations

import itertools
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kgem.cli import main
from kgem.data import Dataset, KnownTriples, Vocabulary, load_dataset
from kgem.errors import ConfigError, DataError
from kgem.evaluation.calibrators import Platt
from kgem.inference import clusters, discover_facts, find_clusters, find_duplicates, generate_candidates, query_topn
from kgem.inference.discovery import STRATEGIES, entity_weights, known_index, neighbour_pairs
from kgem.models import Model, build_model
from kgem.saving import LoadedModel, load_model

TRAIN = [("e0", "r0", "e1"), ("e0", "r0", "e2"), ("e0", "r0", "e3"), ("e1", "r0", "e2"), ("e2", "r1", "e3"),
         ("e3", "r1", "e4"), ("e4", "r0", "e5"), ("e5", "r1", "e5"), ("e6", "r0", "e0"), ("e7", "r1", "e6")]
VALID, TEST = [("e1", "r0", "e3")], [("e2", "r0", "e4")]
COLUMNS = ["head", "relation", "tail"]
DS = Dataset.from_dfs(*(pd.DataFrame(rows, columns=COLUMNS) for rows in (TRAIN, VALID, TEST)))
E, R = DS.num_entities, DS.num_relations
KNOWN = set(TRAIN + VALID + TEST)
HEADS = {h for h, _, _ in TRAIN}  # every entity
TAILS = {t for _, _, t in TRAIN}  # all but e7


def make(name: str = "complex", inverse: bool = False) -> Model:
    torch.manual_seed(0)
    return build_model(name, E, R, 4, inverse=inverse)


def loaded(model: Model) -> LoadedModel:
    return LoadedModel(model, DS.entities, DS.relations, {}, {}, {})


def labels(hrt: torch.Tensor) -> list[tuple[str, str, str]]:
    ent, rel = DS.entities.labels, DS.relations.labels
    return [(ent[h], rel[r], ent[t]) for h, r, t in hrt.tolist()]


def brute_rank(model: Model, h: int, r: int, t: int, side: str) -> float:
    """Filtered realistic rank of ``(h, r, t)`` among every entity on one side, from the model's scores."""
    ent = DS.entities.labels
    rel = DS.relations.labels[r]
    with torch.no_grad():
        scores = (model.score_t(torch.tensor([h]), torch.tensor([r]))[0] if side == "tail"
                  else model.score_h(torch.tensor([r]), torch.tensor([t]))[0]).tolist()
    true = scores[t] if side == "tail" else scores[h]
    rivals = [scores[e] for e in range(E) if e != (t if side == "tail" else h)
              and ((ent[h], rel, ent[e]) if side == "tail" else (ent[e], rel, ent[t])) not in KNOWN]
    return 1 + sum(s > true for s in rivals) + sum(s == true for s in rivals) / 2


# query_topn: the predict path


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("remove_known", [False, True])
def test_query_topn_is_the_predict_path(inverse: bool, remove_known: bool) -> None:
    model = loaded(make(inverse=inverse))
    with_known = model.with_known(DS)
    cases = [(dict(head="e0", relation="r0"), with_known.predict_tails([("e0", "r0")], k=4, remove_known=remove_known),
              "tail"),
             (dict(relation="r0", tail="e3"), with_known.predict_heads([("r0", "e3")], k=4, remove_known=remove_known),
              "head"),
             (dict(head="e0", tail="e3"), with_known.predict_relations([("e0", "e3")], k=4,
                                                                        remove_known=remove_known), "relation")]
    for given, want, side in cases:
        got = query_topn(model, **given, n=4, remove_known=remove_known, dataset=DS)
        assert list(got.columns) == ["head", "relation", "tail", "score", "rank", "known"]
        assert got[side].tolist() == want[side].tolist()
        assert got["score"].tolist() == want["score"].tolist()
        assert got["rank"].tolist() == list(range(1, len(want) + 1))
        assert got["known"].tolist() == want["known"].tolist()
        for slot, label in given.items():
            assert (got[slot] == label).all()
        assert not (remove_known and got["known"].any())
        # the model's own known facts serve when no dataset is given
        assert query_topn(with_known, **given, n=4, remove_known=remove_known).equals(got)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("remove_known", [False, True])
def test_query_topn_among_candidates_is_the_predict_path_cut_to_them(inverse: bool, remove_known: bool) -> None:
    model = loaded(make(inverse=inverse)).with_known(DS)
    allowed = ["e5", "e1", "e3", "e6", "e2", "e1"]
    tails = model.predict_tails([("e0", "r0")], k=E, remove_known=remove_known)
    heads = model.predict_heads([("r0", "e3")], k=E, remove_known=remove_known)
    for given, side, full in [(dict(head="e0", relation="r0"), "tail", tails),
                              (dict(relation="r0", tail="e3"), "head", heads)]:
        want = full[full[side].isin(allowed)].head(3)
        got = query_topn(model, **given, n=3, entities=allowed, remove_known=remove_known)
        assert got[side].tolist() == want[side].tolist()
        assert np.allclose(got["score"], want["score"], atol=1e-6)
        assert got["known"].tolist() == want["known"].tolist()
        assert got["rank"].tolist() == list(range(1, len(want) + 1))
    full = model.predict_relations([("e0", "e3")], k=R)
    got = query_topn(model, head="e0", tail="e3", n=1, relations=["r1"])
    assert got["relation"].tolist() == ["r1"]
    assert got["score"].tolist() == full.loc[full["relation"] == "r1", "score"].tolist()


def test_query_topn_and_discover_facts_give_calibrated_probabilities() -> None:
    platt = Platt(2.0, -0.5)
    model = replace(loaded(make()), calibrator=platt)
    for frame in (query_topn(model, head="e0", relation="r0", n=3),
                  discover_facts(model, DS, strategy="exhaustive", relations="r0", max_candidates=100, top_n=8)):
        assert len(frame) and np.allclose(frame["probability"], platt.probabilities(frame["score"].to_numpy()))


@pytest.mark.parametrize(("given", "message"), [
    (dict(head="e0"), "exactly one open slot"),
    (dict(head="e0", relation="r0", tail="e1"), "exactly one open slot"),
    (dict(head="e9", relation="r0"), "unknown entity 'e9'"),
    (dict(head="e0", relation="r0", entities=["e1", "x"]), "unknown entity 'x'"),
    (dict(head="e0", tail="e1", entities=["e1"]), "restrict it with relations"),
    (dict(head="e0", relation="r0", relations=["r1"]), "restrict it with entities"),
    (dict(head="e0", relation="r0", remove_known=True), "remove_known needs the known facts"),
    (dict(head="e0", relation="r0", n=0), "at least 1"),
])
def test_query_topn_bad_input(given: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        query_topn(loaded(make()), **given)


# candidates


def ids(model_labels: list[tuple[str, str, str]]) -> torch.Tensor:
    return torch.tensor([[int(DS.entities.ids([h])[0]), int(DS.relations.ids([r])[0]), int(DS.entities.ids([t])[0])]
                         for h, r, t in model_labels])


GRAPH = ids(TRAIN)
INDEX = KnownTriples(ids(sorted(KNOWN)), E, R)


def unknown_pairs(r: str) -> set[tuple[str, str, str]]:
    return {(h, r, t) for h in HEADS for t in TAILS if h != t and (h, r, t) not in KNOWN}


def test_exhaustive_enumerates_exactly_the_unknown_pairs() -> None:
    for r in ("r0", "r1"):
        expected = unknown_pairs(r)
        got = labels(generate_candidates(GRAPH, INDEX, [int(DS.relations.ids([r])[0])], strategy="exhaustive",
                                         num_entities=E, max_candidates=len(expected)))
        assert len(got) == len(set(got)) and set(got) == expected
        assert got == sorted(got)  # by head, then tail id


def test_exhaustive_refuses_more_pairs_than_max_candidates() -> None:
    count = len(unknown_pairs("r1"))
    with pytest.raises(DataError, match=f"relation 'r1' has {count} unknown .* max_candidates={count - 1}"):
        discover_facts(loaded(make()), DS, strategy="exhaustive", relations="r1", max_candidates=count - 1)
    with pytest.raises(DataError, match=f"relation 1 has {count} unknown"):
        generate_candidates(GRAPH, INDEX, [1], strategy="exhaustive", num_entities=E, max_candidates=count - 1)


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != "exhaustive"])
def test_sampled_candidates_are_distinct_unknown_and_seeded(strategy: str) -> None:
    draw = dict(strategy=strategy, num_entities=E, max_candidates=15)
    hrt = generate_candidates(GRAPH, INDEX, [0, 1], **draw, seed=3)
    got = labels(hrt)
    head_weights, tail_weights = entity_weights(strategy, GRAPH, E)
    assert len(got) == len(set(got)) and not set(got) & KNOWN
    assert all(h != t for h, _, t in got)
    assert all(head_weights[h] > 0 and tail_weights[t] > 0 for h, _, t in hrt.tolist())
    assert {h for h, _, _ in got} <= HEADS and {t for _, _, t in got} <= TAILS
    assert torch.equal(generate_candidates(GRAPH, INDEX, [0, 1], **draw, seed=3), hrt)
    assert torch.equal(generate_candidates(GRAPH, INDEX, [1], **draw, seed=3), hrt[hrt[:, 1] == 1])
    assert not torch.equal(generate_candidates(GRAPH, INDEX, [0, 1], **draw, seed=4), hrt)


def test_entity_weights_are_frequency_degree_and_clustering() -> None:
    ent = list(DS.entities.labels)
    as_head = [sum(h == e for h, _, _ in TRAIN) for e in ent]
    as_tail = [sum(t == e for _, _, t in TRAIN) for e in ent]
    heads, tails = entity_weights("entity_frequency", GRAPH, E)
    assert heads.tolist() == as_head and tails.tolist() == as_tail
    neighbours = {e: {t if h == e else h for h, _, t in TRAIN if e in (h, t) and h != t} for e in ent}
    heads, tails = entity_weights("graph_degree", GRAPH, E)
    assert heads.tolist() == [len(neighbours[e]) for e in ent]
    assert tails.tolist() == [len(neighbours[e]) * (e in TAILS) for e in ent]
    coefficient = []
    for e in ent:
        pairs = list(itertools.combinations(sorted(neighbours[e]), 2))
        coefficient.append(sum(b in neighbours[a] for a, b in pairs) / len(pairs) if pairs else 0.0)
    heads, tails = entity_weights("cluster_coefficient", GRAPH, E)
    assert np.allclose(heads, coefficient) and np.allclose(tails, [c * (e in TAILS) for c, e in zip(coefficient, ent)])
    assert sum(coefficient) > 0 and min(coefficient) == 0  # both kinds present: a real check


def test_clustering_coefficients_of_a_random_graph_equal_counting_triangles() -> None:
    rng = np.random.default_rng(0)
    num = 60
    ends = rng.integers(num, size=(2, 400))
    graph = torch.from_numpy(np.stack([ends[0], np.zeros(400, int), ends[1]], 1))
    u, v = neighbour_pairs(graph, num)
    adjacency = np.zeros((num, num), dtype=bool)
    adjacency[u, v] = True
    degree = adjacency.sum(1)
    closed = np.diag(np.linalg.matrix_power(adjacency.astype(np.int64), 3))  # 2 x triangles through each node
    expected = np.divide(closed, degree * (degree - 1.0), out=np.zeros(num), where=degree > 1)
    weights, _ = entity_weights("cluster_coefficient", graph, num)
    heads = np.bincount(graph[:, 0].numpy(), minlength=num) > 0
    assert np.allclose(weights, expected * heads) and expected.max() > 0


def test_entity_frequency_draws_heads_in_proportion_to_their_frequency() -> None:
    """200 entities in 5 classes of head frequency 1, 4, 7, 10, 13: the share of drawn heads of each class is its
    share of the head frequency (uniform draws give 0.2 each)."""
    num = 200
    rng = np.random.default_rng(1)
    count = 1 + 3 * (np.arange(num) % 5)
    heads = np.repeat(np.arange(num), count)
    graph = torch.from_numpy(np.stack([heads, np.zeros(len(heads), int), rng.integers(num, size=len(heads))], 1))
    known = KnownTriples(graph, num, 2)
    expected = count.reshape(-1, 5).sum(0) / count.sum()
    for strategy, share in (("entity_frequency", expected), ("random_uniform", np.full(5, 0.2))):
        hrt = generate_candidates(graph, known, [1], strategy=strategy, num_entities=num, max_candidates=2000, seed=0)
        assert len(hrt) == 2000
        drawn = np.bincount(hrt[:, 0].numpy() % 5, minlength=5) / len(hrt)
        assert np.abs(drawn - share).max() < 0.03, (strategy, drawn, share)


# discover_facts


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("sides", ["both", "tail", "head"])
def test_discover_facts_ranks_equal_brute_force(inverse: bool, sides: str) -> None:
    model = make("complex", inverse)
    every = discover_facts(loaded(model), DS, strategy="exhaustive", max_candidates=100, top_n=E, sides=sides)
    ent, rel = DS.entities, DS.relations
    expected = {}
    for h, r, t in {(h, r, t) for h in HEADS for r in ("r0", "r1") for t in TAILS if h != t} - KNOWN:
        hrt = (int(ent.ids([h])[0]), int(rel.ids([r])[0]), int(ent.ids([t])[0]))
        ranks = [brute_rank(model, *hrt, side) for side in (("head", "tail") if sides == "both" else (sides,))]
        expected[(h, r, t)] = float(np.mean(ranks))
    assert every.attrs["candidates"] == len(expected)
    got = {tuple(row[:3]): row[4] for row in every.itertuples(index=False)}
    assert got == {key: rank for key, rank in expected.items() if rank <= E}
    kept = discover_facts(loaded(model), DS, strategy="exhaustive", max_candidates=100, top_n=3, sides=sides)
    assert set(zip(kept["head"], kept["relation"], kept["tail"])) == {k for k, v in expected.items() if v <= 3}
    order = list(zip(kept["rank"], -kept["score"]))
    assert order == sorted(order)
    scores = model.score_hrt(ids(list(zip(kept["head"], kept["relation"], kept["tail"])))).detach().numpy()
    assert np.allclose(kept["score"], scores, atol=1e-6)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_discover_facts_never_returns_a_known_fact_and_is_seeded(strategy: str) -> None:
    model = loaded(make())
    found = discover_facts(model, DS, strategy=strategy, max_candidates=60, top_n=E, seed=5)
    assert len(found) and not set(zip(found["head"], found["relation"], found["tail"])) & KNOWN
    assert found.equals(discover_facts(model, DS, strategy=strategy, max_candidates=60, top_n=E, seed=5))
    only = discover_facts(model, DS, strategy=strategy, relations=["r1"], max_candidates=60, top_n=E, seed=5)
    same = found[found["relation"] == "r1"].reset_index(drop=True)  # scores: up to the rounding of other batches
    assert only[["head", "relation", "tail", "rank"]].equals(same[["head", "relation", "tail", "rank"]])
    assert np.allclose(only["score"], same["score"], atol=1e-6)


@pytest.mark.parametrize(("options", "message"), [
    (dict(strategy="nope"), "unknown strategy 'nope'"),
    (dict(relations="r9"), "unknown relation 'r9'"),
    (dict(top_n=0), "at least 1"),
    (dict(max_candidates=0), "at least 1"),
    (dict(sides="left"), "sides must be"),
])
def test_discover_facts_bad_input(options: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        discover_facts(loaded(make()), DS, **options)


def test_known_index_matches_the_model_by_label() -> None:
    """A dataset whose vocabularies differ from the model's: its facts are found by label."""
    other = Dataset.from_dfs(pd.DataFrame([("e7", "r1", "e6"), ("zz", "r0", "e0")], columns=COLUMNS))
    index = known_index(loaded(make()), other)
    assert len(index) == 1 and index.contains(ids([("e7", "r1", "e6")])).all()


# clusters and duplicates


def planted(name: str = "distmult") -> tuple[LoadedModel, list[set[str]]]:
    """30 entities around 3 far-apart centres (10 each, spread 0.05)."""
    torch.manual_seed(1)
    model = build_model(name, 30, 1, 4)
    width = model.entity.weight.shape[1]
    centres = torch.eye(width)[:3] * 10
    with torch.no_grad():
        model.entity.weight.copy_(centres.repeat_interleave(10, 0) + 0.05 * torch.randn(30, width))
    names = [f"n{i:02d}" for i in range(30)]
    vocab = Vocabulary(names, kind="entity")
    return (LoadedModel(model, vocab, Vocabulary(["r"], kind="relation"), {}, {}, {}),
            [set(names[i : i + 10]) for i in range(0, 30, 10)])


def partition(frame: pd.DataFrame) -> set[frozenset[str]]:
    return {frozenset(group) for _, group in frame.groupby("cluster")["label"]}


@pytest.mark.parametrize("name", ["distmult", "complex"])
def test_find_clusters_recovers_planted_clusters(name: str) -> None:
    model, truth = planted(name)
    found = find_clusters(model, n_clusters=3)
    assert list(found.columns) == ["label", "cluster"] and found["label"].tolist() == list(model.entities.labels)
    assert partition(found) == {frozenset(s) for s in truth}
    dbscan = find_clusters(model, algorithm="dbscan", eps=1.0, min_samples=3, memory_budget_bytes=64)
    assert partition(dbscan) == {frozenset(s) for s in truth}
    some = ["n25", "n03", "n04", "n22", "n03"]
    subset = find_clusters(model, some, n_clusters=2)
    assert subset["label"].tolist() == ["n25", "n03", "n04", "n22"]
    assert partition(subset) == {frozenset({"n25", "n22"}), frozenset({"n03", "n04"})}


def test_dbscan_marks_an_outlier_as_noise() -> None:
    model, _ = planted()
    with torch.no_grad():
        model.model.entity.weight[7] = 100.0
    found = find_clusters(model, algorithm="dbscan", eps=1.0, min_samples=3)
    assert found.loc[found["cluster"] == -1, "label"].tolist() == ["n07"]


def test_find_clusters_without_scikit_learn_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.cluster", None)
    with pytest.raises(ConfigError, match=r"pip install 'kgem\[cluster\]'"):
        find_clusters(planted()[0])


@pytest.mark.parametrize(("options", "message"), [
    (dict(n_clusters=31), r"n_clusters must lie in \[1, 30\]"),
    (dict(algorithm="spectral"), "unknown algorithm"),
    (dict(algorithm="dbscan", eps=0), "eps > 0"),
    (dict(kind="triple"), "kind must be"),
])
def test_find_clusters_bad_input(options: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        find_clusters(planted()[0], **options)


def near_duplicates(name: str) -> LoadedModel:
    """40 random rows, 8 of them copied (some twice, some copies of copies) with small noise."""
    torch.manual_seed(2)
    model = build_model(name, 40, 1, 3)
    with torch.no_grad():
        table = model.entity.weight
        for copy, source in [(10, 3), (11, 3), (12, 11), (20, 5), (21, 20), (30, 7), (31, 8), (39, 0)]:
            table[copy] = table[source] + 0.01 * torch.randn(table.shape[1])
    return LoadedModel(model, Vocabulary([f"n{i:02d}" for i in range(40)], kind="entity"),
                       Vocabulary(["r"], kind="relation"), {}, {}, {})


def brute_groups(table: np.ndarray, metric: str, tolerance: float) -> list[list[int]]:
    """Connected components of two or more of the within-tolerance graph, from every pairwise distance."""
    if metric == "l2":
        distance = np.linalg.norm(table[:, None] - table[None], axis=-1)
    else:
        unit = table / np.linalg.norm(table, axis=1, keepdims=True)
        distance = 1 - unit @ unit.T
    linked = distance <= tolerance
    seen, groups = set(), []
    for start in range(len(table)):
        if start in seen:
            continue
        component, todo = {start}, [start]
        while todo:
            for other in np.flatnonzero(linked[todo.pop()]).tolist():
                if other not in component:
                    component.add(other)
                    todo.append(other)
        seen |= component
        if len(component) > 1:
            groups.append(sorted(component))
    return groups


def as_groups(frame: pd.DataFrame, names: list[str]) -> list[list[int]]:
    return [[names.index(label) for label in group] for _, group in frame.groupby("group", sort=True)["label"]]


@pytest.mark.parametrize("name", ["distmult", "complex"])
@pytest.mark.parametrize(("metric", "tolerance"), [("l2", 0.05), ("l2", 0.2), ("cosine", 0.002), ("cosine", 0.05)])
def test_find_duplicates_equals_brute_force(name: str, metric: str, tolerance: float,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    model = near_duplicates(name)
    table = model.model.entity.weight.detach().double().numpy()
    names = list(model.entities.labels)
    budget = 36 * 4  # blocks of 6 x 6 distances (rows of 3 or 6): many blocks, checked below
    blocks: list[tuple[int, int]] = []
    products = clusters._products
    monkeypatch.setattr(clusters, "_products", lambda x, y: blocks.append((len(x), len(y))) or products(x, y))
    found = find_duplicates(model, metric=metric, tolerance=tolerance, memory_budget_bytes=budget)
    assert list(found.columns) == ["group", "label"] and found.attrs["tolerance"] == tolerance
    expected = brute_groups(table, metric, tolerance)
    assert as_groups(found, names) == expected and len(expected) >= 2
    assert found["group"].tolist() == sorted(found["group"]) and len(blocks) > 20
    assert max(rows * cols for rows, cols in blocks) <= 36
    some = names[::-1][:25]  # a subset, in another order: positions in it number the items
    found = find_duplicates(model, some, metric=metric, tolerance=tolerance, memory_budget_bytes=budget)
    subset = [names.index(label) for label in some]
    assert as_groups(found, some) == brute_groups(table[subset], metric, tolerance)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_auto_tolerance_is_the_quantile_of_nearest_neighbour_distances(metric: str) -> None:
    model = near_duplicates("distmult")
    table = model.model.entity.weight.detach().double().numpy()
    found = find_duplicates(model, metric=metric, expected_fraction=0.25, memory_budget_bytes=36 * 4)
    if metric == "l2":
        distance = np.linalg.norm(table[:, None] - table[None], axis=-1)
    else:
        unit = table / np.linalg.norm(table, axis=1, keepdims=True)
        distance = 1 - unit @ unit.T
    np.fill_diagonal(distance, np.inf)
    nearest = np.sort(distance.min(1))
    assert found.attrs["tolerance"] == pytest.approx(nearest[9], rel=1e-4, abs=1e-6)  # the 10th of 40: a quarter
    assert len(found) >= 10
    assert as_groups(found, list(model.entities.labels)) == brute_groups(table, metric, found.attrs["tolerance"] + 1e-6)


@pytest.mark.parametrize(("options", "message"), [
    (dict(tolerance=-1.0), "tolerance must be"),
    (dict(tolerance="big"), "tolerance must be"),
    (dict(metric="dot"), "unknown metric"),
    (dict(expected_fraction=0.0), "expected_fraction"),
    (dict(items=["n01"]), "there are 1"),
])
def test_find_duplicates_bad_input(options: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        find_duplicates(near_duplicates("distmult"), **options)


# CLI


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("discovery") / "run"
    assert main(["train", "--dataset", "nations", "--dim", "8", "--epochs", "2", "--batch-size", "256", "-q",
                 "--output", str(out)]) == 0
    return str(out / "model")


def test_cli_query_is_query_topn(saved: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loaded_model = load_model(saved)
    assert main(["query", saved, "--head", "usa", "--relation", "intergovorgs", "-n", "4", "--remove-known",
                 "-o", str(tmp_path / "q.csv")]) == 0
    got = pd.read_csv(tmp_path / "q.csv")
    want = query_topn(loaded_model, head="usa", relation="intergovorgs", n=4, remove_known=True,
                      dataset=load_dataset("nations"))
    assert got["tail"].tolist() == want["tail"].tolist() and np.allclose(got["score"], want["score"])
    assert main(["query", saved, "--relation", "intergovorgs", "--tail", "uk", "-n", "2", "--candidates", "usa",
                 "china", "burma", "--mark-known"]) == 0
    out = capsys.readouterr().out
    assert "known" in out and sum(c in out for c in ("usa", "china", "burma")) == 2
    assert main(["query", saved, "--head", "usa", "--tail", "uk", "-n", "2", "--candidates", "embassy", "ngo"]) == 0
    assert {"embassy", "ngo"} <= set(capsys.readouterr().out.split())


def test_cli_discover_clusters_duplicates(saved: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["discover", saved, "--relation", "intergovorgs", "--strategy", "entity_frequency",
                 "--max-candidates", "30", "--top-n", "3", "-o", str(tmp_path / "d.csv")]) == 0
    found = pd.read_csv(tmp_path / "d.csv")
    assert list(found.columns) == ["head", "relation", "tail", "score", "rank"] and (found["rank"] <= 3).all()
    assert "candidates rank within the top 3" in capsys.readouterr().out
    assert main(["discover", saved, "--relation", "intergovorgs", "--relation", "ngo", "--strategy", "exhaustive",
                 "--max-candidates", "200", "--top-n", "2"]) == 0
    assert main(["clusters", saved, "--n-clusters", "3", "-o", str(tmp_path / "c.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "c.csv")) == 14
    assert main(["clusters", saved, "--relations", "--algorithm", "dbscan", "--eps", "2", "--min-samples", "2"]) == 0
    assert main(["duplicates", saved, "--expected-fraction", "0.3", "-o", str(tmp_path / "u.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "u.csv")) >= 5
    assert main(["duplicates", saved, "usa", "uk", "china", "--tolerance", "10", "--metric", "cosine"]) == 0
    assert "1 group of duplicates (3 items) within cosine distance 10" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["query", "{model}", "--head", "usaa", "--relation", "intergovorgs"], "unknown entity 'usaa'"),
    (["query", "{model}", "--head", "usa"], "exactly one open slot"),
    (["query", "{model}", "--head", "usa", "--relation", "intergovorgs", "--candidates", "mars"],
     "unknown entity 'mars'"),
    (["discover", "{model}", "--relation", "nope"], "unknown relation 'nope'"),
    (["discover", "{model}", "--relation", "ngo", "--strategy", "exhaustive", "--max-candidates", "5"],
     "max_candidates=5"),
    (["clusters", "{model}", "--n-clusters", "0"], "n_clusters must lie in"),
    (["clusters", "{model}", "atlantis"], "unknown entity 'atlantis'"),
    (["duplicates", "{model}", "--tolerance", "x"], "--tolerance takes a number or 'auto'"),
])
def test_cli_bad_input_is_one_line_exit_2(saved: str, capsys: pytest.CaptureFixture[str], argv: list[str],
                                          message: str) -> None:
    assert main([saved if a == "{model}" else a for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("kgem: error: ") and message in err
