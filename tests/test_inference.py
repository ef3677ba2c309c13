"""Inference helpers against brute force over every candidate of a tiny graph."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kgem.data import KnownTriples, Vocabulary
from kgem.errors import DataError
from kgem.inference import (
    export_embeddings,
    predict_heads,
    predict_relations,
    predict_tails,
    score_triples,
    similar,
    top_triples,
)
from kgem.models import Model, build_model, scan

ENTITIES = Vocabulary.from_labels(["alice", "bob", "carol", "dave", "eve", "frank", "grace"], kind="entity")
RELATIONS = Vocabulary.from_labels(["knows", "likes", "works_with"], kind="relation")
E, R = len(ENTITIES), len(RELATIONS)
KNOWN_LABELS = [("alice", "likes", "bob"), ("alice", "likes", "carol"), ("bob", "knows", "alice"),
                ("eve", "works_with", "dave"), ("grace", "likes", "carol"), ("alice", "knows", "alice")]
KNOWN_IDS = torch.tensor([[int(ENTITIES.ids([h])[0]), int(RELATIONS.ids([r])[0]), int(ENTITIES.ids([t])[0])]
                          for h, r, t in KNOWN_LABELS])
KNOWN = KnownTriples(KNOWN_IDS, E, R)
KNOWN_SET = set(KNOWN_LABELS)


def make(name: str, inverse: bool = False) -> Model:
    torch.manual_seed(0)
    return build_model(name, E, R, 4, inverse=inverse)


def all_scores(model: Model) -> torch.Tensor:
    """``(E, R, E)``: score_hrt of every triple."""
    grid = torch.cartesian_prod(torch.arange(E), torch.arange(R), torch.arange(E))
    with torch.no_grad():
        return model.score_hrt(grid).view(E, R, E)


def assert_top(got_ids: list, got_scores: np.ndarray, candidates: list, scores: torch.Tensor, k: int) -> None:
    """``got`` is a top-k of ``candidates`` by ``scores``, up to the order of tied scores: distinct candidates whose
    true scores are the reported ones, and whose score sequence is the brute-force sorted one."""
    truth = dict(zip(candidates, scores.tolist()))
    expected = sorted(truth.values(), reverse=True)[:k]
    assert len(got_ids) == len(set(got_ids)) == len(expected)
    assert np.allclose([truth[c] for c in got_ids], got_scores, atol=1e-5)
    assert np.allclose(got_scores, expected, atol=1e-5)


def eid(label: str) -> int:
    return int(ENTITIES.ids([label])[0])


def rid(label: str) -> int:
    return int(RELATIONS.ids([label])[0])


QUERIES = [("alice", "likes"), ("bob", "knows"), ("alice", "likes"), ("grace", "works_with")]


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny score blocks (a default budget of 3 scores), so every helper merges many query batches (of 3) and
    candidate chunks (of 1)."""
    monkeypatch.setattr(scan, "DEFAULT_MEMORY_BUDGET", 3 * scan.SCORE_BYTES)


@pytest.mark.parametrize("name", ["distmult", "complex"])
@pytest.mark.parametrize("k", [1, 3, 20])
def test_predict_tails_equals_brute_force(name: str, k: int) -> None:
    model = make(name)
    model.train()
    scores = all_scores(model)
    frame = predict_tails(model, ENTITIES, RELATIONS, QUERIES, k=k, known=KNOWN)
    assert model.training  # mode restored
    assert list(frame.columns) == ["query_head", "query_relation", "rank", "tail", "score", "known"]
    assert len(frame) == len(QUERIES) * min(k, E)
    for i, (h, r) in enumerate(QUERIES):
        rows = frame.iloc[i * min(k, E) : (i + 1) * min(k, E)]
        assert (rows.query_head == h).all() and (rows.query_relation == r).all()
        assert rows["rank"].tolist() == list(range(1, len(rows) + 1))
        assert_top(rows["tail"].tolist(), rows.score.to_numpy(), list(ENTITIES.labels), scores[eid(h), rid(r)], k)
        assert rows.known.tolist() == [(h, r, t) in KNOWN_SET for t in rows["tail"]]


