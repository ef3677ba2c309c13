from __future__ import annotations

import torch

from kgem.data import KnownTriples, load_dataset


def random_graph(seed: int, n: int = 300, num_entities: int = 20, num_relations: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(num_entities, (n,), generator=g), torch.randint(num_relations, (n,), generator=g),
                        torch.randint(num_entities, (n,), generator=g)], 1)


def test_masks_equal_brute_force_python_sets() -> None:
    E, R = 20, 4
    hrt = random_graph(0, num_entities=E, num_relations=R)
    known = KnownTriples(hrt, E, R)
    truth = {tuple(x) for x in hrt.tolist()}
    queries = random_graph(1, n=50, num_entities=E, num_relations=R)
    h, r, t = queries.unbind(1)
    tail_mask, head_mask = known.tail_mask(h, r), known.head_mask(r, t)
    for i, (qh, qr, qt) in enumerate(queries.tolist()):
        assert tail_mask[i].tolist() == [(qh, qr, e) in truth for e in range(E)]
        assert head_mask[i].tolist() == [(e, qr, qt) in truth for e in range(E)]
    assert known.contains(queries).tolist() == [tuple(q) in truth for q in queries.tolist()]
    assert len(known) == len(truth)


def test_mask_entity_chunks_concatenate_to_full_mask() -> None:
    hrt = random_graph(2)
    known = KnownTriples(hrt, 20, 4)
    h, r = hrt[:30, 0], hrt[:30, 1]
    chunks = [known.tail_mask(h, r, start, min(start + 7, 20)) for start in range(0, 20, 7)]
    assert torch.equal(torch.cat(chunks, 1), known.tail_mask(h, r))


def test_pairs_list_every_known_answer_once() -> None:
    hrt = torch.tensor([[0, 0, 1], [0, 0, 2], [0, 0, 2], [1, 0, 2], [2, 1, 0]])
    known = KnownTriples(hrt, 3, 2)
    rows, tails = known.tail_pairs(torch.tensor([0, 2, 1]), torch.tensor([0, 0, 0]))
    assert list(zip(rows.tolist(), tails.tolist())) == [(0, 1), (0, 2), (2, 2)]
    rows, heads = known.head_pairs(torch.tensor([0, 1]), torch.tensor([2, 0]))
    assert list(zip(rows.tolist(), heads.tolist())) == [(0, 0), (0, 1), (1, 2)]


def test_empty_index() -> None:
    known = KnownTriples(torch.zeros(0, 3, dtype=torch.long), 5, 2)
    assert not known.tail_mask(torch.tensor([1]), torch.tensor([0])).any()
    assert known.contains(torch.tensor([[1, 0, 1]])).tolist() == [False]


def test_an_index_of_only_the_queries_triples_filters_as_the_index_of_every_triple() -> None:
    """KnownSplits (for splits too large to index) keeps the triples sharing (h, r) or (r, t) with a query: the
    filtered ranks, exact and sampled, and the full-ranking candidate counts are those of the whole index."""
    from kgem.data.known import KnownSplits
    from kgem.evaluation import evaluate
    from kgem.models import build_model

    ds = load_dataset("nations")
    torch.manual_seed(0)
    model = build_model("distmult", ds.num_entities, ds.num_relations, 8)
    parts = [ds.train.hrt, ds.valid.hrt, ds.test.hrt]
    lazy = KnownSplits(parts, ds.num_entities, ds.num_relations, block=100)
    index = lazy.for_queries(ds.test.hrt[:20])
    assert 0 < len(index) < len(lazy)
    for options in ({}, {"num_negatives": 5, "seed": 3}):
        whole = evaluate(model, ds.test.hrt, known=ds.known(), **options)
        part = evaluate(model, ds.test.hrt, known=lazy, **options)
        assert torch.equal(whole.ranks.optimistic, part.ranks.optimistic)
        assert torch.equal(whole.ranks.pessimistic, part.ranks.pessimistic)
        if options:
            assert torch.equal(whole.full_candidates, part.full_candidates)


def test_filtered_evaluation_of_a_large_dataset_indexes_only_what_it_evaluates(monkeypatch) -> None:
    from kgem.data import dataset
    from kgem.data.known import KnownSplits

    ds = load_dataset("nations")
    assert isinstance(ds.known_for_evaluation(), KnownTriples)
    monkeypatch.setattr(dataset, "LAZY_ROWS", 100)
    assert isinstance(ds.known_for_evaluation(), KnownSplits)


def test_predictions_mark_and_remove_known_answers_alike_from_an_index_of_only_their_queries(monkeypatch) -> None:
    from kgem.data import dataset
    from kgem.data.known import KnownSplits
    from kgem.pipeline import pipeline

    result = pipeline(overrides=["training.epochs=1", "model.dim=8"], progress=False)
    whole = result.known_triples()
    assert isinstance(whole, KnownTriples)
    monkeypatch.setattr(dataset, "LAZY_ROWS", 100)  # nations' 1,992 triples count as a large dataset
    calls = [lambda p: p.predict_tails([("usa", "embassy"), ("china", "intergovorgs")], k=5, remove_known=True),
             lambda p: p.predict_heads([("embassy", "usa")], k=5, remove_known=True),
             lambda p: p.predict_relations([("usa", "uk")], k=5, remove_known=True),
             lambda p: p.score_triples([("usa", "embassy", "uk"), ("uk", "embassy", "usa")]),
             lambda p: p.top_triples(k=5, relation="embassy", remove_known=True)]
    for call in calls:
        result.known_cache = None
        from_lazy = call(result)
        assert isinstance(result.known_cache, KnownSplits)
        result.known_cache = whole
        expected = call(result)
        assert from_lazy.equals(expected), (from_lazy, expected)
        assert "known" in expected
