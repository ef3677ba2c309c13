"""Time to quality: the test MRR that kgem's fast CPU recipe and PyKEEN 1.11.1 reach in the same wall-clock training
budget on this machine, with each side's validation MRR over time: JSON on stdout and in bench/out/time_to_quality,
and a PNG of the curves.

    .venv/bin/python bench/time_to_quality.py --budget 20m                          # FB15k-237, 20 minutes each
    .venv/bin/python bench/time_to_quality.py --dataset wn18rr --budget 60m --pykeen-experiment \
        rotate/sun2019_rotate_wn18rr.json                                        # WN18RR, a PyKEEN reproduction
    .venv/bin/python bench/time_to_quality.py --quick                                # smoke test: Nations, 20 s

Each round runs both sides one after the other (the order flips every round), each in its own process with the same
number of threads. kgem: ``kgem train --recipe R --time-budget B`` (its budget counts its validations). PyKEEN: by
default kgem's 20-minute recipe of the dataset as PyKEEN can express it (``compare/experiments``: ComplEx, LCWA,
reciprocal, N3, Adagrad; PyKEEN ships no ComplEx config for these datasets, and the reproductions it ships, e.g.
TuckER's, do not finish one epoch in 20 minutes on 2 cores), or any PyKEEN config (``--pykeen-experiment``), trained
by ``pipeline()`` for the same budget, validated every
``--pykeen-frequency`` epochs with its validation time left out of its budget, an epoch that outlasts 1.5x the
budget cut there (``compare/run_pykeen_budget.py``); both keep their best validated weights for the test. PyKEEN's
environment is built by ``compare/envs.py`` (as ``compare_pykeen.py`` builds it). A side that fails (an exception, a
NaN) is reported as failed, never as a number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from compare import envs  # noqa: E402 - bench/ is not a package

OUT = BENCH / "out" / "time_to_quality"
SHARED = BENCH.parents[1] / "shared" / "datasets"
BUNDLED = BENCH.parent / "src" / "kgem" / "data" / "bundled"
MIRRORS = BENCH / "compare" / "experiments"  # kgem's 20-minute recipe of a dataset as a PyKEEN config
DEFAULTS = {  # dataset: ({budget minutes: kgem's fast recipe for it}, PyKEEN experiment)
    "fb15k237": ({20: "fb15k237-complex-cpu20m", 60: "fb15k237-complex-cpu60m"}, "complex_lcwa_fb15k237.json"),
    "wn18rr": ({20: "wn18rr-complex-cpu20m", 60: "wn18rr-complex-cpu60m"}, "complex_lcwa_wn18rr.json"),
    "nations": ({20: "fb15k237-complex-cpu20m"}, "complex_lcwa_fb15k237.json"),
}


def fast_recipe(dataset: str, budget: float) -> str:
    """The dataset's fast CPU recipe for the longest budget that ``budget`` seconds cover (else the shortest)."""
    recipes = DEFAULTS[dataset][0]
    covered = [minutes for minutes in recipes if minutes * 60 <= budget]
    return recipes[max(covered) if covered else min(recipes)]


def cpu_name() -> str:
    """The CPU's model name where Linux says it (runs on two VMs differ by it), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fb15k237", choices=sorted(DEFAULTS))
    parser.add_argument("--data", type=Path, help="the dataset's folder (default: the shared datasets folder)")
    parser.add_argument("--budget", help="training budget per side: seconds, or 90s, 20m, 1h (default 20m; --quick: "
                                         "20s)")
    parser.add_argument("--recipe", help="kgem's recipe (default: the dataset's fast CPU recipe for the budget)")
    parser.add_argument("--pykeen-experiment", help="PyKEEN config: a file, one in bench/compare/experiments, or one "
                                                    "of PyKEEN's reproductions (relative to pykeen/experiments)")
    parser.add_argument("--pykeen-frequency", type=int, default=1, help="PyKEEN validates every this many epochs")
    parser.add_argument("--sides", default="kgem,pykeen", help="comma-separated: kgem, pykeen")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="Nations, 20 s per side: a smoke test")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.quick:
        args.dataset = "nations"
    args.budget = args.budget or ("20s" if args.quick else "20m")
    experiment = DEFAULTS[args.dataset][1]
    args.recipe = args.recipe or fast_recipe(args.dataset, seconds(args.budget))
    args.pykeen_experiment = args.pykeen_experiment or experiment
    if args.data is None:
        args.data = BUNDLED / "nations" if args.dataset == "nations" else SHARED / args.dataset
    return args


def seconds(text: str) -> float:
    """``1200``, ``90s``, ``20m``, ``1.5h`` as seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


