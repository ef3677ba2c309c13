"""kgem side by side with PyKEEN 1.11.1 and PyTorch-BigGraph 1.0.0 on FB15k-237: JSON and a markdown table.

    .venv/bin/python bench/compare_pykeen.py                      # everything, 3 rounds (the full run)
    .venv/bin/python bench/compare_pykeen.py --quick              # smoke test: seconds per measurement
    .venv/bin/python bench/compare_pykeen.py --configs C1,E1 --rounds 5

Creates the peers' environments (bench/.envs, idempotent), exports the data once, measures this machine's matmul
FLOP/s, then for each configuration and round runs kgem and each peer alternately (the order flips every round),
each in its own process with the same thread count. Results go to stdout and to bench/out/compare/results-*.json/.md.
See bench/README.md for what each configuration means and how to read the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from compare import envs
from compare.common import BENCH, DEFAULT_SOURCE, OUT, SETTINGS
from compare.export import export_data

REPO = BENCH.parent
# speed-up kgem should reach over each peer (the targets); None: reported without a target
TARGETS: dict[tuple[str, str], float | None] = {
    ("C1", "pykeen"): 10, ("C2", "pykeen"): 10, ("C3", "pykeen"): 10, ("C4", "pykeen"): 5,
    ("C1s", "pbg"): 1.5, ("C4s", "pbg"): 1.5, ("E1", "pykeen"): 20, ("E1", "pbg"): None, ("E2", "pykeen"): 20,
}
FULL = {"warmup": 10.0, "seconds": 60.0, "min_batches": 20, "eval_limit": 0}
QUICK = {"warmup": 1.0, "seconds": 3.0, "min_batches": 3, "eval_limit": 500}


def python_of(side: str) -> str:
    return sys.executable if side == "kgem" else str(envs.python_of(side))


def child_env(threads: int, wait_policy: str = "PASSIVE") -> dict[str, str]:
    """Thread counts for every side. OpenMP's wait policy: with the default (threads spin at barriers), a machine
    shared with other work slowed 2-thread torch steps 5-20x here (a spinning thread waits for a descheduled one),
    while PBG's single-threaded HOGWILD workers were unaffected; PASSIVE threads sleep instead. "unset" keeps the
    environment's value."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    if wait_policy != "unset":
        env["OMP_WAIT_POLICY"] = wait_policy
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), env.get("PYTHONPATH")]))
    return env


