"""End to end: every registered model learns on a bundled dataset, and the same seed gives the same metrics."""

from __future__ import annotations

import pytest
import torch

from kgem.data import load_dataset
from kgem.evaluation import evaluate
from kgem.models import MODELS, build_model
from kgem.models.literal import LITERAL_MODELS
from kgem.training import LOSSES, SLCWA, NegativeSampler, OneVsAll, Trainer, build_optimizer
from references import bilinear, composed, merged, neural, translational

RECIPES = merged(bilinear.RECIPES, translational.RECIPES, neural.RECIPES, composed.RECIPES)
RECIPES["rgcn"] = ({}, "1vsall", "cross_entropy", {}, {"epochs": 5, "batch_size": 512})  # an encoder: no family table


DEFAULTS = {"dim": 32, "lr": 0.02, "epochs": 20, "batch_size": 128, "num_negatives": 16,
            "min_mrr": 0.4, "min_ratio": 3.0}  # the pass mark; lowered only for a model that cannot reach it by design


def options(name: str) -> dict:
    """DEFAULTS overridden by the recipe's optional 5th entry."""
    more = RECIPES[name][4:]
    return {**DEFAULTS, **(more[0] if more else {})}


def train_and_evaluate(name: str, seed: int = 0, epochs: int | None = None) -> float:
    torch.manual_seed(seed)
    ds = load_dataset("umls")
    if name == "randombaseline":
        model = build_model(name, ds.num_entities, ds.num_relations, 16)
    else:
        args, approach_name, loss_name, loss_args, *_ = RECIPES[name]
        opt = options(name)
        model = build_model(name, ds.num_entities, ds.num_relations, opt["dim"], inverse=approach_name == "1vsall",
                            graph=ds.train.hrt, **args)
        approach = OneVsAll() if approach_name == "1vsall" else SLCWA(NegativeSampler(opt["num_negatives"]))
        optimizer = build_optimizer("adam", model.parameters(), lr=opt["lr"])
        Trainer(model, approach, LOSSES.get(loss_name)(**loss_args), optimizer, batch_size=opt["batch_size"],
                seed=seed, progress=False).fit(ds.train.hrt, epochs or opt["epochs"])
    assert ds.test is not None
    return evaluate(model, ds.test.hrt, known=ds.known()).mrr


@pytest.fixture(scope="module")
def random_mrr() -> float:
    return train_and_evaluate("randombaseline")


def test_every_model_has_a_recipe() -> None:
    assert set(MODELS) == {*RECIPES, "randombaseline", *LITERAL_MODELS}  # those learn in tests/test_literals.py


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_model_beats_random_baseline_by_wide_margin(name, random_mrr) -> None:
    mrr = train_and_evaluate(name)
    assert random_mrr < 0.15
    opt = options(name)
    assert mrr > opt["min_ratio"] * random_mrr and mrr > opt["min_mrr"], (name, mrr, random_mrr)


def test_same_seed_same_metrics() -> None:
    assert train_and_evaluate("complex", seed=3, epochs=3) == train_and_evaluate("complex", seed=3, epochs=3)
