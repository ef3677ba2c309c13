from __future__ import annotations

import pytest
import torch
from torch import nn

from kgem.data.types import DomainConstraints, derive_types
from kgem.evaluation.ranks import EvaluationError
from kgem.evaluation.semantic import semantic_at_k, top_allowed
from kgem.models.scan import SCORE_BYTES


class TableModel(nn.Module):
    """Scores looked up in a fixed ``(E, R, E)`` table; records the shape of every score block it returns."""

    table: torch.Tensor

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)
        self.num_entities = table.shape[0]
        self.shapes: list[tuple[int, ...]] = []

    def score_t(self, h: torch.Tensor, r: torch.Tensor, tails: torch.Tensor | None = None) -> torch.Tensor:
        scores = self.table[h, r]
        return self._seen(scores if tails is None else scores[:, tails])

    def score_h(self, r: torch.Tensor, t: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        scores = self.table[:, r, t].T
        return self._seen(scores if heads is None else scores[:, heads])

    def _seen(self, scores: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(scores.shape))
        return scores.clone()


def tiny() -> tuple[TableModel, DomainConstraints]:
    """5 entities, 1 relation: heads {2, 3, 4}, tails {0, 1}; fixed scores for the two queries of triple (2, 0, 1)."""
    table = torch.zeros(5, 1, 5)
    table[2, 0] = torch.tensor([0.1, 0.9, 0.8, 0.2, 0.5])  # tails by score: 1 (ok), 2, 4, 3, 0 (ok)
    table[:, 0, 1] = torch.tensor([0.7, 0.6, 0.9, 0.0, 0.3])  # heads by score: 2 (ok), 0, 1, 4 (ok), 3 (ok)
    heads = torch.tensor([[False, False, True, True, True]])
    tails = torch.tensor([[True, True, False, False, False]])
    return TableModel(table), DomainConstraints(heads, tails)


def brute_force(table: torch.Tensor, triples: torch.Tensor, constraints: DomainConstraints, k: int) -> dict[str, float]:
    """Sem@k from a full stable descending sort of every query's scores."""
    out = {}
    for side in ("head", "tail"):
        fractions = []
        for h, r, t in triples.tolist():
            scores = table[:, r, t] if side == "head" else table[h, r]
            best = scores.sort(descending=True, stable=True).indices[:k]
            fractions.append(constraints.allowed(side)[r, best].float().mean().item())
        out[side] = sum(fractions) / len(fractions)
    return out


def test_tiny_table_equals_hand_count() -> None:
    model, constraints = tiny()
    result = semantic_at_k(model, torch.tensor([[2, 0, 1]]), constraints, ks=(1, 3, 5))
    expected = {"tail.sem@1": 1, "tail.sem@3": 1 / 3, "tail.sem@5": 2 / 5,
                "head.sem@1": 1, "head.sem@3": 1 / 3, "head.sem@5": 3 / 5}
    for key, value in expected.items():
        assert result[key] == pytest.approx(value)
    for k in (1, 3, 5):
        assert result[f"sem@{k}"] == pytest.approx((expected[f"head.sem@{k}"] + expected[f"tail.sem@{k}"]) / 2)
    assert semantic_at_k(model, torch.tensor([[2, 0, 1]]), constraints, ks=(3,), sides="tail") == \
        pytest.approx({"sem@3": 1 / 3, "tail.sem@3": 1 / 3})


def test_ties_go_to_the_lower_entity_id() -> None:
    model, constraints = tiny()
    model.table.zero_()  # every entity ties: the best are 0, 1, 2, ... in id order
    result = semantic_at_k(model, torch.tensor([[2, 0, 1]]), constraints, ks=(1, 2, 3))
    assert [result[f"tail.sem@{k}"] for k in (1, 2, 3)] == pytest.approx([1, 1, 2 / 3])
    assert [result[f"head.sem@{k}"] for k in (1, 2, 3)] == pytest.approx([0, 0, 1 / 3])


def random_case(seed: int = 0, num_entities: int = 40, num_relations: int = 3,
                n: int = 25) -> tuple[torch.Tensor, torch.Tensor, DomainConstraints]:
    g = torch.Generator().manual_seed(seed)
    table = torch.randint(0, 6, (num_entities, num_relations, num_entities), generator=g).float()  # many ties
    graph = torch.stack([torch.randint(0, num_entities, (200,), generator=g),
                         torch.randint(0, num_relations, (200,), generator=g),
                         torch.randint(0, num_entities, (200,), generator=g)], 1)
    triples = torch.stack([torch.randint(0, num_entities, (n,), generator=g),
                           torch.randint(0, num_relations, (n,), generator=g),
                           torch.randint(0, num_entities, (n,), generator=g)], 1)
    return table, triples, derive_types(graph, num_entities, num_relations)


def test_equals_brute_force_sort_on_a_tie_heavy_table() -> None:
    table, triples, constraints = random_case()
    result = semantic_at_k(TableModel(table), triples, constraints, ks=(1, 3, 10))
    for k in (1, 3, 10):
        expected = brute_force(table, triples, constraints, k)
        assert result[f"head.sem@{k}"] == pytest.approx(expected["head"])
        assert result[f"tail.sem@{k}"] == pytest.approx(expected["tail"])
        assert 0 < result[f"sem@{k}"] < 1


def test_a_model_ranking_allowed_entities_first_scores_one() -> None:
    table, triples, constraints = random_case(seed=1)
    # heads depend only on (r, h) and tails on (r, t): a score that puts allowed entities above the others in both
    typed = constraints.allowed_heads.T[:, :, None].float() + constraints.allowed_tails[None].float()
    assert constraints.allowed_heads.sum(1).min() >= 10 and constraints.allowed_tails.sum(1).min() >= 10
    result = semantic_at_k(TableModel(2 * typed + table / 10), triples, constraints)
    assert set(result) == {f"{s}sem@{k}" for s in ("", "head.", "tail.") for k in (1, 3, 10)}
    assert all(value == 1 for value in result.values())
    assert semantic_at_k(TableModel(-typed), triples, constraints, ks=(1,))["sem@1"] == 0


def test_memory_bounded_by_batches_and_blocks() -> None:
    table, triples, constraints = random_case(seed=2)
    expected = semantic_at_k(TableModel(table), triples, constraints)
    budget = 7 * 5 * SCORE_BYTES  # 35 scores: blocks narrower than the 40 entities
    model = TableModel(table)
    assert semantic_at_k(model, triples, constraints, memory_budget_bytes=budget, batch_size=7) == expected
    assert len(model.shapes) > 2 * len(triples) // 7
    assert max(b * c for b, c in model.shapes) <= 35 and max(b for b, _ in model.shapes) <= 7
    model.shapes.clear()
    flags = top_allowed(model, "tail", triples[:, 0], triples[:, 1], constraints, 10, memory_budget_bytes=budget)
    assert flags.shape == (len(triples), 10) and flags.dtype == torch.bool
    assert max(b * c for b, c in model.shapes) <= 35


def test_bad_input_is_an_evaluation_error() -> None:
    model, constraints = tiny()
    triple = torch.tensor([[2, 0, 1]])
    with pytest.raises(EvaluationError, match=r"ks must be whole numbers in \[1, 5\]"):
        semantic_at_k(model, triple, constraints, ks=(1, 6))
    with pytest.raises(EvaluationError, match="relation ids must lie in"):
        semantic_at_k(model, torch.tensor([[2, 1, 1]]), constraints)
    with pytest.raises(EvaluationError, match="entity ids must lie in"):
        semantic_at_k(model, torch.tensor([[5, 0, 1]]), constraints, ks=(1,))
    with pytest.raises(EvaluationError, match="constraints cover 4 entities"):
        semantic_at_k(model, triple, DomainConstraints(constraints.allowed_heads[:, :4],
                                                       constraints.allowed_tails[:, :4]), ks=(1,))
    with pytest.raises(EvaluationError, match="non-empty"):
        semantic_at_k(model, triple[:0], constraints, ks=(1,))
    with pytest.raises(EvaluationError, match="sides must be"):
        semantic_at_k(model, triple, constraints, ks=(1,), sides="middle")
    model.table[2, 0, 3] = float("nan")
    with pytest.raises(EvaluationError, match="scored NaN for tail queries"):
        semantic_at_k(model, triple, constraints, ks=(1,))


def test_restores_training_mode() -> None:
    model, constraints = tiny()
    model.train()
    semantic_at_k(model, torch.tensor([[2, 0, 1]]), constraints, ks=(1,))
    assert model.training
