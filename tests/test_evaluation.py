from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from kgem.data import KnownTriples, relation_categories
from kgem.evaluation import (
    EvaluationError,
    EvaluationResult,
    RankCounts,
    Ranks,
    evaluate,
    evaluate_sampled,
    fraction_indices,
    plan_full,
    rank_metrics,
    ranks_from_scores,
)
from kgem.ops import native

E, R = 15, 3


@pytest.fixture(autouse=True, params=["native", "torch"])
def counting(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the native counting kernel and with the torch fallback."""
    if request.param == "torch":
        monkeypatch.setattr(native, "library", lambda: None)
    elif native.library() is None:
        pytest.skip("no C compiler: the native kernels are unavailable")
    return str(request.param)


class TableModel(nn.Module):
    """Stand-in model: scores looked up in a fixed ``(num_entities, num_relations, num_entities)`` table [h, r, t]."""

    table: torch.Tensor

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)
        self.num_entities, self.num_relations = table.shape[0], table.shape[1]
        self.calls: list[tuple[bool, bool]] = []  # (training, grad enabled) seen by each scoring call

    def score_hrt(self, hrt: torch.Tensor) -> torch.Tensor:
        return self.table[hrt[:, 0], hrt[:, 1], hrt[:, 2]]

    def score_t(self, h: torch.Tensor, r: torch.Tensor, tails: torch.Tensor | None = None) -> torch.Tensor:
        self.calls.append((self.training, torch.is_grad_enabled()))
        scores = self.table[h, r]  # (B, E)
        return scores if tails is None else scores[:, tails]

    def score_h(self, r: torch.Tensor, t: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        self.calls.append((self.training, torch.is_grad_enabled()))
        scores = self.table[:, r, t].T  # (B, E)
        return scores if heads is None else scores[:, heads]


class DistMult(nn.Module):
    """Stand-in model with parameters: <h, r, t> with the 1-vs-all matmul."""

    def __init__(self, num_entities: int, num_relations: int, dim: int = 8) -> None:
        super().__init__()
        self.num_entities, self.num_relations = num_entities, num_relations
        self.entity, self.relation = nn.Embedding(num_entities, dim), nn.Embedding(num_relations, dim)

    def score_t(self, h: torch.Tensor, r: torch.Tensor, tails: torch.Tensor | None = None) -> torch.Tensor:
        t = self.entity.weight if tails is None else self.entity(tails)
        return (self.entity(h) * self.relation(r)) @ t.T

    def score_h(self, r: torch.Tensor, t: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        h = self.entity.weight if heads is None else self.entity(heads)
        return (self.entity(t) * self.relation(r)) @ h.T


def random_triples(seed: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(E, (n,), generator=g), torch.randint(R, (n,), generator=g),
                        torch.randint(E, (n,), generator=g)], 1)


def tie_heavy_table(seed: int = 0) -> torch.Tensor:
    """Scores from {0, 1, 2, 3}: most queries have ties with the true answer."""
    return torch.randint(4, (E, R, E), generator=torch.Generator().manual_seed(seed)).float()


def brute_force(table: torch.Tensor, triples: torch.Tensor, known: set[tuple[int, ...]] | None,
                side: str) -> list[tuple[float, float, float, int]]:
    """(optimistic, pessimistic, realistic, candidates) per triple by plain Python loops over entities."""
    out = []
    for h, r, t in triples.tolist():
        target = t if side == "tail" else h
        better = ties = candidates = 0
        for e in range(E):
            triple = (h, r, e) if side == "tail" else (e, r, t)
            if e != target and known is not None and triple in known:
                continue
            candidates += 1
            score, true = float(table[triple]), float(table[h, r, t])
            better += score > true
            ties += score == true and e != target
        out.append((better + 1.0, better + ties + 1.0, better + 1 + ties / 2, candidates))
    return out


def as_rows(ranks: Ranks) -> list[tuple[float, float, float, int]]:
    return list(zip(ranks.optimistic.tolist(), ranks.pessimistic.tolist(), ranks.realistic.tolist(),
                    ranks.num_candidates.tolist()))


def test_hand_computed_ties_and_mask() -> None:
    scores = torch.tensor([[3.0, 1.0, 3.0, 3.0, 0.0]])
    true = scores[:, 2]
    ranks = ranks_from_scores(true, scores)
    assert as_rows(ranks) == [(1.0, 3.0, 2.0, 5)]
    mask = torch.tensor([[True, False, False, False, False]])  # filter out candidate 0
    assert as_rows(ranks_from_scores(true, scores, mask)) == [(1.0, 2.0, 1.5, 4)]
    # the same counts accumulated over two entity chunks
    counts = RankCounts.zeros(1).add(true, scores[:, :2], mask[:, :2]).add(true, scores[:, 2:], mask[:, 2:])
    assert as_rows(counts.ranks()) == [(1.0, 2.0, 1.5, 4)]


def test_true_answer_must_be_among_candidates() -> None:
    with pytest.raises(EvaluationError, match="not among"):
        ranks_from_scores(torch.tensor([5.0]), torch.tensor([[1.0, 2.0]]))


@pytest.mark.parametrize("filter_with", ["train+test", "train", None])  # the true triples known, or not
def test_evaluate_equals_brute_force_and_chunking_changes_nothing(filter_with: str | None) -> None:
    table, test = tie_heavy_table(), random_triples(1, 20)
    train = random_triples(2, 60)
    all_true = torch.cat([train, test]) if filter_with == "train+test" else train
    filtered = filter_with is not None
    known = KnownTriples(all_true, E, R) if filtered else None
    truth = {tuple(x) for x in all_true.tolist()} if filtered else None
    model = TableModel(table)
    whole = evaluate(model, test, known=known)
    expected = brute_force(table, test, truth, "head") + brute_force(table, test, truth, "tail")
    assert as_rows(whole.ranks) == expected
    assert whole.side.tolist() == ["head"] * 20 + ["tail"] * 20 and whole.filtered is filtered
    assert any(o != p for o, p, _, _ in expected)  # the example does exercise ties
    # several query batches x several entity chunks (4 entities per chunk), and the automatic plan at a tiny budget
    options: dict[str, int]
    for options in ({"batch_size": 4, "memory_budget_bytes": 4 * 4 * 4}, {"memory_budget_bytes": 40}):
        chunked = evaluate(model, test, known=known, **options)
        assert as_rows(chunked.ranks) == expected


def test_constant_scores_give_random_realistic_ranks() -> None:
    model = DistMult(E, R)
    nn.init.zeros_(model.entity.weight)  # every score is exactly 0.0: all candidates tie
    test = random_triples(3, 30)
    result = evaluate(model, test, known=KnownTriples(test, E, R), batch_size=7, memory_budget_bytes=7 * 4 * 4)
    assert torch.equal(result.ranks.optimistic, torch.ones(60, dtype=torch.float64))
    assert torch.equal(result.ranks.pessimistic, result.ranks.num_candidates.double())
    metrics = result.metrics()
    assert metrics["amri"] == pytest.approx(0.0) and metrics["amr"] == pytest.approx(1.0)


def test_runs_in_eval_mode_without_grad_and_restores_train_mode() -> None:
    model = TableModel(tie_heavy_table())
    model.train()
    evaluate(model, random_triples(4, 5))
    assert model.training and model.calls and set(model.calls) == {(False, False)}
    model.eval()
    evaluate_sampled(model, random_triples(4, 5), num_negatives=3)
    assert not model.training


def test_plan_respects_the_memory_budget() -> None:
    assert plan_full(1000, 100, 400 * 100 * 4) == (400, 100)  # whole entity range, 400 queries per batch
    batch, chunk = plan_full(1000, 10**6, 2**20)
    assert batch * chunk * 4 <= 2**20 and chunk < 10**6
    assert plan_full(10, 50, 4 * 4 * 7, batch_size=4) == (4, 7)


def test_metrics_hand_computed() -> None:
    ranks, candidates = torch.tensor([1.0, 2.0, 4.0, 10.0]), torch.full((4,), 10)
    m = rank_metrics(ranks, candidates)
    assert m["count"] == 4
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4 + 1 / 10) / 4)
    assert m["mr"] == pytest.approx(4.25)
    assert (m["hits@1"], m["hits@3"], m["hits@5"], m["hits@10"]) == (0.25, 0.5, 0.75, 1.0)
    assert m["amr"] == pytest.approx(4.25 / 5.5)  # E[rank] = (10 + 1) / 2
    assert m["amri"] == pytest.approx(1 - 3.25 / 4.5)
    assert rank_metrics(torch.tensor([1.5]), torch.tensor([3]))["hits@1"] == 0.0  # a shared first place is no hit


def small_result() -> EvaluationResult:
    realistic = torch.tensor([1.0, 2.0, 4.0, 1.0], dtype=torch.float64)
    ranks = Ranks(realistic, realistic, realistic, torch.full((4,), 5))
    return EvaluationResult(ranks, np.array(["head", "tail", "head", "tail"]), np.array([0, 0, 1, 2]),
                            num_entities=5, filtered=True, filter_splits="train+valid+test")


def test_tables_per_side_relation_and_category() -> None:
    result = small_result()
    df = result.to_df()
    assert df.index.tolist() == ["head", "tail", "both"] and {"count", "mrr", "mr", "hits@10", "amri"} <= set(df)
    assert df.loc["head", "mrr"] == pytest.approx((1 + 1 / 4) / 2) and df.loc["both", "count"] == 4
    per_relation = result.per_relation(["likes", "knows", "owns"])
    assert per_relation.index.tolist() == ["likes", "knows", "owns"]
    assert per_relation["mrr"].tolist() == pytest.approx([0.75, 0.25, 1.0])
    assert per_relation["count"].tolist() == [2, 1, 1]
    per_category = result.per_category(np.array(["1-1", "N-N", "1-1"]))
    assert per_category.index.tolist() == ["1-1", "N-N"]  # CATEGORIES order, absent ones left out
    assert per_category["mrr"].tolist() == pytest.approx([(1 + 1 / 2 + 1) / 3, 0.25])
    assert result.per_category(np.array(["1-1", "N-N", "1-1"]), side="tail")["count"].tolist() == [2]
    assert result.mrr == pytest.approx((1 + 0.5 + 0.25 + 1) / 4) and result.hits_at(2) == 0.75
    assert "filtered (train+valid+test)" in str(result) and "mrr" in str(result)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["metrics"]["tail"]["realistic"]["mrr"] == pytest.approx(0.75) and data["sampled"] is False


def test_per_category_from_evaluation() -> None:
    train, test = random_triples(5, 80), random_triples(6, 20)
    categories = relation_categories(train, R)
    result = evaluate(DistMult(E, R), test, known=KnownTriples(torch.cat([train, test]), E, R),
                      relation_categories=categories)
    table = result.per_category()
    assert table["count"].sum() == 40 and set(table.index) <= {"1-1", "1-N", "N-1", "N-N"}


def test_sampled_ranks_are_bounded_labelled_and_full_when_all_entities_are_sampled() -> None:
    model, test = DistMult(E, R), random_triples(7, 25)
    known = KnownTriples(torch.cat([test, random_triples(8, 60)]), E, R)
    sampled = evaluate_sampled(model, test, known=known, num_negatives=5, seed=1, batch_size=8)
    ranks = sampled.ranks.realistic
    assert ranks.min() >= 1 and ranks.max() <= 6 and sampled.ranks.num_candidates.max() <= 6
    assert sampled.sampled and sampled.num_negatives == 5 and "5 sampled negatives" in str(sampled)
    again = evaluate_sampled(model, test, known=known, num_negatives=5, seed=1, batch_size=8)
    assert torch.equal(again.ranks.realistic, ranks)
    everything = evaluate_sampled(model, test, known=known, num_negatives=E, batch_size=8)
    assert as_rows(everything.ranks) == as_rows(evaluate(model, test, known=known).ranks)


def test_nan_scores_raise() -> None:
    table = tie_heavy_table()
    table[0, 0, 0] = math.nan
    test = torch.tensor([[0, 0, 1], [2, 1, 3]])
    with pytest.raises(EvaluationError, match="NaN"):
        evaluate(TableModel(table), test)
    with pytest.raises(EvaluationError, match="NaN"):
        ranks_from_scores(torch.tensor([1.0]), torch.tensor([[1.0, math.nan]]))


def test_bad_input_raises() -> None:
    model = TableModel(tie_heavy_table())
    with pytest.raises(EvaluationError, match="entity ids"):
        evaluate(model, torch.tensor([[0, 0, E]]))
    with pytest.raises(EvaluationError, match="sides"):
        evaluate(model, torch.tensor([[0, 0, 1]]), sides="left")
    with pytest.raises(EvaluationError, match="rank type"):
        evaluate(model, torch.tensor([[0, 0, 1]]), rank_type="average")


def test_nonzero_counts_from_the_squared_norm_are_exact() -> None:
    from kgem.evaluation.ranks import _count_nonzero

    g = torch.Generator().manual_seed(0)
    for width, dtype in ((7, torch.float32), (70_000, torch.float32), (5, torch.float64)):
        sign = torch.randint(-1, 2, (4, width), generator=g).to(dtype)
        sign[0] = 1  # a full row: the largest count
        assert torch.equal(_count_nonzero(sign).long(), (sign != 0).sum(1))


def test_excluded_pairs_outside_the_block_raise() -> None:
    true, scores = torch.zeros(2), torch.zeros(2, 3)
    for rows, cols in (([0], [3]), ([2], [0]), ([-1], [0]), ([0], [-1])):
        with pytest.raises(EvaluationError, match="excluded pairs must lie in the"):
            RankCounts.zeros(2).add_excluding(true, scores, torch.tensor(rows), torch.tensor(cols))
    with pytest.raises(EvaluationError, match="two"):
        RankCounts.zeros(2).add_excluding(true, scores, torch.tensor([0, 1]), torch.tensor([0]))


def test_evaluate_with_num_negatives_ranks_against_seeded_sampled_entities() -> None:
    model, test = DistMult(E, R), random_triples(7, 25)
    known = KnownTriples(torch.cat([test, random_triples(8, 60)]), E, R)
    result = evaluate(model, test, known=known, num_negatives=4, seed=3, batch_size=8)
    assert result.sampled and result.num_negatives == 4
    assert result.ranks.realistic.max() <= 5 and result.ranks.num_candidates.max() <= 5  # bounded by N + 1
    direct = evaluate_sampled(model, test, known=known, num_negatives=4, seed=3, batch_size=8)
    assert as_rows(result.ranks) == as_rows(direct.ranks)
    other = evaluate(model, test, known=known, num_negatives=4, seed=4, batch_size=8)
    assert as_rows(other.ranks) != as_rows(result.ranks)  # the seed draws the negatives


@pytest.mark.parametrize("num_negatives", [E, E + 10])
def test_num_negatives_of_at_least_num_entities_equals_full_evaluation(num_negatives: int) -> None:
    model, test = DistMult(E, R), random_triples(7, 25)
    known = KnownTriples(torch.cat([test, random_triples(8, 60)]), E, R)
    full = evaluate(model, test, known=known)
    every = evaluate(model, test, known=known, num_negatives=num_negatives)
    assert as_rows(every.ranks) == as_rows(full.ranks) and not every.sampled
    assert every.to_dict() == full.to_dict()


def test_fraction_evaluates_a_seeded_subset_of_the_right_size() -> None:
    model, test = DistMult(E, R), random_triples(7, 30)
    known = KnownTriples(torch.cat([test, random_triples(8, 60)]), E, R)
    full = evaluate(model, test, known=known)
    for fraction, count in [(0.1, 3), (0.29, 9), (0.5, 15), (0.01, 1), (1.0, 30)]:  # round(30 * f), at least 1
        chosen = fraction_indices(30, fraction, seed=5)
        assert len(chosen) == count and len(set(chosen.tolist())) == count
        assert torch.equal(chosen, fraction_indices(30, fraction, seed=5))  # deterministic
        part = evaluate(model, test, known=known, fraction=fraction, seed=5)
        assert len(part.ranks) == 2 * count  # head and tail queries of the chosen triples
        index = torch.cat([chosen, chosen + 30])  # full ranks: all head queries, then all tail queries
        assert as_rows(part.ranks) == as_rows(full.ranks[index])
    assert not torch.equal(fraction_indices(30, 0.5, seed=5), fraction_indices(30, 0.5, seed=6))
    assert torch.equal(fraction_indices(30, 1.0, seed=5), torch.arange(30))
    for bad in (0.0, -0.5, 1.5, math.nan):
        with pytest.raises(EvaluationError, match="fraction must lie in"):
            evaluate(model, test, fraction=bad)
