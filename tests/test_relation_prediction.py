"""Relation prediction as an auxiliary 1vsAll term (Chen et al. 2021): the loss against a hand-computed reference,
the config's checks, and what it is for: a model trained with it predicts relations better."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import kgem
from kgem.data import load_dataset
from kgem.errors import ConfigError
from kgem.models import build_model
from kgem.pipeline import resolve_config
from kgem.training import OneVsAll
from kgem.training.losses import LOSSES


@pytest.mark.parametrize("name", ["complex", "distmult", "transe"])
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_is_tail_cross_entropy_plus_weighted_relation_cross_entropy(name, weighted) -> None:
    torch.manual_seed(0)
    model = build_model(name, 9, 3, 4, inverse=True)
    hrt = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 0, 8], [2, 5, 1]])  # relations 3..5 are the reciprocal ones
    weight = torch.tensor([0.5, 2.0, 1.0, 0.25]) if weighted else None
    approach = OneVsAll(relation_weight=0.7)
    approach.weights = weight
    batch = torch.cat([hrt, torch.arange(4).unsqueeze(1)], 1) if weighted else hrt
    fit, factors = approach.step(model, batch, LOSSES.get("cross_entropy")(), torch.Generator())

    every_entity, every_relation = torch.arange(9), torch.arange(6)
    tails = torch.stack([model.score_hrt(torch.stack([hrt[i, :2].repeat(9, 1)[:, 0], hrt[i, 1].repeat(9),
                                                      every_entity], 1)) for i in range(4)])
    relations = torch.stack([model.score_hrt(torch.stack([hrt[i, 0].repeat(6), every_relation,
                                                          hrt[i, 2].repeat(6)], 1)) for i in range(4)])
    per_triple = (F.cross_entropy(tails, hrt[:, 2], reduction="none")
                  + 0.7 * F.cross_entropy(relations, hrt[:, 1], reduction="none"))
    expected = per_triple.mean() if weight is None else (per_triple * weight).sum() / weight.sum()
    assert torch.allclose(fit, expected, atol=1e-5)
    assert len(factors) == 3
    plain, _ = OneVsAll().step(model, hrt, LOSSES.get("cross_entropy")(), torch.Generator())
    assert torch.allclose(plain, F.cross_entropy(tails, hrt[:, 2]), atol=1e-5)


def test_config_checks() -> None:
    with pytest.raises(ConfigError, match="relation_prediction is a term of 1vsAll"):
        resolve_config(None, ["training.relation_prediction=1", "training.approach=kvsall"])
    with pytest.raises(ConfigError, match="finite weight >= 0"):
        resolve_config(None, ["training.relation_prediction=-1"])
    with pytest.raises(ConfigError, match="objective_weights"):
        kgem.pipeline(overrides=["model.name=cp2", "training.relation_prediction=1", "training.epochs=1"],
                      progress=False)


def filtered_relation_mrr(model, ds) -> float:
    """MRR of each test triple's relation among all relations for its (h, t), other true relations of the pair
    (in any split) filtered out."""
    hrt = ds.test.hrt
    known = torch.cat([ds.train.hrt, ds.valid.hrt, ds.test.hrt])
    E, R = ds.num_entities, ds.num_relations
    known_keys = (known[:, 0] * R + known[:, 1]) * E + known[:, 2]
    candidates = (hrt[:, 0:1] * R + torch.arange(R)) * E + hrt[:, 2:3]  # (n, R): every relation for each pair
    other_true = torch.isin(candidates, known_keys) & (torch.arange(R) != hrt[:, 1:2])
    with torch.no_grad():
        scores = model.score_r(hrt[:, 0], hrt[:, 2]).masked_fill(other_true, float("-inf"))
    true = scores.gather(1, hrt[:, 1:2])
    return float((1.0 / (1 + (scores > true).sum(1).float())).mean())


def test_relation_prediction_teaches_the_relations() -> None:
    """Trained with the term, the model ranks a test triple's relation among all relations better (filtered
    relation MRR on UMLS), and its link prediction does not suffer."""
    ds = load_dataset("umls")
    results = {}
    for weight in (0.0, 1.0):
        result = kgem.pipeline(data=ds, overrides=["model.dim=32", "training.epochs=20", "training.batch_size=128",
                                                   "training.early_stopping=false",
                                                   f"training.relation_prediction={weight}"], progress=False)
        assert result.evaluation is not None
        results[weight] = (filtered_relation_mrr(result.model, ds), result.evaluation.mrr)
    (rel_off, link_off), (rel_on, link_on) = results[0.0], results[1.0]
    assert rel_on > rel_off + 0.05, results
    assert link_on > link_off - 0.03, results