def child_env(threads: int, pythonpath: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env["OMP_WAIT_POLICY"] = "PASSIVE"  # a waiting thread sleeps rather than spins (see compare_pykeen.py)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def run_kgem(args: argparse.Namespace, folder: Path, log: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "kgem", "train", "--recipe", args.recipe, "--data-path", str(args.data),
           "--time-budget", str(seconds(args.budget)), "--threads", str(args.threads), "--output", str(folder), "-q"]
    began = time.perf_counter()
    done = subprocess.run(cmd, env=child_env(args.threads, str(BENCH.parent / "src")), capture_output=True,
                          text=True)
    wall = time.perf_counter() - began
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        return {"status": "failed", "error": f"exit code {done.returncode}: {done.stderr.strip()[-400:]}"}
    losses = pd.read_csv(folder / "losses.csv")
    both = pd.read_csv(folder / "metrics.csv", index_col="side").loc["both"]
    curve = [{"seconds": float(row.seconds), "epoch": int(row.epoch), "valid_mrr": float(row.valid_mrr)}
             for row in losses.itertuples() if row.valid_mrr == row.valid_mrr]
    test = {metric: float(both[metric]) for metric in ("mrr", "hits@1", "hits@3", "hits@10")}
    if any(value != value for value in test.values()) or losses["loss"].isna().any():
        return {"status": "failed", "error": f"NaN in the results: {test}"}
    return {"status": "ok", "test": test, "curve": curve, "epochs": len(losses),
            "train_seconds": float(losses["seconds"].iloc[-1]), "wall_seconds": wall, "recipe": args.recipe}


def experiment_file(name: str, python: Path) -> Path:
    """``name`` as a file, else in bench/compare/experiments, else among PyKEEN's reproduction configs."""
    for candidate in (Path(name), MIRRORS / name):
        if candidate.is_file():
            return candidate.resolve()
    return next(python.parents[1].glob("lib/python*/site-packages/pykeen/experiments")) / name


def run_pykeen(args: argparse.Namespace, log: Path) -> dict[str, Any]:
    python = envs.create("pykeen")
    cmd = [str(python), "-m", "compare.run_pykeen_budget", "--data", str(args.data), "--budget",
           str(seconds(args.budget)), "--experiment", str(experiment_file(args.pykeen_experiment, python)), "--threads",
           str(args.threads), "--frequency", str(args.pykeen_frequency)]
    began = time.perf_counter()
    done = subprocess.run(cmd, env=child_env(args.threads, str(BENCH)), capture_output=True, text=True)
    log.write_text(done.stdout + done.stderr)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"status": "failed", "error": f"exit code {done.returncode}: {done.stderr.strip()[-400:]}"}
    record: dict[str, Any] = json.loads(lines[-1])
    record["wall_seconds"] = time.perf_counter() - began
    return record


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {}
    for side in sorted({r["side"] for r in records}):
        ok = [r for r in records if r["side"] == side and r["status"] == "ok"]
        summary[side] = {"runs": len(ok), "failed": sum(r["side"] == side for r in records) - len(ok)}
        if ok:
            for metric in ("mrr", "hits@1", "hits@10"):
                summary[side][f"median test {metric}"] = statistics.median(r["test"][metric] for r in ok)
            summary[side]["median epochs"] = statistics.median(r["epochs"] for r in ok)
    return summary


def plot(records: list[dict[str, Any]], title: str, path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), dpi=120)
    axes = figure.add_subplot()
    colours = {"kgem": "tab:blue", "pykeen": "tab:orange"}
    for r in records:
        if r["status"] != "ok" or not r["curve"]:
            continue
        minutes = [point["seconds"] / 60 for point in r["curve"]]
        label = f"{r['side']} (round {r['round']}): test MRR {r['test']['mrr']:.3f}"
        axes.plot(minutes, [point["valid_mrr"] for point in r["curve"]], marker="o", markersize=3,
                  color=colours.get(r["side"]), label=label)
    axes.set_xlabel("training time (minutes)")
    axes.set_ylabel("validation MRR (filtered)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    sides = [s for s in args.sides.split(",") if s]
    records = []
    for round_ in range(1, args.rounds + 1):
        for side in sides if round_ % 2 else sides[::-1]:
            log = args.out / f"{stamp}-{side}-{round_}.log"
            if side == "kgem":
                record = run_kgem(args, args.out / f"{stamp}-kgem-{round_}", log)
            else:
                record = run_pykeen(args, log)
            record |= {"side": side, "round": round_, "log": str(log)}
            print(json.dumps(record), file=sys.stderr)
            records.append(record)
    result = {"dataset": args.dataset, "budget_seconds": seconds(args.budget), "threads": args.threads,
              "rounds": args.rounds, "recipe": args.recipe, "pykeen_experiment": args.pykeen_experiment,
              "machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
              "summary": summarise(records), "records": records}
    (args.out / f"{stamp}.json").write_text(json.dumps(result, indent=1))
    plot(records, f"{args.dataset}: validation MRR over {args.budget} of training, {args.threads} threads",
         args.out / f"{stamp}.png")
    result["png"] = str(args.out / f"{stamp}.png")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
