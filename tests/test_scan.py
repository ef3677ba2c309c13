"""The one entity scan (``kgem.models.scan``): its blocks stay within the memory budget and equal the model's scores
over all entities; its running top-k equals a sort of the whole score matrix, ties included; and evaluation,
prediction, top triples and similarity give the same answers whatever the budget."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from kgem.data import KnownTriples, Vocabulary, load_dataset
from kgem.errors import ConfigError
from kgem.evaluation import EvaluationResult, evaluate, evaluate_sampled
from kgem.inference import predict_heads, predict_relations, predict_tails, similar, top_triples
from kgem.models import Model, build_model
from kgem.models.scan import (
    SCORE_BYTES,
    Block,
    RunningTopK,
    block_ranges,
    budget_elements,
    plan,
    scan,
    topk,
)

E, R = 11, 3


class TableModel(nn.Module):
    """Scores looked up in a fixed ``(E, R, E)`` table: exact whatever the blocking, so results compare exactly.
    Records the shape of every score block it returns."""

    table: torch.Tensor

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)
        self.num_entities, self.num_relations = table.shape[0], table.shape[1]
        self.shapes: list[tuple[int, ...]] = []

    def score_t(self, h: torch.Tensor, r: torch.Tensor, tails: torch.Tensor | None = None) -> torch.Tensor:
        scores = self.table[h, r]
        return self._seen(scores if tails is None else scores[:, tails])

    def score_h(self, r: torch.Tensor, t: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        scores = self.table[:, r, t].T
        return self._seen(scores if heads is None else scores[:, heads])

    def _seen(self, scores: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(scores.shape))
        return scores


def tie_heavy(seed: int = 0, num_entities: int = E, num_relations: int = R, values: int = 4) -> torch.Tensor:
    """Scores from {0, ..., values - 1}: most rows hold many ties."""
    return torch.randint(values, (num_entities, num_relations, num_entities),
                         generator=torch.Generator().manual_seed(seed)).float()


def within_budget(shapes: list[tuple[int, ...]], budget_bytes: int) -> bool:
    """Every block holds at most the budget's scores, or is one candidate wide."""
    return bool(shapes) and all(b * c <= budget_elements(budget_bytes) or c == 1 for b, c in shapes)


