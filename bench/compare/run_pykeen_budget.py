"""PyKEEN 1.11.1 trained for a wall-clock budget (runs in bench/.envs/pykeen): one JSON line on stdout.

    PYTHONPATH=bench bench/.envs/pykeen/bin/python -m compare.run_pykeen_budget --data DIR --budget 1200 \
        --experiment EXPERIMENT.json --threads 2

The model, loss, optimizer, training loop and their settings come from one of PyKEEN's own reproduction configs
(``pykeen/experiments/*/*.json``, its "pipeline" section) and PyKEEN's ``pipeline()`` trains it on the dataset's
label files (valid/test triples with an entity or relation unseen in train are dropped, as kgem drops them). A
training callback validates every ``--frequency`` epochs (filtered MRR on the validation triples, PyKEEN's
``RankBasedEvaluator``), keeps the best validated weights, and ends training once ``--budget`` seconds of training
have passed: at the first epoch boundary past it, as kgem's ``--time-budget`` stops, or, when one epoch outlasts
the budget by more than ``--grace`` of it, at the first batch past that (the partial epoch is validated too, so a
slow configuration still gets a number). The best validated weights are
then restored and evaluated on the test triples (filtered by train and valid, as kgem does). Validation time is NOT
counted in the budget, nor is PyKEEN's set-up before its first batch (PyKEEN's evaluation is much slower than
kgem's; kgem's budget counts its validations), so the budget is generous to PyKEEN. The output: the test metrics,
the validation curve (training seconds, epoch, MRR, and the batches of a partial epoch), epochs, timings, and
"status": "ok" or "failed" with the error.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with train.txt, valid.txt, test.txt")
    parser.add_argument("--experiment", required=True, help="a PyKEEN reproduction config (JSON)")
    parser.add_argument("--budget", type=float, required=True, help="seconds of training")
    parser.add_argument("--frequency", type=int, default=1, help="validate every this many epochs")
    parser.add_argument("--grace", type=float, default=0.5,
                        help="an epoch still running at (1 + grace) x budget seconds is cut there")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-batch-size", type=int, default=256)
    parser.add_argument("--max-valid", type=int, default=0, help="validate on this many triples (0: all)")
    return parser.parse_args(argv)


def factories(data: Path) -> tuple[Any, Any, Any]:
    from pykeen.triples import TriplesFactory

    def split(name: str) -> Path:
        found = sorted(data.glob(f"{name}.*"))
        if not found:
            raise FileNotFoundError(f"{data} has no {name}.* file")
        return found[0]

    train = TriplesFactory.from_path(split("train"), create_inverse_triples=False)
    maps = {"entity_to_id": train.entity_to_id, "relation_to_id": train.relation_to_id}
    return train, TriplesFactory.from_path(split("valid"), **maps), TriplesFactory.from_path(split("test"), **maps)


def with_inverse(train: Any) -> Any:
    from pykeen.triples import TriplesFactory

    return TriplesFactory(mapped_triples=train.mapped_triples, entity_to_id=train.entity_to_id,
                          relation_to_id=train.relation_to_id, create_inverse_triples=True)


class BudgetSpent(Exception):
    """Raised by the budget callback to end PyKEEN's training loop, at an epoch boundary or mid-epoch."""