@pytest.mark.parametrize("name", ["distmult", "complex"])
def test_predict_tails_remove_known_drops_exactly_the_known(name: str) -> None:
    model = make(name)
    scores = all_scores(model)
    frame = predict_tails(model, ENTITIES, RELATIONS, pd.DataFrame(QUERIES, columns=["head", "relation"]), k=E,
                          known=KNOWN, remove_known=True)
    for h, r in set(QUERIES):
        rows = frame[(frame.query_head == h) & (frame.query_relation == r)]
        unknown = [t for t in ENTITIES.labels if (h, r, t) not in KNOWN_SET]
        # duplicate queries each get their own ranking
        per_query = len(rows) // QUERIES.count((h, r))
        assert per_query == len(unknown) and not rows.known.any()
        first = rows.iloc[:per_query]
        assert first["rank"].tolist() == list(range(1, per_query + 1))
        assert_top(first["tail"].tolist(), first.score.to_numpy(), unknown,
                   scores[eid(h), rid(r)][[eid(t) for t in unknown]], E)
    # with a small k the known tails are skipped, not just cut off
    top1 = predict_tails(model, ENTITIES, RELATIONS, [("alice", "likes")], k=1, known=KNOWN, remove_known=True)
    assert len(top1) == 1 and top1["tail"][0] not in {"bob", "carol"}


@pytest.mark.parametrize("name", ["distmult", "complex"])
def test_predict_heads_equals_brute_force(name: str) -> None:
    model = make(name)
    scores = all_scores(model)
    queries = [("likes", "carol"), ("knows", "alice")]
    frame = predict_heads(model, ENTITIES, RELATIONS, queries, k=4, known=KNOWN)
    assert list(frame.columns) == ["query_relation", "query_tail", "rank", "head", "score", "known"]
    for i, (r, t) in enumerate(queries):
        rows = frame.iloc[i * 4 : (i + 1) * 4]
        assert_top(rows["head"].tolist(), rows.score.to_numpy(), list(ENTITIES.labels), scores[:, rid(r), eid(t)], 4)
        assert rows.known.tolist() == [(h, r, t) in KNOWN_SET for h in rows["head"]]
    kept = predict_heads(model, ENTITIES, RELATIONS, queries, k=E, known=KNOWN, remove_known=True)
    assert set(kept[kept.query_tail == "carol"]["head"]) == set(ENTITIES.labels) - {"alice", "grace"}


def test_predict_heads_of_a_reciprocal_model_uses_the_inverse_relation() -> None:
    model = make("complex", inverse=True)
    frame = predict_heads(model, ENTITIES, RELATIONS, [("likes", "carol")], k=E)
    grid = torch.stack([torch.full((E,), eid("carol")), torch.full((E,), rid("likes") + R), torch.arange(E)], 1)
    with torch.no_grad():
        expected = model.score_hrt(grid)
    assert_top(frame["head"].tolist(), frame.score.to_numpy(), list(ENTITIES.labels), expected, E)


@pytest.mark.parametrize("name", ["distmult", "complex"])
def test_predict_relations_equals_brute_force(name: str) -> None:
    model = make(name)
    scores = all_scores(model)
    pairs = [("alice", "carol"), ("eve", "dave"), ("alice", "alice")]
    frame = predict_relations(model, ENTITIES, RELATIONS, pairs, k=2, known=KNOWN)
    assert list(frame.columns) == ["query_head", "query_tail", "rank", "relation", "score", "known"]
    for i, (h, t) in enumerate(pairs):
        rows = frame.iloc[i * 2 : (i + 1) * 2]
        assert_top(rows.relation.tolist(), rows.score.to_numpy(), list(RELATIONS.labels), scores[eid(h), :, eid(t)], 2)
        assert rows.known.tolist() == [(h, r, t) in KNOWN_SET for r in rows.relation]
    kept = predict_relations(model, ENTITIES, RELATIONS, pairs, k=R, known=KNOWN, remove_known=True)
    assert len(kept) == 3 * R - 3 and not kept.known.any()


def test_score_triples_equals_score_hrt() -> None:
    model = make("complex")
    scores = all_scores(model)
    triples = [("alice", "likes", "bob"), ("dave", "knows", "grace"), ("alice", "likes", "bob")]
    for given in (triples, pd.DataFrame(triples, columns=["head", "relation", "tail"])):
        frame = score_triples(model, ENTITIES, RELATIONS, given, known=KNOWN)
        assert list(frame.columns) == ["head", "relation", "tail", "score", "known"]
        expected = [float(scores[eid(h), rid(r), eid(t)]) for h, r, t in triples]
        assert np.allclose(frame.score, expected, atol=1e-6)
        assert frame.known.tolist() == [True, False, True]
    assert len(score_triples(model, ENTITIES, RELATIONS, [])) == 0