def run_side(side: str, config: str, args: argparse.Namespace, plan: dict[str, Any], log: Path) -> dict[str, Any]:
    """One measurement in a fresh process; its JSON record, or an error record with the log's path."""
    cmd = [python_of(side), "-m", f"compare.run_{side}", "--config", config, "--data", str(args.data),
           "--threads", str(args.threads), "--warmup", str(plan["warmup"]), "--seconds", str(plan["seconds"]),
           "--min-batches", str(plan["min_batches"]), "--eval-limit", str(plan["eval_limit"]),
           "--scratch", str(OUT / "scratch")]
    if args.quick:
        cmd.append("--quick")
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=REPO, env=child_env(args.threads, args.omp_wait_policy), capture_output=True,
                              text=True, timeout=args.timeout)
        stdout, stderr, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as e:
        stdout, stderr, code = str(e.stdout or ""), str(e.stderr or "") + "\nTIMEOUT", -1
    log.write_text(f"$ {' '.join(cmd)}\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
    record = record_of(side, config, code, stdout, stderr, log)
    record["process_seconds"] = round(time.perf_counter() - start, 1)
    return record


METRIC_KEYS = ("triples_per_s", "rows_per_s", "seconds", "eval_seconds", "queries_per_s", "peak_rss_mb")


def record_of(side: str, config: str, code: int, stdout: str, stderr: str, log: Path) -> dict[str, Any]:
    """A runner's last JSON line, checked: a failed run (non-zero exit, no record, an ``error`` in it, a missing or
    non-finite rate or loss) is a record with an ``error`` and none of the measured numbers."""
    record: dict[str, Any] = {}
    for line in reversed([line for line in stdout.splitlines() if line.startswith("{")]):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        break
    reason = failure_of(record) if record else "no result record"
    if code != 0:
        reason = f"{reason} (exit {code})" if record and reason else f"exit {code}"
    if reason is None:
        return record
    failed = {key: value for key, value in record.items() if key not in METRIC_KEYS}
    return {**failed, "side": side, "config": config, "error": f"{reason}; see {log}",
            "stderr_tail": stderr.strip().splitlines()[-3:]}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def failure_of(record: dict[str, Any]) -> str | None:
    """Why a runner's record is no result; None when it is one."""
    if "error" in record:
        return str(record["error"])
    if record.get("kind") == "train":
        if not _finite(record.get("triples_per_s")) or record["triples_per_s"] <= 0:
            return "no training rate"
        bad = [key for key in ("loss_first", "loss_last") if record.get(key) is not None and not _finite(record[key])]
        return f"{bad[0]} is {record[bad[0]]}" if bad else None
    if record.get("kind") == "eval":
        return None if _finite(record.get("seconds")) and _finite(record.get("peak_rss_mb")) else "no evaluation time"
    return f"unknown record kind {record.get('kind')!r}"


def hardware(args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "compare.hardware", "--threads", str(args.threads), "--data", str(args.data),
           "--seconds", "1" if args.quick else "5"]
    done = subprocess.run(cmd, cwd=REPO, env=child_env(args.threads, args.omp_wait_policy), capture_output=True,
                          text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def metrics_of(record: dict[str, Any]) -> dict[str, float]:
    """The compared numbers of one record: throughput for training, seconds and peak memory for evaluation."""
    if record.get("kind") == "train":
        return {"triples_per_s": record["triples_per_s"]}
    peak = max(record["peak_rss_mb"], record.get("children_peak_rss_mb") or 0.0)
    return {"seconds": record["seconds"], "peak_rss_mb": peak}


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration and peer: median/min/max of each metric on both sides and the kgem-over-peer factor
    (throughput: kgem / peer; seconds and memory: peer / kgem; above 1 means kgem is better). A side that failed
    in any round makes the row a failure: a median over the rounds that happened to survive is no result."""
    rows: list[dict[str, Any]] = []
    for (config, peer), target in TARGETS.items():
        sides = {s: [r for r in runs if r["config"] == config and r["side"] == s] for s in ("kgem", peer)}
        if not any(sides.values()):
            continue
        failures = [side_failure(s, sides[s]) for s in sides]
        if any(failures):
            rows.append({"config": config, "peer": peer, "error": "; ".join(f for f in failures if f)})
            continue
        for metric in metrics_of(sides["kgem"][0]):
            k = spread([metrics_of(r)[metric] for r in sides["kgem"]])
            p = spread([metrics_of(r)[metric] for r in sides[peer]])
            factor = k["median"] / p["median"] if metric == "triples_per_s" else p["median"] / k["median"]
            rows.append({"config": config, "peer": peer, "metric": metric, "kgem": k, "peer_stats": p,
                         "kgem_factor": factor, "target": target if metric != "peak_rss_mb" else None})
    return rows


def side_failure(side: str, runs: list[dict[str, Any]]) -> str | None:
    """'<side> failed in n of m runs: <first error>', or that it has no run; None when every run succeeded."""
    if not runs:
        return f"{side} has no run"
    failed = [r for r in runs if "error" in r]
    if not failed:
        return None
    return f"{side} failed in {len(failed)} of {len(runs)} runs: {failed[0]['error']}"


def fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def markdown(summary: list[dict[str, Any]], hw: dict[str, Any], runs: list[dict[str, Any]], quick: bool) -> str:
    lines = ["| config | metric | kgem median (min–max) | peer | peer median (min–max) | kgem factor | target |",
             "|---|---|---|---|---|---|---|"]
    for row in summary:
        if "error" in row:
            error = " ".join(str(row["error"]).split()).replace("|", "\\|")  # one table cell
            lines.append(f"| {row['config']} | – | – | {row['peer']} | – | **failed**: {error} | |")
            continue
        k, p = row["kgem"], row["peer_stats"]
        target = f"≥ {row['target']}x" if row["target"] else ""
        ok = "" if not row["target"] else (" ✓" if row["kgem_factor"] >= row["target"] else " ✗")
        lines.append(f"| {row['config']} | {row['metric']} | {fmt(k['median'])} ({fmt(k['min'])}–{fmt(k['max'])}) "
                     f"| {row['peer']} | {fmt(p['median'])} ({fmt(p['min'])}–{fmt(p['max'])}) "
                     f"| {row['kgem_factor']:.2f}x{ok} | {target} |")
    lines.append("")
    lines.append(f"Hardware ({hw['threads']} threads): dense float32 matmul {hw['matmul_gflops_per_s']:.1f} GFLOP/s; "
                 f"kgem ComplEx `score_t` of {hw['score_t_queries']} queries x {hw['score_t_entities']} entities "
                 f"{hw['score_t_gflops_per_s']:.1f} GFLOP/s.")
    for config in ("E1", "E2"):
        mine = [r for r in runs if r["config"] == config and r["side"] == "kgem" and "score_gflops_per_s" in r]
        if mine:
            rate = statistics.median(r["score_gflops_per_s"] for r in mine)
            adjacent = [r["score_fraction_of_matmul"] for r in mine if "score_fraction_of_matmul" in r]
            beside = (f"; {statistics.median(adjacent):.1%} of the matmul rate measured in the same process right "
                      f"after, median over rounds" if adjacent else "")
            lines.append(f"kgem's full filtered evaluation ({config}) reaches {rate:.2f} GFLOP/s counting 2·B·E·d "
                         f"for the score products ({rate / hw['matmul_gflops_per_s']:.1%} of the matmul rate "
                         f"measured at the start{beside}).")
    if quick:
        lines.append("")
        lines.append("**Quick run**: seconds per measurement, a test subset for E1/E2; numbers are indicative only.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(SETTINGS), help="comma-separated, from " + ",".join(SETTINGS))
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a few seconds per measurement, 500 test triples")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="FB15k-237 folder (train/valid/test.txt)")
    parser.add_argument("--data", default=str(OUT / "data" / "fb15k237"), help="where the exported ids go")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per measurement process")
    parser.add_argument("--no-setup", action="store_true", help="do not create/check the peers' environments")
    parser.add_argument("--omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", "unset"],
                        help="OMP_WAIT_POLICY of every measured process (PASSIVE: robust on a shared machine)")
    args = parser.parse_args()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in SETTINGS]
    if unknown:
        parser.error(f"unknown configs {unknown}; known: {', '.join(SETTINGS)}")
    rounds = args.rounds or (1 if args.quick else 3)
    plan = QUICK if args.quick else FULL
    peers = sorted({p for c in configs for p in SETTINGS[c].peers})
    if not args.no_setup:
        for peer in peers:
            print(f"environment {peer}: {envs.create(peer)}", file=sys.stderr)
    export_data(args.source, args.data)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logs = OUT / "logs" / stamp
    logs.mkdir(parents=True, exist_ok=True)
    hw = hardware(args)
    print(f"hardware: {hw['matmul_gflops_per_s']:.1f} GFLOP/s matmul", file=sys.stderr)
    runs = []
    for config in configs:
        for round_ in range(rounds):
            sides = ["kgem", *SETTINGS[config].peers]
            for side in sides if round_ % 2 == 0 else sides[::-1]:
                record = run_side(side, config, args, plan, logs / f"{config}-{side}-r{round_}.log")
                record["round"] = round_
                runs.append(record)
                shown = record.get("error") or {k: round(v, 1) for k, v in metrics_of(record).items()}
                print(f"{config} round {round_} {side}: {shown}", file=sys.stderr)
    summary = summarise(runs)
    table = markdown(summary, hw, runs, args.quick)
    result = {"meta": {"time": stamp, "quick": args.quick, "rounds": rounds, "plan": plan, "threads": args.threads,
                       "omp_wait_policy": args.omp_wait_policy,
                       "configs": configs, "machine": platform.platform(), "cpus": os.cpu_count(),
                       "load_average": os.getloadavg(), "settings": {c: SETTINGS[c].summary for c in configs}},
              "hardware": hw, "summary": summary, "runs": runs}
    text = json.dumps(result, indent=1)
    for name in (f"results-{stamp}", "results-latest"):
        (OUT / f"{name}.json").write_text(text)
        (OUT / f"{name}.md").write_text(table + "\n")
    print(text)
    print()
    print(table)


if __name__ == "__main__":
    main()
