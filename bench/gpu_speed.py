"""Training and evaluation speed on a GPU against the CPU, and in mixed CPU-GPU mode, on one dataset.

    python bench/gpu_speed.py --data-root DIR [--dataset fb15k237] [--epochs 2]

For each device side (``cpu``: the CPU with every core; ``cuda``; ``cuda`` with ``--mixed``, and with
``--async-update`` too), trains two configurations for ``--epochs`` epochs through the pipeline (no validation) and
times a full filtered evaluation of ``--eval-triples`` test triples: ComplEx 1vsAll with reciprocal relations (the
default recipe) and TransE with shared negatives and row-wise Adagrad (the mixed mode's configuration; ComplEx
1vsAll has no mixed side, as it scores every entity each step). Prints one JSON line per run
(``examples_per_second`` of training, ``eval_queries_per_second``) and a summary with the GPU's speedups. A run that
fails is ``"status": "failed"`` with its error, never a number. Without a GPU the cuda sides are reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from kgem.data import load_dataset
from kgem.pipeline import pipeline

CONFIGS: dict[str, dict[str, Any]] = {
    "complex-1vsall": {"model": {"name": "complex", "dim": 200},
                       "training": {"approach": "1vsall", "batch_size": 1000, "lr": 0.1}},
    "transe-shared": {"model": {"name": "transe", "dim": 200, "inverse": False},
                      "training": {"approach": "slcwa", "loss": "margin_ranking", "num_negatives": 256,
                                   "shared_negatives": True, "optimizer": "rowadagrad", "lr": 0.1,
                                   "batch_size": 2000, "regularizer": None}},
}
SIDES = {"cpu": {"device": "cpu"}, "cuda": {"device": "cuda"}, "cuda-mixed": {"device": "cuda", "mixed": True},
         "cuda-mixed-async": {"device": "cuda", "mixed": True, "async_update": True}}


def run(args: argparse.Namespace, name: str, side: str, test_size: int) -> dict[str, Any]:
    record: dict[str, Any] = {"config": name, "side": side}
    if side.startswith("cuda") and not torch.cuda.is_available():
        return {**record, "status": "skipped", "reason": "no CUDA device"}
    if side.startswith("cuda-mixed") and CONFIGS[name]["training"]["approach"] != "slcwa":
        return {**record, "status": "skipped", "reason": "mixed mode trains negative sampling only"}
    config = CONFIGS[name]
    training = {**config["training"], **SIDES[side], "epochs": args.epochs, "early_stopping": False}
    evaluation = {"fraction": min(1.0, args.eval_triples / test_size)}
    try:
        start = time.perf_counter()
        result = pipeline({"data": {"dataset": str(Path(args.data_root) / args.dataset)}, "model": config["model"],
                           "training": training, "evaluation": evaluation}, progress=False)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        speed = result.history.examples_per_second
        queries = len(result.evaluation.ranks) if result.evaluation is not None else 0
        evaluate = result.timings["evaluate"]
        if not (speed > 0 and evaluate > 0 and all(math.isfinite(loss) for loss in result.history.losses)):
            raise RuntimeError(f"bad measurement: speed {speed}, evaluation {evaluate} s, losses "
                               f"{result.history.losses}")
    except Exception as e:  # a failed run is reported as failed, never as a number
        return {**record, "status": "failed", "error": f"{type(e).__name__}: {e}",
                "trace": traceback.format_exc(limit=3)}
    return {**record, "status": "ok", "examples_per_second": round(speed, 1), "train_seconds":
            round(result.timings["train"], 2), "eval_queries_per_second": round(queries / evaluate, 1),
            "mrr": round(result.evaluation.mrr, 4) if result.evaluation is not None else None,
            "wall_seconds": round(time.perf_counter() - start, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    parser.add_argument("--dataset", default="fb15k237")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--eval-triples", type=int, default=4000)
    args = parser.parse_args()
    environment = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0)
                   if torch.cuda.is_available() else None, "cpu_threads": torch.get_num_threads()}
    print(json.dumps({"environment": environment}), flush=True)
    test_size = len(load_dataset(str(Path(args.data_root) / args.dataset)).test or [])
    records = []
    for name in CONFIGS:
        for side in SIDES:
            record = run(args, name, side, max(test_size, 1))
            print(json.dumps(record), flush=True)
            records.append(record)
    summary = {}
    for name in CONFIGS:
        by_side = {r["side"]: r for r in records if r["config"] == name and r["status"] == "ok"}
        if "cpu" in by_side:
            for side in ("cuda", "cuda-mixed", "cuda-mixed-async"):
                if side in by_side:
                    summary[f"{name} {side} training speedup"] = round(
                        by_side[side]["examples_per_second"] / by_side["cpu"]["examples_per_second"], 2)
                    summary[f"{name} {side} evaluation speedup"] = round(
                        by_side[side]["eval_queries_per_second"] / by_side["cpu"]["eval_queries_per_second"], 2)
    print(json.dumps({"summary": summary}), flush=True)


if __name__ == "__main__":
    main()