def brute_top(scores: torch.Tensor, relations: list[int], exclude: set) -> tuple[list, torch.Tensor]:
    triples = [(h, r, t) for h in range(E) for r in relations for t in range(E) if (h, r, t) not in exclude]
    return triples, torch.stack([scores[h, r, t] for h, r, t in triples])


@pytest.mark.parametrize("name", ["distmult", "complex"])
@pytest.mark.parametrize("batch_size", [1, 2, 5, 7, 1000, None])
@pytest.mark.parametrize("relation", [None, "likes"])
@pytest.mark.parametrize("remove_known", [False, True])
def test_top_triples_equals_brute_force(name: str, batch_size: int | None, relation: str | None,
                                        remove_known: bool) -> None:
    model = make(name)
    k = 12
    frame = top_triples(model, ENTITIES, RELATIONS, k=k, relation=relation, known=KNOWN, remove_known=remove_known,
                        batch_size=batch_size)
    assert list(frame.columns) == ["head", "relation", "tail", "score", "known"]
    exclude = {tuple(x) for x in KNOWN_IDS.tolist()} if remove_known else set()
    candidates, scores = brute_top(all_scores(model), [rid(relation)] if relation else list(range(R)), exclude)
    got = [(eid(h), rid(r), eid(t)) for h, r, t in zip(frame["head"], frame.relation, frame["tail"])]
    assert_top(got, frame.score.to_numpy(), candidates, scores, k)
    assert frame.known.tolist() == [(h, r, t) in KNOWN_SET for h, r, t in zip(frame["head"], frame.relation,
                                                                               frame["tail"])]
    assert (np.diff(frame.score.to_numpy()) <= 0).all()


def test_top_triples_k_larger_than_the_graph_returns_every_triple() -> None:
    model = make("complex")
    frame = top_triples(model, ENTITIES, RELATIONS, k=10_000, relation="knows", batch_size=3)
    assert len(frame) == E * E and "known" not in frame.columns
    assert len(frame.drop_duplicates()) == E * E


