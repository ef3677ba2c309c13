"""A graph of DGL-KE's Wikidata shape, end to end in bounded memory: generate, import, train, evaluate.

    .venv/bin/python bench/large_graph.py                                   # quick: 200k entities, 600k triples
    .venv/bin/python bench/large_graph.py --entities 40000000 --triples 120000000 --dim 100   # DGL-KE's size

Steps, each in a fresh process whose peak resident memory (``ru_maxrss``) is reported:

1. **generate** ``--triples`` label triples over ``--entities`` entities and ``--relations`` relations (default
   1,213), heads, tails and relations drawn from power laws (Zipf exponents ``--alpha``), every entity in at least
   one triple, as a TSV file;
2. **import** it with ``kgem import`` (a seeded 99.8 / 0.1 / 0.1 split, nothing unseen, leakage counted);
3. **train** TransE (L2) with shared negatives and row-wise Adagrad, the entity table mapped to a file
   (``--storage mapped``), for ``--epochs`` epochs (one epoch: every training triple once): partitioned
   (PyTorch-BigGraph's scheme, ``--partitions`` P, default 8: P x P buckets in the affinity order, negatives from
   the bucket's partitions, only the current bucket's two partitions in memory), or with ``--partitions 0`` the
   whole table paged by the OS (``--resident-mb`` bounds its resident pages); its triples per second, and the
   table's size on disk against the process's peak memory;
4. **evaluate** ``--eval-triples`` test triples: sampled (``--eval-negatives`` candidates drawn uniformly, and
   drawn in proportion to training degree; each with the full-ranking estimate and its interval) and exact
   filtered, on the same triples, and whether each interval holds the exact MRR.

Prints one JSON line per step and a summary; a step that fails (non-zero exit, a missing number) is reported as
failed with its error, never as a number. Files go to ``--work`` (default: a temporary folder, removed after).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

RUN = """
import json, resource, sys
from kgem.cli import main
code = main(sys.argv[1:])
print(json.dumps({"maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), file=sys.stderr)
sys.exit(code)
"""


def generate(path: Path, entities: int, relations: int, triples: int, alpha: float, seed: int) -> None:
    """Power-law heads, tails and relations, written a million lines at a time. Every entity names at least one
    triple, as in a real graph (Zipf draws alone leave a tenth of 40M entities out): the first ``entities``
    triples' heads go through all of them once, in a random order; every other head and every tail is drawn."""
    rng = np.random.default_rng(seed)
    entity_cdf = _zipf_cdf(entities, alpha)
    relation_cdf = _zipf_cdf(relations, alpha)
    shuffle = rng.permutation(entities)  # the popular entities are spread over the id range
    every = rng.permutation(entities)
    with open(path, "w") as f:
        for start in range(0, triples, 1_000_000):
            n = min(1_000_000, triples - start)
            h = shuffle[np.searchsorted(entity_cdf, rng.random(n))]
            listed = every[start : start + n]
            h[: len(listed)] = listed
            t = shuffle[np.searchsorted(entity_cdf, rng.random(n))]
            r = np.searchsorted(relation_cdf, rng.random(n))
            lines = np.char.add(np.char.add(np.char.add(np.char.add("e", h.astype(str)), "\tr"),
                                            np.char.add(r.astype(str), "\te")), t.astype(str))
            f.write("\n".join(lines.tolist()) + "\n")


def _zipf_cdf(n: int, alpha: float) -> np.ndarray:
    weights = np.arange(1, n + 1, dtype=np.float64) ** -alpha
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    cdf[-1] = 1.0 + 1e-12  # searchsorted of a draw in [0, 1) never runs past the end
    return cdf


def run_kgem(args: list[str]) -> dict[str, Any]:
    """``kgem ARGS`` in a fresh process: exit code, seconds, peak memory, stdout."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True, check=False)
    record: dict[str, Any] = {"seconds": round(time.perf_counter() - start, 1), "stdout": done.stdout}
    err = done.stderr.strip().splitlines()
    lines = [line for line in err if line.startswith('{"maxrss_kib"')]
    if done.returncode != 0 or not lines:
        said = [line for line in err if not line.startswith('{"maxrss_kib"')] or ["no output"]
        return {**record, "status": "failed", "error": said[-1]}
    return {**record, "status": "ok", "peak_rss_gib": round(json.loads(lines[-1])["maxrss_kib"] / 2**20, 3)}


def step(name: str, record: dict[str, Any], **extra: Any) -> dict[str, Any]:
    out = {"step": name, **{k: v for k, v in record.items() if k != "stdout"}, **extra}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--relations", type=int, default=1213)
    parser.add_argument("--triples", type=int, default=600_000)
    parser.add_argument("--alpha", type=float, default=0.8, help="Zipf exponent of the degree power law")
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--negatives", type=int, default=256)
    parser.add_argument("--eval-triples", type=int, default=500)
    parser.add_argument("--eval-negatives", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=8, help="entity partitions of partitioned training (0: "
                                                                  "none, the whole table paged by the OS)")
    parser.add_argument("--resident-mb", type=int, help="model.storage_resident_mb: hand the table's pages back "
                                                          "whenever training holds more than this")
    parser.add_argument("--eval-budget-mb", type=int, default=1024, help="MB of one block of scores in evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="a dataset folder an earlier run imported (kept with --work): skip the "
                                       "generate and import steps")
    parser.add_argument("--work", help="folder for the files (kept); default: a temporary one, removed")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="kgem-large-"))
    work.mkdir(parents=True, exist_ok=True)
    steps: list[dict[str, Any]] = []
    try:
        steps = run_steps(args, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    failed = [s["step"] for s in steps if s.get("status") != "ok"]
    peaks = [s["peak_rss_gib"] for s in steps if "peak_rss_gib" in s]
    unused = {"work"} | ({"entities", "relations", "triples", "alpha"} if args.data else set())  # --data: its own
    summary = {"settings": {k: v for k, v in vars(args).items() if k not in unused},
               "status": "failed" if failed else "ok", "failed_steps": failed,
               "max_peak_rss_gib": max(peaks) if peaks else None,
               "total_seconds": round(sum(s.get("seconds", 0.0) for s in steps), 1),
               **{s["step"]: {k: v for k, v in s.items() if k != "step"} for s in steps}}
    print(json.dumps({"summary": summary}), flush=True)


def run_steps(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    steps = []
    run = work / "run"
    if args.data:  # a folder an earlier run imported: train and evaluate only
        data = Path(args.data)
        meta = json.loads((data / "dataset.json").read_text())
        report = {"rows": {split: info["rows"] for split, info in meta["splits"].items()},
                  "num_entities": meta["num_entities"]}
    else:
        data, generated = work / "data", _generate_and_import(args, work, steps)
        if generated is None:
            return steps
        report = generated
    test_rows = report["rows"].get("test", 0)
    fraction = min(1.0, args.eval_triples / max(test_rows, 1))
    trained = run_kgem(["train", "--dataset", str(data), "--model", "transe", "--set", "model.args.p=2", "--set",
                        "model.inverse=false", "--dim", str(args.dim), "--storage", "mapped", "--approach", "slcwa",
                        "--loss", "margin_ranking", "--margin", "1", "--num-negatives", str(args.negatives),
                        "--set", "training.shared_negatives=true", "--optimizer", "rowadagrad", "--lr", "0.1",
                        "--set", "training.regularizer=null", "--batch-size", str(args.batch_size), "--epochs",
                        str(args.epochs), "--set", "training.early_stopping=false", "--eval-fraction",
                        f"{fraction:.6g}", "--eval-negatives", str(args.eval_negatives), "--set",
                        f"evaluation.memory_budget_mb={args.eval_budget_mb}", "--seed", str(args.seed), "--output",
                        str(run), "-q", *partitioned(args.partitions),
                        *(["--set", f"model.storage_resident_mb={args.resident_mb}"] if args.resident_mb else [])])
    if trained["status"] == "ok":
        extra = json.loads((run / "model" / "config.json").read_text())["extra"]["training"]
        speed = float(extra["examples_per_second"])
        if not math.isfinite(speed) or speed <= 0:
            trained.update(status="failed", error=f"examples per second {speed}")
        table = run / "tables" / "table-0.f32"
        table_gib = table.stat().st_size / 2**30 if table.exists() else 0.0
        state_gib = report["num_entities"] * 4 / 2**30  # row-wise Adagrad: one float per entity
        trained.update(num_entities=report["num_entities"], train_triples=report["rows"]["train"],
                       triples_per_second=round(speed, 1), train_seconds=round(float(extra["seconds"]), 1),
                       table_gib=round(table_gib, 3), optimizer_state_gib=round(state_gib, 3),
                       table_and_state_gib=round(table_gib + state_gib, 3))
        shutil.rmtree(run / "checkpoints", ignore_errors=True)  # the saved model is what the rest reads: disk
    steps.append(step("train", trained))
    if trained["status"] != "ok":
        return steps
    return steps + evaluate_steps(args, run, fraction)


def evaluate_steps(args: argparse.Namespace, run: Path, fraction: float) -> list[dict[str, Any]]:
    """The evaluate steps: sampled (uniform and degree-proportional), each interval checked against the exact MRR,
    and exact, on the same test triples, the saved model memory-mapped."""
    steps: list[dict[str, Any]] = []
    common = ["evaluate", str(run / "model"), "--eval-fraction", f"{fraction:.6g}", "--seed", str(args.seed),
              "--mmap", "--memory-budget-mb", str(args.eval_budget_mb)]
    samplers = {"evaluate_sampled": "uniform", "evaluate_sampled_degree": "degree"}
    sampled = {name: run_kgem([*common, "--eval-negatives", str(args.eval_negatives), "--eval-sampler", how])
               for name, how in samplers.items()}
    exact = run_kgem([*common, "--eval-negatives", "0"])
    mrr = _exact_mrr(exact)
    if mrr is None and exact["status"] == "ok":
        exact.update(status="failed", error="no MRR in the evaluation's output")
    for name, record in sampled.items():
        estimate = _estimate(record)
        if estimate is None and record["status"] == "ok":
            record.update(status="failed", error="no full-ranking estimate in the evaluation's output")
        holds = None if estimate is None or mrr is None else estimate["low"] <= mrr <= estimate["high"]
        steps.append(step(name, record, mrr_estimate=estimate, interval_holds_exact=holds))
    steps.append(step("evaluate_exact", exact, mrr=mrr))
    return steps


def _generate_and_import(args: argparse.Namespace, work: Path, steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The generate and import steps; the import's report, or None if it failed."""
    source, data = work / "graph.tsv", work / "data"
    start = time.perf_counter()
    generate(source, args.entities, args.relations, args.triples, args.alpha, args.seed)
    steps.append(step("generate", {"status": "ok", "seconds": round(time.perf_counter() - start, 1)},
                      file_gib=round(source.stat().st_size / 2**30, 3)))
    imported = run_kgem(["import", str(source), "-o", str(data), "--split", "0.998", "0.001", "0.001",
                         "--seed", str(args.seed)])
    report = None
    if imported["status"] == "ok":
        report = json.loads(imported["stdout"])
        imported.update(rows=report["rows"], num_entities=report["num_entities"],
                        test_leakage=report["leakage"].get("test"))
    steps.append(step("import", imported))
    if imported["status"] != "ok":
        return None
    source.unlink()  # the import is what the rest reads
    return report


def partitioned(partitions: int) -> list[str]:
    """The training flags of partitioned training with ``partitions`` partitions (none for 0)."""
    if partitions <= 0:
        return []
    return ["--distributed", "sharded", "--shard-negatives", "bucket", "--bucket-order", "affinity", "--partitions",
            str(partitions)]


def _estimate(record: dict[str, Any]) -> dict[str, float] | None:
    """The MRR row of the printed full-ranking estimate."""
    lines = record.get("stdout", "").splitlines()
    for i, line in enumerate(lines):
        if line.startswith("full-ranking metrics estimated"):
            for row in lines[i + 1 :]:
                parts = row.split()
                if parts and parts[0] == "mrr":
                    return {"estimate": float(parts[1]), "low": float(parts[2]), "high": float(parts[3])}
    return None


def _exact_mrr(record: dict[str, Any]) -> float | None:
    for line in record.get("stdout", "").splitlines():
        parts = line.split()
        if parts and parts[0] == "both":
            return float(parts[2])
    return None


if __name__ == "__main__":
    main()