def queries(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(E, (n,), generator=g), torch.randint(R, (n,), generator=g)


def assembled(blocks: list[Block], num: int) -> torch.Tensor:
    """The blocks' scores put back at their positions; every position covered exactly once."""
    width = blocks[0].scores.shape[0]
    out, seen = torch.full((width, num), float("nan")), torch.zeros(num, dtype=torch.int64)
    for block in blocks:
        out[:, block.start : block.stop] = block.scores
        seen[block.start : block.stop] += 1
    assert torch.equal(seen, torch.ones(num, dtype=torch.int64))
    return out


@pytest.mark.parametrize("name", ["distmult", "transe", "complex"])
@pytest.mark.parametrize("side", ["tail", "head"])
@pytest.mark.parametrize("budget", [1, 4, 5 * SCORE_BYTES, 13 * SCORE_BYTES, 2**20])
def test_blocks_respect_the_budget_and_equal_the_scores_over_all_entities(name: str, side: str, budget: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, E, R, 6, inverse=name == "complex").eval()
    anchor, r = queries(1, 5)
    with torch.no_grad():
        blocks = list(scan(model, side, anchor, r, memory_budget_bytes=budget))
        full = model.score_t(anchor, r) if side == "tail" else model.score_h(r, anchor)
    assert within_budget([tuple(b.scores.shape) for b in blocks], budget)
    assert all(torch.equal(b.ids, torch.arange(b.start, b.stop)) for b in blocks)
    torch.testing.assert_close(assembled(blocks, E), full, rtol=1e-5, atol=1e-6)  # other calls: close, not equal


@pytest.mark.parametrize("per_query_path", [True, False])  # the model's score_t_sampled, or one query at a time
@pytest.mark.parametrize("side", ["tail", "head"])
def test_candidate_subsets_shared_or_per_query(per_query_path: bool, side: str) -> None:
    torch.manual_seed(0)
    model = build_model("distmult", E, R, 6).eval()
    if not per_query_path:  # the same scores from a model with score_t/score_h only
        every_query = torch.arange(E).repeat_interleave(R), torch.arange(R).repeat(E)
        model = TableModel(model.score_t(*every_query).detach().view(E, R, E))
    anchor, r = queries(2, 4)
    with torch.no_grad():
        full = model.score_t(anchor, r) if side == "tail" else model.score_h(r, anchor)
        shared = torch.tensor([9, 2, 4, 7, 0])
        blocks = list(scan(model, side, anchor, r, candidates=shared, memory_budget_bytes=8 * SCORE_BYTES))
        assert [b.scores.shape[1] for b in blocks] == [2, 2, 1]  # 8 scores: 2 candidates of 4 queries
        torch.testing.assert_close(assembled(blocks, 5), full[:, shared], rtol=1e-5, atol=1e-6)
        own = torch.stack([torch.randperm(E, generator=torch.Generator().manual_seed(i))[:6] for i in range(4)])
        blocks = list(scan(model, side, anchor, r, candidates=own, memory_budget_bytes=12 * SCORE_BYTES))
        assert [tuple(b.scores.shape) for b in blocks] == [(4, 3), (4, 3)]
        assert torch.equal(torch.cat([b.ids for b in blocks], 1), own)
        torch.testing.assert_close(assembled(blocks, 6), full.gather(1, own), rtol=1e-5, atol=1e-6)


def test_the_home_block_comes_first_and_widths_are_checked() -> None:
    assert list(block_ranges(2, 10, 6 * SCORE_BYTES)) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert list(block_ranges(2, 10, 6 * SCORE_BYTES, first=7)) == [(6, 9), (0, 3), (3, 6), (9, 10)]
    assert list(block_ranges(2, 10, 6 * SCORE_BYTES, width=2, first=9)) == [(8, 10), (0, 2), (2, 4), (4, 6), (6, 8)]
    assert list(block_ranges(100, 3, 1)) == [(0, 1), (1, 2), (2, 3)]  # at least one candidate per block
    assert not list(block_ranges(2, 0, 64))
    with pytest.raises(ConfigError, match="exceeds the memory budget"):
        list(block_ranges(2, 10, 6 * SCORE_BYTES, width=4))
    for bad in (0, -8, 2.5, True):
        with pytest.raises(ConfigError, match="memory budget must be a positive"):
            plan(3, 10, bad)
    with pytest.raises(ConfigError, match="memory budget must be a positive"):
        evaluate(TableModel(tie_heavy()), torch.tensor([[0, 0, 1]]), memory_budget_bytes=0)


def test_plan_fits_the_budget() -> None:
    assert plan(1000, 100, 400 * 100 * SCORE_BYTES) == (400, 100)
    batch, width = plan(1000, 10**6, 2**20)
    assert batch == 64 and batch * width * SCORE_BYTES <= 2**20
    assert plan(100, 50, 10 * SCORE_BYTES) == (10, 1)  # never more queries than the budget's scores
    assert plan(10, 50, 4 * 4 * 7, batch_size=4) == (4, 7)


def sorted_reference(full: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The tie rule spelled out: a stable descending sort of each row (NaN first, ties by lower column), cut at k."""
    order = full.sort(dim=1, descending=True, stable=True)
    return order.values[:, :k], order.indices[:, :k]


@pytest.mark.parametrize("budget", [1, 3 * SCORE_BYTES, 7 * SCORE_BYTES, 2**20])
@pytest.mark.parametrize("k", [1, 3, 5, E, E + 4])
def test_topk_over_blocks_equals_torch_topk_over_the_full_matrix(budget: int, k: int) -> None:
    table = tie_heavy(values=3)
    table[4, 1] = 1.0  # a row of one score: every candidate ties
    table[5, 2, [3, 8]] = float("nan")  # NaN scores rank first, as in torch.topk
    model = TableModel(table)
    anchor, r = torch.tensor([0, 4, 5, 7, 9, 2]), torch.tensor([0, 1, 2, 1, 0, 2])
    full = model.score_t(anchor, r)
    values, ids = topk(scan(model, "tail", anchor, r, memory_budget_bytes=budget), len(anchor), k)
    width = min(k, E)
    torch.testing.assert_close(values, full.topk(width, dim=1).values, rtol=0, atol=0, equal_nan=True)
    expected_values, expected_ids = sorted_reference(full, width)
    torch.testing.assert_close(values, expected_values, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(ids, expected_ids)
    assert ids[1].tolist() == list(range(width))  # all tied: the lowest ids, in order
    assert within_budget(model.shapes[1:], budget)


def test_running_topk_with_positions_and_exclusions() -> None:
    best = RunningTopK(2, 3)
    best.add(torch.tensor([[1.0, 5.0], [2.0, 2.0]]), start=10)
    best.add(torch.tensor([[5.0, 0.0, 7.0], [2.0, 9.0, 2.0]]), positions=torch.tensor([[3, 4, 5], [1, 6, 0]]))
    values, positions = best.result()
    assert values.tolist() == [[7.0, 5.0, 5.0], [9.0, 2.0, 2.0]]
    assert positions.tolist() == [[5, 3, 11], [6, 0, 1]]  # ties: the lower position first
    assert RunningTopK(2, 0).result()[0].shape == (2, 0)
    model = TableModel(tie_heavy())
    anchor, r = torch.tensor([1, 2]), torch.tensor([0, 2])
    excluded = torch.tensor([0, 0, 1]), torch.tensor([3, 4, 0])
    values, ids = topk(scan(model, "tail", anchor, r, memory_budget_bytes=3 * SCORE_BYTES), 2, E, exclude=excluded)
    full = model.score_t(anchor, r)
    full[excluded] = float("-inf")
    assert torch.equal(ids, sorted_reference(full, E)[1]) and torch.equal(values, sorted_reference(full, E)[0])


def as_rows(result: EvaluationResult) -> list[tuple[float, float, float, int]]:
    ranks = result.ranks
    return list(zip(ranks.optimistic.tolist(), ranks.pessimistic.tolist(), ranks.realistic.tolist(),
                    ranks.num_candidates.tolist()))


def test_evaluation_blocks_respect_the_budget_and_a_one_candidate_budget_changes_no_rank() -> None:
    g = torch.Generator().manual_seed(3)
    test = torch.stack([torch.randint(E, (20,), generator=g), torch.randint(R, (20,), generator=g),
                        torch.randint(E, (20,), generator=g)], 1)
    known = KnownTriples(torch.cat([test, torch.randint(E, (40, 3), generator=g).remainder(R)]), E, R)
    model = TableModel(tie_heavy())
    large = evaluate(model, test, known=known)
    for budget, batch_size in ((SCORE_BYTES, 1), (7 * SCORE_BYTES, None), (3 * SCORE_BYTES, 3)):
        model.shapes.clear()
        small = evaluate(model, test, known=known, memory_budget_bytes=budget, batch_size=batch_size)
        assert as_rows(small) == as_rows(large) and within_budget(model.shapes, budget)
        assert max(b * c for b, c in model.shapes) <= max(budget // SCORE_BYTES, batch_size or 1)
        assert {c for _, c in model.shapes} != {E}  # the entities were cut into blocks
        model.shapes.clear()
        sampled = evaluate_sampled(model, test, known=known, num_negatives=6, seed=2, batch_size=8,
                                   memory_budget_bytes=budget)
        assert within_budget(model.shapes, budget)
        assert as_rows(sampled) == as_rows(evaluate_sampled(model, test, known=known, num_negatives=6, seed=2,
                                                            batch_size=8))


@pytest.mark.parametrize("name", ["transe", "complex"])
def test_a_one_candidate_budget_gives_the_metrics_and_predictions_of_a_large_budget(name: str) -> None:
    dataset = load_dataset("nations")
    torch.manual_seed(0)
    model = build_model(name, dataset.num_entities, dataset.num_relations, 8)
    test, known = dataset.test.hrt[:30], dataset.known()
    large, small = (evaluate(model, test, known=known, memory_budget_bytes=budget) for budget in (2**20, SCORE_BYTES))
    for key, value in large.metrics().items():  # other calls: a near tie may flip, moving a metric by 1 / count
        assert small.metrics()[key] == pytest.approx(value, abs=2 / len(large.ranks))
    entities, relations = dataset.entities, dataset.relations
    pairs = [(entities.labels[h], relations.labels[r]) for h, r, _ in test[:5].tolist()]
    first, second = (predict_tails(model, entities, relations, pairs, k=4, memory_budget_bytes=budget)
                     for budget in (2**20, SCORE_BYTES))
    assert first["tail"].tolist() == second["tail"].tolist()
    np.testing.assert_allclose(first.score, second.score, rtol=1e-5, atol=1e-6)


def old_sampled_ranks(table: torch.Tensor, triples: torch.Tensor, known: set[tuple[int, ...]] | None,
                      num_negatives: int, seed: int, batch_size: int) -> list[tuple[float, float, float, int]]:
    """The sampled evaluation's definition in plain loops: per side (head, then tail) and batch of ``batch_size``
    triples, ``num_negatives`` entities drawn by ``randperm`` from one generator seeded with ``seed``; a query ranks
    its true answer against the drawn entities that are neither its answer nor (filtered) another known answer."""
    generator, out = torch.Generator().manual_seed(seed), []
    num_entities = table.shape[0]
    for side in ("head", "tail"):
        for start in range(0, len(triples), batch_size):
            drawn = torch.randperm(num_entities, generator=generator)[:num_negatives].tolist()
            for h, r, t in triples[start : start + batch_size].tolist():
                target, true = (t if side == "tail" else h), float(table[h, r, t])
                better = ties = count = 0
                for e in drawn:
                    triple = (h, r, e) if side == "tail" else (e, r, t)
                    if e == target or (known is not None and triple in known):
                        continue
                    count += 1
                    better += float(table[triple]) > true
                    ties += float(table[triple]) == true
                out.append((better + 1.0, better + ties + 1.0, better + 1 + ties / 2, count + 1))
    return out


@pytest.mark.parametrize("filtered", [True, False])
@pytest.mark.parametrize(("batch_size", "budget"), [(None, 2**20), (16, 2**20), (16, 5 * SCORE_BYTES), (7, 1)])
def test_sampled_strategy_equals_the_sampled_evaluation_on_nations(filtered: bool, batch_size: int | None,
                                                                   budget: int) -> None:
    dataset = load_dataset("nations")
    num_entities, num_relations = dataset.num_entities, dataset.num_relations
    model = TableModel(tie_heavy(5, num_entities, num_relations, values=6))
    test = dataset.test.hrt[:90]
    known = dataset.known() if filtered else None
    truth = {tuple(x) for x in torch.cat([s.hrt for s in dataset.splits().values()]).tolist()} if filtered else None
    result = evaluate_sampled(model, test, known=known, num_negatives=5, seed=4, batch_size=batch_size,
                              memory_budget_bytes=budget)
    assert as_rows(result) == old_sampled_ranks(model.table, test, truth, 5, 4, batch_size or len(test))
    assert result.sampled and result.num_negatives == 5 and within_budget(model.shapes, budget)


VOCAB = Vocabulary.from_labels([f"e{i:02d}" for i in range(E)], kind="entity")  # id order = label order
RELATION_VOCAB = Vocabulary.from_labels([f"r{i}" for i in range(R)], kind="relation")


def constant_model() -> Model:
    """Every score 0 (DistMult with zero entity rows): every candidate ties."""
    model = build_model("distmult", E, R, 4)
    with torch.no_grad():
        model.entity.weight.zero_()
    return model


@pytest.mark.parametrize("budget", [SCORE_BYTES, 2**20])
def test_inference_ties_go_to_the_lower_ids_whatever_the_budget(budget: int) -> None:
    model = constant_model()
    e = VOCAB.labels
    tails = predict_tails(model, VOCAB, RELATION_VOCAB, [(e[3], "r1"), (e[0], "r2")], k=4, memory_budget_bytes=budget)
    assert tails["tail"].tolist() == [e[0], e[1], e[2], e[3]] * 2
    heads = predict_heads(model, VOCAB, RELATION_VOCAB, [("r1", e[3])], k=3, memory_budget_bytes=budget)
    assert heads["head"].tolist() == [e[0], e[1], e[2]]
    relations = predict_relations(model, VOCAB, RELATION_VOCAB, [(e[1], e[2])], k=2, memory_budget_bytes=budget)
    assert relations["relation"].tolist() == ["r0", "r1"]
    top = top_triples(model, VOCAB, RELATION_VOCAB, k=5, memory_budget_bytes=budget)
    assert list(zip(top["head"], top["relation"], top["tail"])) == [(e[0], "r0", e[t]) for t in range(5)]
    top = top_triples(model, VOCAB, RELATION_VOCAB, k=E + 2, relation="r2", memory_budget_bytes=budget)
    assert list(zip(top["head"], top["tail"])) == [(e[0], e[t]) for t in range(E)] + [(e[1], e[0]), (e[1], e[1])]
    near = similar(model, VOCAB, [e[2], e[0]], k=3, metric="dot", memory_budget_bytes=budget)
    assert near["neighbour"].tolist() == [e[0], e[1], e[3], e[1], e[2], e[3]]  # never the query itself


@pytest.mark.parametrize("budget", [SCORE_BYTES, 5 * SCORE_BYTES])
def test_inference_blocks_respect_the_budget(budget: int, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = build_model("distmult", E, R, 4)
    shapes: list[tuple[int, ...]] = []
    real_t, real_h = model.score_t, model.score_h

    def spy(real: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def scores(*args: Any, **kwargs: Any) -> torch.Tensor:
            out = real(*args, **kwargs)
            shapes.append(tuple(out.shape))
            return out
        return scores

    monkeypatch.setattr(model, "score_t", spy(real_t))
    monkeypatch.setattr(model, "score_h", spy(real_h))
    labels = [(VOCAB.labels[i], f"r{i % R}") for i in range(7)]
    predict_tails(model, VOCAB, RELATION_VOCAB, labels, k=3, memory_budget_bytes=budget)
    predict_heads(model, VOCAB, RELATION_VOCAB, [(r, h) for h, r in labels], k=3, memory_budget_bytes=budget)
    top_triples(model, VOCAB, RELATION_VOCAB, k=3, memory_budget_bytes=budget)
    assert within_budget(shapes, budget) and len(shapes) > 2 * E


class BroadcastModel(TableModel):
    """Scores that ignore the candidate, returned as a broadcast (stride 0) view."""

    def score_t(self, h: torch.Tensor, r: torch.Tensor, tails: torch.Tensor | None = None) -> torch.Tensor:
        width = self.num_entities if tails is None else len(tails)
        return self._seen(h.float()[:, None].expand(len(h), width))


def test_a_broadcast_block_is_materialised_so_that_consumers_may_overwrite_it() -> None:
    model = BroadcastModel(tie_heavy())
    anchor, r = torch.tensor([2, 5]), torch.tensor([0, 1])
    blocks = list(scan(model, "tail", anchor, r))
    assert blocks[0].scores.stride() == (E, 1)
    values, ids = topk(scan(model, "tail", anchor, r), 2, 3, exclude=(torch.tensor([0, 1]), torch.tensor([0, 1])))
    assert values.tolist() == [[2.0, 2.0, 2.0], [5.0, 5.0, 5.0]] and ids.tolist() == [[1, 2, 3], [0, 2, 3]]
    result = evaluate(model, torch.tensor([[2, 0, 4], [5, 1, 0]]), sides="tail")
    assert result.ranks.optimistic.tolist() == [1.0, 1.0] and result.ranks.pessimistic.tolist() == [E, E]