def brute_similarity(table: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "cosine":
        return torch.nn.functional.cosine_similarity(table[:, None], table[None, :], dim=-1)
    if metric == "dot":
        return table @ table.T
    return -(table[:, None] - table[None, :]).norm(dim=-1)


@pytest.mark.parametrize("name", ["distmult", "complex"])
@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
@pytest.mark.parametrize("kind", ["entity", "relation"])
def test_similar_equals_brute_force(name: str, metric: str, kind: str) -> None:
    model = make(name, inverse=True)
    vocab = ENTITIES if kind == "entity" else RELATIONS
    # complex rows are stored as interleaved (re, im): the raw table is the real view
    table = (model.entity.weight if kind == "entity" else model.relation.weight[:R]).detach()
    sims = brute_similarity(table, metric)
    queries = [*vocab.labels[::-1], vocab.labels[0]]
    k = 3
    frame = similar(model, vocab, queries, k=k, metric=metric, kind=kind)
    assert list(frame.columns) == ["query", "rank", "neighbour", "similarity"]
    width = min(k, len(vocab) - 1)
    assert len(frame) == len(queries) * width
    for i, query in enumerate(queries):
        rows = frame.iloc[i * width : (i + 1) * width]
        assert (rows["query"] == query).all() and query not in set(rows.neighbour)
        assert rows["rank"].tolist() == list(range(1, width + 1))
        others = [x for x in vocab.labels if x != query]
        row = sims[int(vocab.ids([query])[0])]
        assert_top(rows.neighbour.tolist(), rows.similarity.to_numpy(), others,
                   row[torch.as_tensor(vocab.ids(others))], width)


def test_similar_rejects_bad_arguments() -> None:
    model = make("distmult")
    with pytest.raises(DataError, match="metric"):
        similar(model, ENTITIES, ["alice"], metric="manhattan")
    with pytest.raises(DataError, match="relation vocabulary has 7"):
        similar(model, ENTITIES, ["alice"], kind="relation")


@pytest.mark.parametrize(("name", "inverse"), [("distmult", False), ("complex", False), ("complex", True)])
def test_export_embeddings_load_back(tmp_path, name: str, inverse: bool) -> None:
    model = make(name, inverse=inverse)
    written = export_embeddings(model, ENTITIES, RELATIONS, tmp_path / "out")
    out = tmp_path / "out"
    assert all(path.exists() for path in written.values())
    relation_labels = list(RELATIONS.labels) + ([f"{x}__inverse" for x in RELATIONS.labels] if inverse else [])
    for stem, singular, weight, labels in (("entities", "entity", model.entity.weight, list(ENTITIES.labels)),
                                           ("relations", "relation", model.relation.weight, relation_labels)):
        array = np.load(out / f"{singular}_embeddings.npy")
        assert array.dtype == np.float32
        assert np.array_equal(array, weight.detach().numpy())
        assert (out / f"{stem}.tsv").read_text().splitlines() == labels
        assert (out / "projector" / f"{stem}_meta.tsv").read_text().splitlines() == labels
        vectors = np.loadtxt(out / "projector" / f"{stem}.tsv", delimiter="\t", dtype=np.float32)
        assert np.array_equal(vectors, array)
    config = (out / "projector" / "projector_config.pbtxt").read_text()
    assert 'tensor_path: "entities.tsv"' in config and 'metadata_path: "relations_meta.tsv"' in config
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("call", [
    lambda m: predict_tails(m, ENTITIES, RELATIONS, [("alise", "likes")]),
    lambda m: predict_heads(m, ENTITIES, RELATIONS, [("likes", "alise")]),
    lambda m: predict_relations(m, ENTITIES, RELATIONS, [("bob", "alise")]),
    lambda m: score_triples(m, ENTITIES, RELATIONS, [("alise", "likes", "bob")]),
    lambda m: similar(m, ENTITIES, ["alise"]),
])
def test_unknown_entity_label_suggests_a_close_match(call) -> None:
    with pytest.raises(DataError, match="unknown entity 'alise'.*'alice'"):
        call(make("distmult"))


def test_unknown_relation_and_bad_input_raise_data_errors() -> None:
    model = make("distmult")
    with pytest.raises(DataError, match="'likes'"):
        top_triples(model, ENTITIES, RELATIONS, relation="lkes")
    with pytest.raises(DataError, match="'likes'"):
        predict_tails(model, ENTITIES, RELATIONS, [("alice", "like")])
    with pytest.raises(DataError, match="tuples"):
        predict_tails(model, ENTITIES, RELATIONS, [("alice", "likes", "bob")])
    with pytest.raises(DataError, match="missing"):
        predict_tails(model, ENTITIES, RELATIONS, pd.DataFrame({"head": ["alice"]}))
    with pytest.raises(DataError, match="known"):
        predict_tails(model, ENTITIES, RELATIONS, QUERIES, remove_known=True)
    with pytest.raises(DataError, match="vocabulary"):
        predict_tails(model, RELATIONS, RELATIONS, QUERIES)


def saved(tmp_path) -> tuple[Model, object]:
    from kgem.saving import save_model

    model = make("complex", inverse=True)
    return model, save_model(model, tmp_path / "model", entities=ENTITIES, relations=RELATIONS,
                             spec={"name": "complex", "dim": 4, "inverse": True, "args": {}})


@pytest.mark.parametrize("device", ["cpu", "cpu:0", torch.device("cpu")])
def test_load_maps_the_weights_to_the_device(tmp_path, device) -> None:
    import kgem

    model, path = saved(tmp_path)
    loaded = kgem.load(path, device=device)
    tensors = [*loaded.model.parameters(), *loaded.model.buffers()]
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    torch.testing.assert_close(loaded.model.score_hrt(KNOWN_IDS), model.eval().score_hrt(KNOWN_IDS), rtol=1e-5,
                               atol=1e-6)  # loaded tensors sit at other alignments: close, not bit-exact
    assert loaded.predict_tails([("alice", "likes")], k=2)["tail"].tolist() == \
        predict_tails(model, ENTITIES, RELATIONS, [("alice", "likes")], k=2)["tail"].tolist()


@pytest.mark.cuda
def test_load_onto_a_gpu_scores_as_on_the_cpu(tmp_path) -> None:
    import kgem

    model, path = saved(tmp_path)
    loaded = kgem.load(path, device="cuda")
    assert all(p.is_cuda for p in loaded.model.parameters())
    torch.testing.assert_close(loaded.model.score_hrt(KNOWN_IDS.cuda()).cpu(), model.eval().score_hrt(KNOWN_IDS),
                               rtol=1e-6, atol=1e-6)
    assert len(loaded.predict_tails([("alice", "likes")], k=2)) == 2


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "meta", 3.5,
                                    *([] if torch.cuda.is_available() else ["cuda"])])
def test_load_onto_an_invalid_or_absent_device_is_one_clear_error(tmp_path, device) -> None:
    import kgem
    from kgem.errors import ConfigError

    _, path = saved(tmp_path)
    with pytest.raises(ConfigError, match=r"^device .* cannot hold the model") as error:
        kgem.load(path, device=device)
    assert "\n" not in str(error.value)
