"""Numeric values on edges: FocusE and the weighted loss against the plain model, on the two ends of the test split.

    .venv/bin/python bench/focuse.py                                     # the noisy-confidence fixture, 3 seeds
    .venv/bin/python bench/focuse.py --datasets ppi5k cn15k --data-root ~/ampligraph_datasets --epochs 200

For each dataset, loss, model and seed, trains three models with the same settings and data order:
- ``plain``: the edge values ignored (``training.edge_weights: ignore``);
- ``loss``: each edge's loss terms weighed by its value (DGL-KE's edge importance, PyTorch-BigGraph's weight);
- ``focuse``: FocusE (Pai and Costabello 2021, AmpliGraph's layer) modulating the scores by the values.
Then ranks (filtered, both sides) the whole test split and its tenth of highest values (``top``) and of lowest
values (``bottom``), as AmpliGraph evaluates FocusE: a model that reads the values should rank ``top`` higher and
``bottom`` lower, so ``delta = MRR(top) - MRR(bottom)`` is the number to raise. Prints one JSON line per run, then
the medians over seeds per (dataset, loss, model, mode); a run that fails is reported as failed, never as a number.

The default dataset is ``kgem.data.numeric.noisy_confidences``: a hidden bilinear model's facts with high values
plus random noise edges with low values (as an extracted graph holds wrong facts its extractor doubted), so ``top``
are inferable facts and ``bottom`` noise. The registered sets (``onet20k``, ``ppi5k``, ``nl27k``, ``cn15k``) need
their download (``--data-root`` for a local copy). The default settings follow the FocusE paper's experiment
configuration, scaled to a CPU: Adam, 30 negatives, the softplus non-linearity, an L3 regulariser, ``stop_epoch`` two
thirds of the epochs (the paper decays over 200-800 of its epochs), and both of AmpliGraph's usual losses, the NLL
(``softplus``) and the pairwise margin (``margin_ranking``), as the loss decides how FocusE fares: FocusE scales a
high-value positive's score (and so its gradient) down to the structural weight and its negatives' up, so with the
NLL it mostly trains the low-value edges' positives, while the margin loss keeps pushing until every positive
clears its negatives by the margin.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from kgem.data import load_dataset
from kgem.data.dataset import Dataset
from kgem.data.numeric import noisy_confidences
from kgem.pipeline import pipeline, run_evaluation

MODES = ("plain", "loss", "focuse")


def dataset(name: str, args: argparse.Namespace) -> Dataset:
    if name == "noisy":
        return noisy_confidences(args.data_seed)
    return load_dataset(name, path=str(Path(args.data_root) / name) if args.data_root else None)


def config(model: str, mode: str, seed: int, args: argparse.Namespace, loss: str = "softplus") -> dict[str, Any]:
    training: dict[str, Any] = {
        "approach": "slcwa", "loss": loss, "optimizer": "adam", "lr": args.lr, "epochs": args.epochs,
        "batch_size": args.batch_size, "num_negatives": args.negatives, "early_stopping": False, "seed": seed,
        "regularizer": "lp", "regularizer_args": {"weight": args.regularizer_weight, "p": 3},
        "edge_weights": {"plain": "ignore", "loss": "loss", "focuse": "focuse"}[mode]}
    if mode == "focuse":
        training["focuse_args"] = {"non_linearity": args.non_linearity,
                                   "stop_epoch": args.stop_epoch or max(1, round(2 * args.epochs / 3)),
                                   "structural_wt": args.structural_wt}
    return {"model": {"name": model, "dim": args.dim}, "training": training}


def ends(ds: Dataset, share: float) -> dict[str, torch.Tensor]:
    """The whole test split and its tenth (``share``) of highest and of lowest values."""
    assert ds.test is not None and ds.test.weights is not None, "the test split needs a value per edge"
    order = torch.argsort(ds.test.weights, stable=True)
    count = max(1, round(share * len(order)))
    return {"all": ds.test.hrt, "top": ds.test.hrt[order[-count:]], "bottom": ds.test.hrt[order[:count]]}


def run(ds: Dataset, model: str, mode: str, seed: int, args: argparse.Namespace,
        loss: str = "softplus") -> dict[str, Any]:
    start = time.perf_counter()
    result = pipeline(config(model, mode, seed, args, loss), data=ds, progress=False)
    row: dict[str, Any] = {"dataset": ds.name, "loss": loss, "model": model, "mode": mode, "seed": seed}
    for part, hrt in ends(ds, args.share).items():
        metrics = run_evaluation(result.model, ds, hrt, result.config.evaluation)
        row[f"mrr_{part}"], row[f"hits10_{part}"] = round(metrics.mrr, 4), round(metrics.hits_at(10), 4)
    row["delta_mrr"] = round(row["mrr_top"] - row["mrr_bottom"], 4)
    numbers = [v for k, v in row.items() if k.startswith(("mrr", "hits", "delta"))]
    row["status"] = "ok" if all(math.isfinite(v) for v in numbers) else "failed"
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over the seeds of each (dataset, loss, model, mode) whose runs all succeeded."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row.get("loss", "-"), row["model"], row["mode"]), []).append(row)
    out = []
    for (name, loss, model, mode), runs in groups.items():
        if any(r["status"] != "ok" for r in runs):
            out.append({"dataset": name, "loss": loss, "model": model, "mode": mode, "status": "failed"})
            continue
        keys = [k for k in runs[0] if k.startswith(("mrr", "hits", "delta"))]
        out.append({"dataset": name, "loss": loss, "model": model, "mode": mode, "status": "ok", "seeds": len(runs),
                    **{k: round(statistics.median(r[k] for r in runs), 4) for k in keys}})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["noisy"], help="noisy (the fixture) or registered names")
    parser.add_argument("--data-root", help="folder holding the registered datasets (each in a subfolder)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the noisy fixture")
    parser.add_argument("--models", nargs="+", default=["transe", "distmult", "complex"])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per setting (medians reported)")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--losses", nargs="+", default=["softplus", "margin_ranking"],
                        help="softplus is AmpliGraph's nll, margin_ranking its pairwise")
    parser.add_argument("--negatives", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--regularizer-weight", type=float, default=1e-3)
    parser.add_argument("--non-linearity", default="softplus")
    parser.add_argument("--stop-epoch", type=int, default=None, help="FocusE decay length (default 2/3 of epochs)")
    parser.add_argument("--structural-wt", type=float, default=0.001)
    parser.add_argument("--share", type=float, default=0.1, help="the tenth of test called top and bottom")
    args = parser.parse_args()
    rows = []
    for name in args.datasets:
        try:
            ds = dataset(name, args)
        except Exception as e:  # reported as failed, never as a number
            print(json.dumps({"dataset": name, "status": "failed", "error": str(e).splitlines()[0]}), flush=True)
            rows.append({"dataset": name, "model": "-", "mode": "-", "status": "failed"})
            continue
        for loss in args.losses:
            for model in args.models:
                for seed in range(args.seeds):
                    for mode in args.modes:
                        try:
                            row = run(ds, model, mode, seed, args, loss)
                        except Exception as e:
                            row = {"dataset": ds.name, "loss": loss, "model": model, "mode": mode, "seed": seed,
                                   "status": "failed", "error": str(e).splitlines()[0]}
                        print(json.dumps(row), flush=True)
                        rows.append(row)
    table = summary(rows)
    failed = [f"{r['dataset']}/{r['model']}/{r['mode']}" for r in table if r["status"] != "ok"]
    print(json.dumps({"summary": {"settings": vars(args), "medians": table,
                                  "status": "failed" if failed else "ok", "failed": failed}}), flush=True)


if __name__ == "__main__":
    main()
