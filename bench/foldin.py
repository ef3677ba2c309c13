"""How good is a folded-in entity? Held-out entities folded into a model trained without them, against retraining.

    .venv/bin/python bench/foldin.py                                   # UMLS, 3 seeds (a few minutes on a CPU)
    .venv/bin/python bench/foldin.py --dataset kinships
    .venv/bin/python bench/foldin.py --dataset fb15k237 --data-root ../shared/datasets --epochs 30 --seeds 2

For each seed: ``--share`` of the entities (drawn among those with at least ``--min-degree`` triples) are held out,
and every triple touching them is removed from all splits. A model is trained on the rest (``base``). The held-out
entities' triples are split at random: ``--known`` of them are the triples that "arrive" (every held-out entity
gets at least one), the others are ranked (filtered by every true triple of the dataset, both sides, against every
entity). The ranked triples' MRR and Hits@10 are compared for:

- ``random``: the held-out entities given rows at the model's fresh initialisation, no fitting;
- ``neighbours``: rows initialised from their analogues (``kgem.training.foldin``), no fitting;
- ``alone``: ``LoadedModel.extend`` without the old triples: analogues, then ``--steps`` steps fitting the new
  rows (old rows frozen) on the arrived triples alone;
- ``foldin``: the same with the old training triples given (``train=``): the fit also keeps the new rows out of
  the old triples' answers (the retraining objective with the old rows held fixed);
- ``unfreeze``: fold-in, then ``--unfreeze-epochs`` epochs of the whole model on old and new triples (skipped at 0);
- ``retrain``: the model trained from scratch on the base triples plus the arrived ones, same settings.

``mrr_old`` is each model's MRR on the test triples among the base entities, ranked against every entity, the new
ones included: fold-in leaves the old entities' scores exactly as they were, so any drop from the base model's is
new rows rising over old answers. Prints one JSON line per (seed, method), then the medians over seeds; a run that
fails is reported as failed with its error, never as a number.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kgem.data import Dataset, Triples, Vocabulary, load_dataset
from kgem.evaluation import evaluate
from kgem.pipeline import pipeline
from kgem.saving import LoadedModel, load_model

METHODS = ("random", "neighbours", "alone", "foldin", "unfreeze", "retrain")


@dataclass
class Holdout:
    """One seed's split: the base training triples (labels), the triples that arrive and those ranked."""

    base: np.ndarray
    arrived: np.ndarray
    ranked: np.ndarray
    held_out: list[str]


def labels(triples: Triples) -> np.ndarray:
    """``(n, 3)`` label strings of ``triples``."""
    ids = triples.hrt.numpy()
    return np.stack([triples.entities.to_labels(ids[:, 0]), triples.relations.to_labels(ids[:, 1]),
                     triples.entities.to_labels(ids[:, 2])], 1).astype(object)


def hold_out(ds: Dataset, share: float, known: float, min_degree: int, seed: int) -> Holdout:
    """Hold out ``share`` of the entities of degree ``min_degree`` or more (all splits counted), drawn from
    ``seed``: their triples leave every split; ``known`` of those arrive (at least one per entity), the rest are
    ranked. The base keeps the training split's other triples."""
    everything = torch.cat([part.hrt for part in ds.splits().values()])
    degree = torch.bincount(torch.cat([everything[:, 0], everything[:, 2]]), minlength=ds.num_entities)
    pool = torch.nonzero(degree >= min_degree).squeeze(1)
    generator = torch.Generator().manual_seed(seed)
    count = max(1, round(share * ds.num_entities))
    chosen = pool[torch.randperm(len(pool), generator=generator)[:count]]
    held = torch.zeros(ds.num_entities, dtype=torch.bool)
    held[chosen] = True
    touching = held[everything[:, 0]] | held[everything[:, 2]]
    theirs = everything[touching]
    arrives = torch.rand(len(theirs), generator=generator) < known
    for entity in chosen.tolist():  # every held-out entity arrives with at least one triple
        rows = torch.nonzero((theirs[:, 0] == entity) | (theirs[:, 2] == entity)).squeeze(1)
        if not bool(arrives[rows].any()):
            arrives[rows[torch.randint(len(rows), (1,), generator=generator)]] = True
    train = ds.train.hrt[~(held[ds.train.hrt[:, 0]] | held[ds.train.hrt[:, 2]])]
    seen = torch.cat([train, theirs[arrives]])
    entity_seen = torch.zeros(ds.num_entities, dtype=torch.bool)
    entity_seen[seen[:, [0, 2]].reshape(-1)] = True
    relation_seen = torch.zeros(ds.num_relations, dtype=torch.bool)
    relation_seen[seen[:, 1]] = True
    ranked = theirs[~arrives]  # those a model of the base and the arrived triples can rank
    ranked = ranked[entity_seen[ranked[:, 0]] & entity_seen[ranked[:, 2]] & relation_seen[ranked[:, 1]]]
    return Holdout(labels(ds.train.with_hrt(train)), labels(ds.train.with_hrt(theirs[arrives])),
                   labels(ds.train.with_hrt(ranked)), ds.entities.to_labels(chosen).tolist())


