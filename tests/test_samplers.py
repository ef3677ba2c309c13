"""A harness over every negative-sampler setting (uniform or Bernoulli, filtered or not, per row or shared, both
sides or tails only): the invariants each promises, checked against brute force on a small graph."""

from __future__ import annotations

import itertools

import pytest
import torch

from kgem.data.stats import corruption_probabilities
from kgem.training.samplers import NegativeSampler, corrupted

E, R, K = 12, 3, 8
SETTINGS = list(itertools.product([False, True], repeat=4))  # bernoulli, filtered, shared, tails_only


def graph() -> torch.Tensor:
    """A dense little graph, so that filtering has true triples to find."""
    generator = torch.Generator().manual_seed(0)
    hrt = torch.stack([torch.randint(E, (200,), generator=generator), torch.randint(1, R, (200,), generator=generator),
                       torch.randint(E, (200,), generator=generator)], 1)
    one_to_many = torch.stack([torch.zeros(E, dtype=torch.long), torch.zeros(E, dtype=torch.long), torch.arange(E)], 1)
    return torch.unique(torch.cat([hrt, one_to_many]), dim=0)  # relation 0: one head, every tail


@pytest.mark.parametrize(("bernoulli", "filtered", "shared", "tails_only"), SETTINGS)
def test_negatives_keep_every_promise_of_their_setting(bernoulli: bool, filtered: bool, shared: bool,
                                                       tails_only: bool) -> None:
    hrt = graph()
    sampler = NegativeSampler(K, bernoulli=bernoulli, filtered=filtered, shared=shared)
    sampler.prepare(hrt, E, R, tails_only=tails_only)
    batch = hrt[:32]
    negatives = sampler.sample(batch, torch.Generator().manual_seed(1))
    assert negatives.ids.shape == ((1, K) if shared else (32, K)) and negatives.corrupt_head.shape == (32,)
    assert int(negatives.ids.min()) >= 0 and int(negatives.ids.max()) < E
    if tails_only:
        assert not negatives.corrupt_head.any()
    triples = corrupted(batch, negatives.corrupt_head, negatives.ids)  # (B, K, 3)
    kept = torch.where(negatives.corrupt_head.view(-1, 1), triples[:, :, 2], triples[:, :, 0])
    assert torch.equal(triples[:, :, 1], batch[:, 1:2].expand(-1, K))  # the relation never changes
    assert torch.equal(kept, torch.where(negatives.corrupt_head, batch[:, 2], batch[:, 0]).view(-1, 1).expand(-1, K))
    true = {tuple(t) for t in hrt.tolist()}
    is_true = torch.tensor([[tuple(t) in true for t in row] for row in triples.tolist()])
    if not filtered:
        assert negatives.known is None
    else:  # marked exactly where a negative is a training triple (resampled ones have none left unmarked)
        assert negatives.known is not None and torch.equal(negatives.known, is_true)


@pytest.mark.parametrize(("bernoulli", "filtered", "shared", "tails_only"), SETTINGS)
def test_the_same_generator_state_gives_the_same_negatives(bernoulli: bool, filtered: bool, shared: bool,
                                                           tails_only: bool) -> None:
    hrt = graph()
    sampler = NegativeSampler(K, bernoulli=bernoulli, filtered=filtered, shared=shared)
    sampler.prepare(hrt, E, R, tails_only=tails_only)
    first, second = (sampler.sample(hrt[:16], torch.Generator().manual_seed(5)) for _ in range(2))
    assert torch.equal(first.ids, second.ids) and torch.equal(first.corrupt_head, second.corrupt_head)


def test_bernoulli_corrupts_heads_at_each_relations_rate() -> None:
    hrt = graph()
    sampler = NegativeSampler(1, bernoulli=True)
    sampler.prepare(hrt, E, R)
    expected = torch.from_numpy(corruption_probabilities(hrt, R)).float()
    batch = hrt[torch.arange(20000) % len(hrt)]
    heads = sampler.sample(batch, torch.Generator().manual_seed(2)).corrupt_head.float()
    assert float(expected.max() - expected.min()) > 0.1  # the relations differ, so uniform would fail here
    for r in range(R):
        rate = float(heads[batch[:, 1] == r].mean())
        assert rate == pytest.approx(float(expected[r]), abs=0.03)


def test_sampling_before_prepare_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="prepare"):
        NegativeSampler(K).sample(graph()[:2], torch.Generator())