def metrics(result: Any) -> dict[str, float]:
    return {name: float(result.get_metric(key)) for name, key in (
        ("mrr", "both.realistic.inverse_harmonic_mean_rank"), ("hits@1", "both.realistic.hits_at_1"),
        ("hits@3", "both.realistic.hits_at_3"), ("hits@10", "both.realistic.hits_at_10"))}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.pipeline import pipeline
    from pykeen.training.callbacks import TrainingCallback

    torch.set_num_threads(args.threads)
    config = json.loads(Path(args.experiment).read_text())["pipeline"]
    train, valid, test = factories(Path(args.data))
    if config.get("dataset_kwargs", {}).get("create_inverse_triples"):
        train = with_inverse(train)
    valid_triples = valid.mapped_triples
    if args.max_valid:
        valid_triples = valid_triples[torch.randperm(len(valid_triples), generator=torch.Generator().manual_seed(0))
                                      [: args.max_valid]]
    known = [train.mapped_triples, valid.mapped_triples]
    curve: list[dict[str, float]] = []
    state: dict[str, Any] = {"best": -1.0, "weights": None, "trained": 0.0, "validating": 0.0, "epochs": 0,
                             "model": None}

    def evaluate(model: Any, triples: Any) -> dict[str, float]:
        return metrics(RankBasedEvaluator(filtered=True).evaluate(
            model, triples, additional_filter_triples=known, use_tqdm=False, batch_size=args.eval_batch_size))

    class Budget(TrainingCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.mark = math.nan  # the clock starts at the first batch: PyKEEN's set-up is not charged
            self.batches = 0

        def pre_batch(self, **kwargs: Any) -> None:
            if math.isnan(self.mark):
                self.mark = time.perf_counter()

        def spend(self, budget: float) -> bool:
            """Count the training time since the last mark; whether ``budget`` seconds are spent."""
            state["trained"] += time.perf_counter() - self.mark
            self.mark = time.perf_counter()
            return bool(state["trained"] >= budget)

        def validate(self, epoch: int, batches: int = 0) -> None:
            began = time.perf_counter()
            mrr = evaluate(self.model, valid_triples)["mrr"]
            point: dict[str, float] = {"seconds": state["trained"], "epoch": epoch, "valid_mrr": mrr}
            if batches:
                point["batches"] = batches  # a partial epoch: this many batches of it
            curve.append(point)
            if mrr > state["best"]:
                state["best"], state["weights"] = mrr, copy.deepcopy(self.model.state_dict())
            state["validating"] += time.perf_counter() - began
            self.mark = time.perf_counter()

        def stop(self) -> None:
            state["model"] = self.model
            if state["weights"] is not None:
                self.model.load_state_dict(state["weights"])
            raise BudgetSpent

        def post_batch(self, epoch: int, batch: Any, **kwargs: Any) -> None:
            self.batches += 1
            if self.spend(args.budget * (1 + args.grace)):
                self.validate(epoch, self.batches)
                self.stop()

        def post_epoch(self, epoch: int, epoch_loss: float, **kwargs: Any) -> None:
            over = self.spend(args.budget)
            state["epochs"], self.batches = epoch, 0
            if not math.isfinite(epoch_loss):
                raise FloatingPointError(f"loss {epoch_loss} at epoch {epoch}")
            if epoch % args.frequency == 0 or over:
                self.validate(epoch)
            if over:
                self.stop()

    training_kwargs = dict(config.get("training_kwargs", {}))
    training_kwargs.update(num_epochs=100_000, callbacks=[Budget()], use_tqdm=False)
    kept = {k: v for k, v in config.items() if k not in ("training_kwargs", "evaluator_kwargs", "evaluation_kwargs",
                                                          "stopper", "stopper_kwargs", "dataset", "dataset_kwargs")}
    began = time.perf_counter()
    try:
        pipeline(training=train, validation=valid, testing=test, training_kwargs=training_kwargs, random_seed=0,
                 **kept)
    except BudgetSpent:
        pass
    else:
        raise RuntimeError("PyKEEN's training ended before the budget was spent")
    test_metrics = evaluate(state["model"], test.mapped_triples)
    wall = time.perf_counter() - began
    return {"status": "ok", "test": test_metrics, "curve": curve, "epochs": state["epochs"],
            "train_seconds": state["trained"], "validation_seconds": state["validating"], "wall_seconds": wall,
            "model": config.get("model"), "training_loop": config.get("training_loop"),
            "experiment": Path(args.experiment).name}


def main() -> None:
    args = parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    try:
        record = run(args)
        if not all(math.isfinite(v) for v in record["test"].values()):
            record = {"status": "failed", "error": f"non-finite test metrics {record['test']}"}
    except Exception as e:  # reported as a failed run, never as a number
        traceback.print_exc(file=sys.stderr)
        record = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(record))


if __name__ == "__main__":
    main()