def as_dataset(rows: np.ndarray, name: str) -> Dataset:
    """A training split of label triples (no valid or test split: trained for a fixed number of epochs)."""
    entities = Vocabulary.from_labels(np.concatenate([rows[:, 0], rows[:, 2]]), kind="entity")
    relations = Vocabulary.from_labels(rows[:, 1], kind="relation")
    hrt = torch.from_numpy(np.stack([entities.lookup(rows[:, 0]), relations.lookup(rows[:, 1]),
                                     entities.lookup(rows[:, 2])], 1))
    return Dataset(Triples(hrt, entities, relations, name), name=name)


def config(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    return {"model": {"name": args.model, "dim": args.dim},
            "training": {"epochs": args.epochs, "early_stopping": False, "seed": seed, "batch_size": args.batch_size,
                         "lr": args.lr}}


def train(rows: np.ndarray, args: argparse.Namespace, seed: int, folder: Path) -> LoadedModel:
    """A model trained on ``rows`` with the shared settings, saved and loaded back (as a user would have it)."""
    result = pipeline(config(args, seed), data=as_dataset(rows, "base"), progress=False)
    return load_model(result.save(folder))


def encoded(model: LoadedModel, rows: np.ndarray) -> torch.Tensor:
    """Label triples as ``model``'s ids; every label must be known."""
    ids = np.stack([model.entities.ids(rows[:, 0]), model.relations.ids(rows[:, 1]), model.entities.ids(rows[:, 2])],
                   1)
    return torch.from_numpy(ids)


def mrr_old(model: LoadedModel, ds: Dataset, old_test: np.ndarray) -> float:
    """MRR of the old test triples, filtered by every true triple of the dataset."""
    known = model.known_index([*ds.splits().values()])
    return round(evaluate(model.model, encoded(model, old_test), known=known).mrr, 4)


def metrics(model: LoadedModel, ds: Dataset, split: Holdout, old_test: np.ndarray) -> dict[str, float]:
    """MRR and Hits@10 of the ranked triples and MRR of the old test triples, filtered by every true triple."""
    ranked = evaluate(model.model, encoded(model, split.ranked), known=model.known_index([*ds.splits().values()]))
    return {"mrr": round(ranked.mrr, 4), "hits10": round(ranked.hits_at(10), 4),
            "mrr_old": mrr_old(model, ds, old_test)}


def old_test_triples(ds: Dataset, split: Holdout) -> np.ndarray:
    """The test triples (valid without a test split) among the base's entities."""
    part = ds.test if ds.test is not None else ds.valid
    assert part is not None, "the dataset needs a test or valid split"
    rows = labels(part)
    base = set(split.base[:, 0]) | set(split.base[:, 2])
    keep = np.array([h in base and t in base for h, t in zip(rows[:, 0], rows[:, 2])], dtype=bool)
    relations = set(split.base[:, 1])
    keep &= np.array([r in relations for r in rows[:, 1]], dtype=bool)
    return rows[keep]


def extended(base: LoadedModel, method: str, split: Holdout, args: argparse.Namespace, seed: int) -> LoadedModel:
    """The base model grown by the arrived triples as ``method`` says."""
    if method == "random":
        return base.extend(split.arrived, init="random", steps=0, seed=seed)
    if method == "neighbours":
        return base.extend(split.arrived, steps=0, seed=seed)
    old = as_dataset(split.base, "base")
    if method == "foldin":
        return base.extend(split.arrived, steps=args.steps, lr=args.foldin_lr, train=old, seed=seed)
    if method == "alone":
        return base.extend(split.arrived, steps=args.steps, lr=args.foldin_lr, seed=seed)
    assert method == "unfreeze"
    return base.extend(split.arrived, steps=args.steps, lr=args.foldin_lr, train=old, seed=seed, unfreeze=True,
                       epochs=args.unfreeze_epochs)


def run_seed(ds: Dataset, args: argparse.Namespace, seed: int) -> list[dict[str, Any]]:
    """Every method of one seed's split, one row each (a method that fails: a failed row)."""
    split = hold_out(ds, args.share, args.known, args.min_degree, seed)
    old_test = old_test_triples(ds, split)
    common = {"dataset": ds.name, "model": args.model, "seed": seed, "held_out": len(split.held_out),
              "arrived": len(split.arrived), "ranked": len(split.ranked)}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        base = train(split.base, args, seed, Path(folder) / "base")
        trained = time.perf_counter() - start
        rows.append({**common, "method": "base", "status": "ok", "seconds": round(trained, 1),
                     "mrr_old": mrr_old(base, ds, old_test)})
        for method in args.methods:
            start = time.perf_counter()
            try:
                if method == "retrain":
                    model = train(np.concatenate([split.base, split.arrived]), args, seed, Path(folder) / method)
                else:
                    model = extended(base, method, split, args, seed)
                seconds = time.perf_counter() - start
                row = {**common, "method": method, **metrics(model, ds, split, old_test), "seconds": round(seconds, 2)}
                row["status"] = "ok" if all(math.isfinite(row[k]) for k in ("mrr", "hits10", "mrr_old")) else "failed"
            except Exception as e:  # reported as failed, never as a number
                row = {**common, "method": method, "status": "failed", "error": str(e).splitlines()[0]}
            rows.append(row)
    return rows


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over the seeds per method whose runs all succeeded (a method with a failed run: failed)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["method"], []).append(row)
    out = []
    for method, runs in groups.items():
        if any(r["status"] != "ok" for r in runs):
            out.append({"method": method, "status": "failed"})
            continue
        keys = [k for k in ("mrr", "hits10", "mrr_old", "seconds") if k in runs[0]]
        out.append({"method": method, "status": "ok", "seeds": len(runs),
                    **{k: round(statistics.median(r[k] for r in runs), 4) for k in keys}})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="umls", help="umls, kinships, nations (bundled) or fb15k237 (with "
                                                          "--data-root)")
    parser.add_argument("--data-root", help="folder holding the dataset's folder (e.g. ../shared/datasets)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--share", type=float, default=0.1, help="share of the entities held out")
    parser.add_argument("--known", type=float, default=0.5, help="share of their triples that arrive")
    parser.add_argument("--min-degree", type=int, default=4, help="held-out entities have at least this many triples")
    parser.add_argument("--model", default="complex")
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.1, help="training learning rate (adagrad)")
    parser.add_argument("--steps", type=int, default=300, help="fold-in steps")
    parser.add_argument("--foldin-lr", type=float, default=0.01)
    parser.add_argument("--unfreeze-epochs", type=int, default=5, help="0 skips the unfreeze method")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    args = parser.parse_args()
    if args.unfreeze_epochs == 0:
        args.methods = [m for m in args.methods if m != "unfreeze"]
    rows: list[dict[str, Any]] = []
    try:
        path = str(Path(args.data_root) / args.dataset) if args.data_root else None
        ds = load_dataset(args.dataset, path=path)
    except Exception as e:
        print(json.dumps({"dataset": args.dataset, "status": "failed", "error": str(e).splitlines()[0]}), flush=True)
        rows.append({"method": "-", "status": "failed"})
    else:
        for seed in range(args.seeds):
            try:
                found = run_seed(ds, args, seed)
            except Exception as e:
                found = [{"dataset": ds.name, "seed": seed, "method": "base", "status": "failed",
                          "error": str(e).splitlines()[0]}]
            for row in found:
                print(json.dumps(row), flush=True)
            rows += found
    table = summary(rows)
    failed = [r["method"] for r in table if r["status"] != "ok"]
    print(json.dumps({"summary": {"settings": vars(args), "medians": table, "status": "failed" if failed else "ok",
                                  "failed": failed}}), flush=True)


if __name__ == "__main__":
    main()
