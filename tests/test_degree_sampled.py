"""Degree-proportional sampled evaluation: the priority sample (distinct, never a filtered answer, drawn in
proportion to the weights), the weighted counts against a brute-force replay, the estimate's unbiasedness, the
per-query bounds under adversarial beaters, the MRR interval's coverage against the exact ranking (and how it
compares with the uniform sampler's), and equal weights giving the uniform estimate."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kgem.data import KnownTriples
from kgem.errors import EvaluationError
from kgem.evaluation import evaluate, evaluate_sampled
from kgem.evaluation.candidates import DegreeSampledEntities, degree_weights, priority_sample
from kgem.evaluation.estimate import BeaterEstimates, degree_bounds, estimate_weighted_metrics

E, R = 400, 4


class PopularDistMult(nn.Module):
    """A fixed DistMult plus a popularity bias ``log w`` on the candidate: popular entities score high, as they do
    in models trained on power-law graphs, so they are the usual competitors of a true answer."""

    def __init__(self, weights: torch.Tensor, num_relations: int, dim: int = 8, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.num_entities = len(weights)
        self.register_buffer("entity", torch.randn(len(weights), dim, generator=g))
        self.register_buffer("relation", torch.randn(num_relations, dim, generator=g) / dim)
        self.register_buffer("bias", weights.log().float())

    def score_t(self, h: torch.Tensor, r: torch.Tensor, tails: torch.Tensor | None = None) -> torch.Tensor:
        ids = torch.arange(self.num_entities) if tails is None else tails
        return (self.entity[h] * self.relation[r]) @ self.entity[ids].T + self.bias[ids]

    def score_h(self, r: torch.Tensor, t: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        ids = torch.arange(self.num_entities) if heads is None else heads
        return (self.entity[t] * self.relation[r]) @ self.entity[ids].T + self.bias[ids]


class TableModel(nn.Module):
    """Scores looked up in a fixed ``(E, R, E)`` table [h, r, t]: small integers, so that ties are common."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)
        self.num_entities = table.shape[0]

    def score_t(self, h: torch.Tensor, r: torch.Tensor, tails: torch.Tensor | None = None) -> torch.Tensor:
        scores = self.table[h, r]
        return scores if tails is None else scores[:, tails]

    def score_h(self, r: torch.Tensor, t: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
        scores = self.table[:, r, t].T
        return scores if heads is None else scores[:, heads]


def power_law_graph(seed: int = 0, num_triples: int = 4000, held_out: int = 100) -> tuple[torch.Tensor, ...]:
    """Train and test triples whose heads and tails follow a Zipf law over ``E`` entities."""
    g = torch.Generator().manual_seed(seed)
    popularity = (torch.arange(E) + 1.0) ** -1.1
    h, t = (torch.multinomial(popularity, num_triples, replacement=True, generator=g) for _ in range(2))
    hrt = torch.unique(torch.stack([h, torch.randint(R, (num_triples,), generator=g), t], 1), dim=0)
    hrt = hrt[torch.randperm(len(hrt), generator=g)]
    return hrt[held_out:], hrt[:held_out]


@pytest.fixture(scope="module")
def graph() -> dict:
    train, test = power_law_graph()
    weights = degree_weights(train, E)
    model = PopularDistMult(weights, R)
    known = KnownTriples(torch.cat([train, test]), E, R)
    exact = evaluate(model, test, known=known)
    return {"train": train, "test": test, "weights": weights, "model": model, "known": known, "exact": exact}


def test_degree_weights_are_training_degree_plus_one() -> None:
    hrt = torch.tensor([[0, 0, 1], [0, 1, 2], [2, 0, 0], [3, 0, 3]])
    assert degree_weights(hrt, 5).tolist() == [4.0, 2.0, 3.0, 3.0, 1.0]  # a self-loop counts twice, 4 is unseen
    assert degree_weights(hrt, 5).dtype == torch.float64
    with pytest.raises(EvaluationError, match="entity ids"):
        degree_weights(hrt, 3)


def test_priority_sample_draws_distinct_entities_more_often_the_heavier() -> None:
    weights = torch.cat([torch.full((60,), 1.0), torch.full((30,), 8.0), torch.full((10,), 60.0)]).double()
    g = torch.Generator().manual_seed(0)
    drawn, expected = torch.zeros(len(weights)), torch.zeros(len(weights), dtype=torch.float64)
    for _ in range(2000):
        state = g.get_state()
        negatives, tau = priority_sample(weights, 12, g)
        assert len(negatives) == 12 and torch.equal(negatives, torch.unique(negatives))  # distinct and sorted
        u = 1 - torch.rand(len(weights), dtype=torch.float64, generator=torch.Generator().set_state(state))
        priorities = (weights / u).sort(descending=True).values
        assert tau == pytest.approx(float(priorities[12]), rel=1e-12)  # the (K + 1)-th highest priority
        assert bool((weights[negatives] / u[negatives] > tau).all())
        drawn[negatives] += 1
        expected += (weights / tau).clamp(max=1)  # given tau, each entity is drawn with min(1, w / tau)
    classes = (slice(0, 60), slice(60, 90), slice(90, 100))
    light, middle, heavy = (float(drawn[c].mean()) / 2000 for c in classes)
    assert 0 < light < middle / 5 < heavy / 25  # inclusion grows with the weight (8x, then 7.5x heavier)
    for c, share in zip(classes, (light, middle, heavy)):
        assert share == pytest.approx(float(expected[c].mean()) / 2000, rel=0.1)
    everything, tau = priority_sample(weights, 100, g)
    assert torch.equal(everything, torch.arange(100)) and tau == 0


def test_units_offer_the_drawn_entities_minus_filtered_answers() -> None:
    train, test = power_law_graph(seed=1, num_triples=1500, held_out=40)
    known = KnownTriples(torch.cat([train, test]), E, R)
    weights = degree_weights(train, E)
    strategy = DegreeSampledEntities(25, 3, weights)
    h, r, t = test.T.contiguous()
    for side, anchor, target in (("tail", h, t), ("head", t, h)):
        found, answers = (known.tail_pairs(anchor, r) if side == "tail" else known.head_pairs(r, anchor))
        for unit in strategy.units(E, side, anchor, r, target, known, 16, 2**20):
            assert unit.ids is not None and unit.mask is not None and unit.scale is not None
            drawn = unit.scale > 0
            assert int(drawn.sum()) == 25 and unit.threshold > 0
            x = (unit.threshold / weights[unit.ids[drawn]]).clamp_min(1)
            assert torch.allclose(unit.scale[drawn], x)
            for row, query in enumerate(range(unit.queries.start, unit.queries.start + len(unit.cols))):
                offered = set(unit.ids[~unit.mask[row]].tolist())
                filtered = set(answers[found == query].tolist()) - {int(target[query])}
                own = int(target[query])
                assert own in offered and not offered & filtered
                assert offered - {own} == set(unit.ids[drawn].tolist()) - filtered - {own}


def replay(model: TableModel, test: torch.Tensor, known: KnownTriples, weights: torch.Tensor, num_negatives: int,
           seed: int, batch_size: int) -> dict[str, torch.Tensor]:
    """The weighted sums by brute force: the same draws (the sampler replayed from ``seed``), each query's
    drawn candidates minus its filtered answers and its own, compared one by one with the true score."""
    sampler = DegreeSampledEntities(num_negatives, seed, weights)
    rows: dict[str, list[float]] = {name: [] for name in ("better", "better_var", "better_exact", "tie", "tie_var",
                                                           "tie_exact", "tau")}
    h, r, t = test.T.contiguous()
    for side, anchor, target in (("head", t, h), ("tail", h, t)):
        for start in range(0, len(test), batch_size):
            negatives, scale, tau = sampler.draw(len(weights))
            assert scale is not None
            for q in range(start, min(start + batch_size, len(test))):
                scores = (model.score_t(anchor[q : q + 1], r[q : q + 1]) if side == "tail"
                          else model.score_h(r[q : q + 1], anchor[q : q + 1]))[0]
                true = scores[target[q]]
                sums = dict.fromkeys(rows, 0.0)
                for entity, x in zip(negatives.tolist(), scale.tolist()):
                    triple = [int(anchor[q]), int(r[q]), entity] if side == "tail" else [entity, int(r[q]),
                                                                                        int(anchor[q])]
                    if entity == int(target[q]) or bool(known.contains(torch.tensor([triple]))[0]):
                        continue
                    kind = "better" if scores[entity] > true else "tie" if scores[entity] == true else None
                    if kind:
                        sums[kind] += x
                        sums[f"{kind}_var"] += x * (x - 1)
                        sums[f"{kind}_exact"] += float(x == 1)
                sums["tau"] = tau
                for name in rows:
                    rows[name].append(sums[name])
    return {name: torch.tensor(values, dtype=torch.float64) for name, values in rows.items()}


def test_weighted_counts_equal_a_brute_force_replay_across_blocks_and_ties() -> None:
    g = torch.Generator().manual_seed(5)
    n = 60
    model = TableModel(torch.randint(0, 6, (n, 3, n), generator=g).float())  # many ties
    hrt = torch.stack([torch.randint(n, (400,), generator=g), torch.randint(3, (400,), generator=g),
                       torch.randint(n, (400,), generator=g)], 1)
    test, known = hrt[:40], KnownTriples(hrt, n, 3)
    weights = torch.ones(n, dtype=torch.float64)
    weights[:6] = 100.0  # six heavy entities: drawn for certain, each standing for itself (x = 1)
    for budget in (2**20, 4 * 8 * 5):  # one block per batch; blocks of 5 candidates
        result = evaluate_sampled(model, test, known=known, num_negatives=12, seed=2, weights=weights,
                                  batch_size=8, memory_budget_bytes=budget)
        brute = replay(model, test, known, weights, 12, 2, 8)
        b = result.beaters
        assert b is not None and result.sampler == "degree"
        for mine, theirs in ((b.better_count, "better"), (b.better_variance, "better_var"),
                             (b.better_exact, "better_exact"), (b.tie_count, "tie"),
                             (b.tie_variance, "tie_var"), (b.tie_exact, "tie_exact"), (b.threshold, "tau")):
            assert torch.allclose(mine, brute[theirs], rtol=1e-9, atol=1e-9), theirs
        assert float(b.tie_count.sum()) > 0 and float(b.better_exact.sum()) > 0  # ties and heavy ones seen
        assert b.min_weight == float(weights.min())
        assert torch.allclose(b.count("realistic"), b.better_count + b.tie_count / 2)
        assert torch.allclose(b.variance("pessimistic"), b.better_variance + b.tie_variance)
        # the sampled ranks count the same drawn candidates, each once: as many as the weighted sums' terms
        assert bool((result.ranks.optimistic - 1 <= b.better_count + 1e-9).all())
        assert bool((result.ranks.pessimistic - result.ranks.optimistic <= b.tie_count + 1e-9).all())


def test_the_estimated_beaters_are_unbiased(graph) -> None:
    exact_beaters = graph["exact"].ranks.realistic - 1
    draws = []
    for seed in range(100):
        result = evaluate_sampled(graph["model"], graph["test"], known=graph["known"], num_negatives=100, seed=seed,
                                  weights=graph["weights"])
        assert result.beaters is not None
        draws.append(result.beaters.count())
    estimates = torch.stack(draws)  # (seeds, queries)
    totals = estimates.sum(1) / exact_beaters.sum()  # each draw's total over the 200 queries, relative to the exact
    relative, error = float(totals.mean()) - 1, float(totals.std()) / len(totals) ** 0.5
    assert error < 0.01 and abs(relative) < 3 * error, (relative, error)  # e.g. x = tau / w unclamped: -7%
    assert float((estimates.mean(0) - exact_beaters).abs().mean()) < 0.1 * float(exact_beaters.mean())


def adversarial_bounds(level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Per-query miss rates ``(low above A, high below A)`` of ``degree_bounds`` over 2000 priority samples, for
    beater sets chosen to trouble them: the lightest entities (the likeliest to hide), the heaviest, mid-weight
    ones, a few random ones and mixtures."""
    n, k, draws = 2000, 100, 2000
    g = torch.Generator().manual_seed(0)
    weights = (1 + torch.floor(1200 / (torch.arange(n) + 1.0) * torch.rand(n, generator=g))).double()
    drawn = torch.zeros(draws, n, dtype=torch.bool)
    scale = torch.zeros(draws, n, dtype=torch.float64)
    tau = torch.zeros(draws, dtype=torch.float64)
    for i in range(draws):
        negatives, tau[i] = priority_sample(weights, k, g)
        drawn[i, negatives] = True
        scale[i, negatives] = (tau[i] / weights[negatives]).clamp_min(1)
    order, near = torch.argsort(weights), torch.argsort((weights - float(tau.mean()) / 4).abs())
    shuffled = torch.randperm(n, generator=g)
    sets = {"lightest 5": order[:5], "lightest 300": order[:300], "heaviest 5": order[-5:],
            "heaviest 60": order[-60:], "random 1": shuffled[:1], "random 3": shuffled[:3], "random 30": shuffled[:30],
            "random 400": shuffled[:400], "heaviest 3 + lightest 40": torch.cat([order[-3:], order[:40]]),
            "mid-weight 1": near[:1], "mid-weight 50": near[:50], "none": order[:0]}
    misses = {}
    zeros = torch.zeros(draws, dtype=torch.float64)
    for name, ids in sets.items():
        beats = torch.zeros(n, dtype=torch.bool)
        beats[ids] = True
        x = scale * beats
        estimates = BeaterEstimates(x.sum(1), (x * (x - 1)).sum(1), (x == 1).double().sum(1), zeros, zeros, zeros,
                                    tau, float(weights.min()))
        _, low, high = degree_bounds(estimates, (drawn & beats).double().sum(1), torch.full((draws,), n), level=level)
        count = len(ids)
        misses[name] = (float((low > count).double().mean()), float((high < count).double().mean()))
    return misses


def test_per_query_bounds_hold_for_adversarial_beaters() -> None:
    misses = adversarial_bounds()
    for name, (low, high) in misses.items():
        assert low <= 0.035 and high <= 0.035, (name, low, high)  # each side at 0.025, 2000 draws
    assert misses["none"] == (0.0, 0.0)


def test_the_mrr_interval_covers_the_exact_mrr_and_compares_with_uniform(graph) -> None:
    exact, seeds, k = graph["exact"].mrr, 50, 40
    stats: dict[str, dict[str, list[float]]] = {}
    for sampler, weights in (("degree", graph["weights"]), ("uniform", None)):
        rows: dict[str, list[float]] = {"covered": [], "width": [], "error": []}
        for seed in range(seeds):
            table = evaluate_sampled(graph["model"], graph["test"], known=graph["known"], num_negatives=k, seed=seed,
                                     weights=weights).estimate()
            low, high = table.loc["mrr", "low"], table.loc["mrr", "high"]
            rows["covered"].append(float(low <= exact <= high))
            rows["width"].append(high - low)
            rows["error"].append((table.loc["mrr", "estimate"] - exact) ** 2)
        stats[sampler] = rows
    summary = {name: {key: sum(values) / seeds for key, values in rows.items()} for name, rows in stats.items()}
    print(f"\nexact MRR {exact:.4f}, K = {k}, {seeds} seeds: " + "; ".join(
        f"{name}: coverage {s['covered']:.2f}, mean width {s['width']:.4f}, RMSE {math.sqrt(s['error']):.4f}"
        for name, s in summary.items()))
    assert summary["degree"]["covered"] >= 0.9
    # degree-proportional sampling draws the popular competitors: a much closer plug-in MRR, a narrower interval
    # (here 0.25 against 0.40; across graph seeds and K = 20..100, 0.23-0.41 against 0.30-0.56)
    assert summary["degree"]["error"] < summary["uniform"]["error"] / 2
    assert summary["degree"]["width"] < 0.8 * summary["uniform"]["width"]


def test_equal_weights_give_the_uniform_estimate(graph) -> None:
    estimates: dict[str, list[torch.Tensor]] = {"degree": [], "uniform": []}
    for seed in range(30):
        for sampler, weights in (("degree", torch.ones(E)), ("uniform", None)):
            result = evaluate_sampled(graph["model"], graph["test"], known=graph["known"], num_negatives=40,
                                      seed=seed, weights=weights)
            table = result.estimate()
            estimates[sampler].append(torch.tensor([table.loc[m, "estimate"] for m in ("mrr", "mr", "hits@3")]))
            if result.beaters is not None:  # every drawn entity stands for the same 1 / u_(K+1) ~ E / K entities
                b = result.beaters
                drawn = result.ranks.realistic - 1
                assert torch.allclose(b.count(), drawn * b.threshold)
    degree, uniform = (torch.stack(v).mean(0) for v in (estimates["degree"], estimates["uniform"]))
    # the same estimator but for the scale: E / K after filtering (uniform) or 1 / u_(K+1), random (equal weights)
    assert torch.allclose(degree[:2], uniform[:2], rtol=0.05) and abs(float(degree[2] - uniform[2])) < 0.05, (
        degree, uniform)


def test_a_degree_sampled_result_says_so_and_bounds_its_estimates(graph) -> None:
    model, test, known, weights = graph["model"], graph["test"], graph["known"], graph["weights"]
    result = evaluate(model, test, known=known, num_negatives=30, seed=4, negative_weights=weights)
    direct = evaluate_sampled(model, test, known=known, num_negatives=30, seed=4, weights=weights)
    assert torch.equal(result.ranks.realistic, direct.ranks.realistic) and result.beaters is not None
    assert direct.beaters is not None and torch.equal(result.beaters.count(), direct.beaters.count())
    text, record = str(result), result.to_dict()
    assert "30 sampled negatives (degree-proportional)" in text and "degree-proportional sampler" in text
    assert record["sampler"] == "degree" and record["full_ranking_estimate"]["sampler"] == "degree"
    assert record["full_ranking_estimate"]["estimated"] is True
    uniform = evaluate_sampled(model, test, known=known, num_negatives=30, seed=4)
    assert uniform.to_dict()["sampler"] == "uniform" and "(uniform)" in str(uniform)
    for side in ("head", "tail", "both"):
        for rank_type in ("optimistic", "realistic", "pessimistic"):
            table = result.estimate(side=side, rank_type=rank_type)
            for metric in ("mrr", "mr", "hits@1", "hits@10"):
                assert table.loc[metric, "low"] <= table.loc[metric, "estimate"] <= table.loc[metric, "high"]
    # every entity drawn: the exact metrics, with no interval
    everything = evaluate_sampled(model, test, known=known, num_negatives=E, weights=weights).estimate()
    for metric, value in graph["exact"].metrics().items():
        if metric in everything.index:
            assert everything.loc[metric, "estimate"] == pytest.approx(value, rel=1e-9)
            assert everything.loc[metric, "low"] == pytest.approx(everything.loc[metric, "high"], rel=1e-9)
    with pytest.raises(EvaluationError, match="positive"):
        evaluate_sampled(model, test, known=known, num_negatives=5, weights=torch.zeros(E))
    with pytest.raises(EvaluationError, match="one per entity"):
        evaluate_sampled(model, test, known=known, num_negatives=5, weights=torch.ones(E + 1))
    with pytest.raises(EvaluationError, match="differ in length"):
        estimate_weighted_metrics(torch.ones(2), result.beaters[:1], torch.full((2,), E))
