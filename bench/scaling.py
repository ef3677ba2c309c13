"""Throughput of multi-process training: 1 process against ``--nproc 2``, replicated (exact) and sharded
(PyTorch-BigGraph's buckets), and HOGWILD workers (the single-process way to use two cores), on the same data,
model and batch, alternating, several rounds.

    .venv/bin/python bench/scaling.py                          # FB15k-237, TransE and ComplEx, shared negatives
    .venv/bin/python bench/scaling.py --quick                  # nations, tiny: every path runs, about a minute

Each run is ``kgem train`` as a user starts it (a fresh process: ``--threads 1`` for one process, ``--nproc 2``
for two, with ``--distributed sharded`` for the sharded mode, ``--workers 2`` for HOGWILD), training ``--epochs``
epochs without validation. Its throughput is the training triples times the epochs over the training seconds, as
the run folder records them (``training`` in the saved model's ``config.json``: loading the data and the final
evaluation are left out). The sides alternate
within each round, so a noisy neighbour slows all of them alike; medians over ``--rounds`` rounds. A run that fails
(non-zero exit, a missing or non-finite time) is reported as failed, never as a number.

Configurations: PyTorch-BigGraph-style shared negatives (one set of ``--negatives`` entities per batch), margin
ranking, row-wise Adagrad (sparse gradients: the two processes exchange only the rows a batch touches), for TransE
(L2) and ComplEx. Prints one JSON line per run, then the summary as JSON and a markdown table, written to
``bench/out/scaling/results-<time>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"

MODELS = {"transe": ["--model", "transe", "--set", "model.args.p=2"], "complex": ["--model", "complex"]}
SIDES = {"1 process": ["--threads", "1"], "2 processes": ["--nproc", "2"],
         "2 processes, sharded": ["--nproc", "2", "--distributed", "sharded"], "HOGWILD 2 workers": ["--workers", "2"]}


def command(args: argparse.Namespace, model: str, side: str, out: Path) -> list[str]:
    dataset = str(DATA / args.dataset) if (DATA / args.dataset).is_dir() else args.dataset
    return [sys.executable, "-m", "kgem", "train", "--dataset", dataset, *MODELS[model], "--dim", str(args.dim),
            "--approach", "slcwa", "--loss", "margin_ranking", "--margin", "1", "--num-negatives",
            str(args.negatives), "--set", "training.shared_negatives=true", "--optimizer", "rowadagrad", "--lr",
            "0.1", "--set", "model.inverse=false", "--set", "training.regularizer=null", "--batch-size",
            str(args.batch_size), "--epochs", str(args.epochs), "--set", "training.early_stopping=false",
            "--eval-fraction", "0.001", "-q", *SIDES[side], "--output", str(out)]


def run_one(args: argparse.Namespace, model: str, side: str, round_: int) -> dict[str, Any]:
    """One training run in a fresh process; its examples per second, or status failed with the reason."""
    record: dict[str, Any] = {"model": model, "side": side, "round": round_}
    with tempfile.TemporaryDirectory(prefix="kgem-scaling-") as folder:
        out = Path(folder) / "run"
        start = time.perf_counter()
        done = subprocess.run(command(args, model, side, out), capture_output=True, text=True, check=False)
        record["wall_seconds"] = round(time.perf_counter() - start, 2)
        if done.returncode != 0:
            return {**record, "status": "failed", "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
        try:
            trained = json.loads((out / "model" / "config.json").read_text())["extra"]["training"]
            speed, epochs = float(trained["examples_per_second"]), int(trained["epochs"])
        except (OSError, KeyError, ValueError, TypeError) as e:
            return {**record, "status": "failed", "error": f"no training record in the run folder: {e}"}
    if not (math.isfinite(speed) and speed > 0 and epochs == args.epochs):
        return {**record, "status": "failed", "error": f"examples per second {speed}, epochs trained {epochs}"}
    return {**record, "status": "ok", "examples_per_second": round(speed, 1)}


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for model in MODELS:
        base = None
        for side in SIDES:
            ok = [r["examples_per_second"] for r in records if r["model"] == model and r["side"] == side
                  and r["status"] == "ok"]
            failed = sum(1 for r in records if r["model"] == model and r["side"] == side and r["status"] != "ok")
            median = statistics.median(ok) if ok else None
            if side == "1 process":
                base = median
            speedup = round(median / base, 2) if median is not None and base else None
            rows.append({"model": model, "side": side, "runs": len(ok), "failed": failed,
                         "examples_per_second": median, "speedup": speedup})
    return rows


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [f"{args.dataset}, dim {args.dim}, batch {args.batch_size}, {args.negatives} shared negatives, "
             f"{args.epochs} epochs, median of {args.rounds} rounds", "",
             "| model | side | triples/s | vs 1 process | runs ok | failed |", "|---|---|---|---|---|---|"]
    for r in rows:
        speed = "failed" if r["examples_per_second"] is None else f"{r['examples_per_second']:,.0f}"
        ratio = "–" if r["speedup"] is None else f"{r['speedup']:.2f}x"
        lines.append(f"| {r['model']} | {r['side']} | {speed} | {ratio} | {r['runs']} | {r['failed']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fb15k237")
    parser.add_argument("--dim", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--negatives", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "scaling"))
    parser.add_argument("--quick", action="store_true", help="nations, dim 16, 2 epochs, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.dataset, args.dim, args.epochs, args.rounds, args.batch_size = "nations", 16, 2, 1, 256
    records = []
    for round_ in range(1, args.rounds + 1):
        for model in MODELS:
            order = list(SIDES) if round_ % 2 else list(reversed(SIDES))  # alternate who goes first
            for side in order:
                record = run_one(args, model, side, round_)
                print(json.dumps(record), flush=True)
                records.append(record)
    rows = summarise(records)
    text = table(rows, args)
    print(json.dumps({"summary": rows}))
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    (out / f"results-{stamp}.json").write_text(json.dumps({"settings": settings, "runs": records,
                                                           "summary": rows}, indent=2) + "\n")
    (out / f"results-{stamp}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
