"""kgem side by side with PyKEEN 1.11.1 and PyTorch-BigGraph 1.0.0 on FB15k-237: JSON and a markdown table.

    .venv/bin/python bench/compare_pykeen.py                      # everything, 3 rounds (the full run)
    .venv/bin/python bench/compare_pykeen.py --quick              # smoke test: seconds per measurement
    .venv/bin/python bench/compare_pykeen.py --configs C1,E1 --rounds 5
    .venv/bin/python bench/compare_pykeen.py --baseline HEAD~1 --peers none   # kgem against an earlier commit

Creates the peers' environments (bench/.envs, idempotent), exports the data once, measures this machine's matmul
FLOP/s, then for each configuration and round runs kgem, each peer and the baseline commit's kgem (``--baseline``)
alternately (the order flips every round), each in its own process with the same thread count. Results go to stdout
and to bench/out/compare/results-*.json/.md. See bench/README.md for what each configuration means and how to read
the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from compare import envs, sides
from compare.common import BENCH, DEFAULT_SOURCE, OUT, SETTINGS
from compare.export import export_data
from compare.report import markdown, metrics_of, summarise
from compare.sides import REPO, Side

FULL = {"warmup": 10.0, "seconds": 60.0, "min_batches": 20, "eval_limit": 0}
QUICK = {"warmup": 1.0, "seconds": 3.0, "min_batches": 3, "eval_limit": 500}


def child_env(threads: int, wait_policy: str = "PASSIVE", pythonpath: tuple[str, ...] = (str(BENCH),)
              ) -> dict[str, str]:
    """Thread counts for every side, and ``pythonpath`` first on the module path (a baseline: its own tree's). OpenMP's
    wait policy: with the default (threads spin at barriers), a machine shared with other work slowed 2-thread torch
    steps 5-20x here (a spinning thread waits for a descheduled one), while PBG's single-threaded HOGWILD workers were
    unaffected; PASSIVE threads sleep instead. "unset" keeps the environment's value."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    if wait_policy != "unset":
        env["OMP_WAIT_POLICY"] = wait_policy
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*pythonpath, env.get("PYTHONPATH")]))
    return env


def run_side(side: Side, config: str, args: argparse.Namespace, plan: dict[str, Any], log: Path) -> dict[str, Any]:
    """One measurement in a fresh process; its JSON record (``side`` set to the side's name), or an error record with
    the log's path. A baseline whose record shows it imported another kgem than its tree's is a failed run."""
    cmd = [side.python, "-m", side.runner, "--config", config, "--data", str(Path(args.data).resolve()),
           "--threads", str(args.threads), "--warmup", str(plan["warmup"]), "--seconds", str(plan["seconds"]),
           "--min-batches", str(plan["min_batches"]), "--eval-limit", str(plan["eval_limit"]),
           "--scratch", str(OUT / "scratch")]
    if args.quick:
        cmd.append("--quick")
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=side.cwd, env=child_env(args.threads, args.omp_wait_policy, side.pythonpath),
                              capture_output=True, text=True, timeout=args.timeout)
        stdout, stderr, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as e:
        stdout, stderr, code = str(e.stdout or ""), str(e.stderr or "") + "\nTIMEOUT", -1
    log.write_text(f"$ (cd {side.cwd} && {' '.join(cmd)})\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
    record = record_of(side.name, config, code, stdout, stderr, log)
    wrong = sides.wrong_kgem(side, record.get("kgem_path"))
    if wrong and "error" not in record:
        record = failed_record(record, side.name, config, f"{wrong}; see {log}", stderr)
    record["side"] = side.name
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
    return failed_record(record, side, config, f"{reason}; see {log}", stderr)


def failed_record(record: dict[str, Any], side: str, config: str, error: str, stderr: str) -> dict[str, Any]:
    """``record`` without its measured numbers, with ``error`` and the last lines of the runner's stderr."""
    failed = {key: value for key, value in record.items() if key not in METRIC_KEYS}
    return {**failed, "side": side, "config": config, "error": error, "stderr_tail": stderr.strip().splitlines()[-3:]}


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked: ``configs`` a list, ``peers`` a dict of the peers each configuration runs,
    ``baseline_sha`` the commit ``--baseline`` names (None without one), ``rounds`` a number."""
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
    parser.add_argument("--peers", default=None,
                        help=f"comma-separated, from {','.join(envs.PEERS)}, or none (default: each configuration's)")
    parser.add_argument("--baseline", default=None, metavar="REF",
                        help="also run this commit's kgem (exported with git archive), as the side kgem@<sha7>")
    args = parser.parse_args(argv)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in args.configs if c not in SETTINGS]
    if unknown:
        parser.error(f"unknown configs {unknown}; known: {', '.join(SETTINGS)}")
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")
    args.rounds = args.rounds or (1 if args.quick else 3)
    try:
        args.peers = select_peers(args.peers, args.configs)
        args.baseline_sha = sides.resolve(REPO, args.baseline) if args.baseline is not None else None
    except ValueError as error:
        parser.error(str(error))
    return args


def select_peers(text: str | None, configs: list[str]) -> dict[str, list[str]]:
    """The peers each configuration runs: its own (``text`` None), none (``"none"``), or those of its own that the
    comma-separated ``text`` names."""
    if text is None:
        return {c: list(SETTINGS[c].peers) for c in configs}
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["none"]:
        return {c: [] for c in configs}
    unknown = [name for name in names if name not in envs.PEERS]
    if unknown or not names:
        raise ValueError(f"--peers {text!r}: unknown peers {unknown}; known: {', '.join(envs.PEERS)}, or none")
    return {c: [p for p in SETTINGS[c].peers if p in names] for c in configs}


def prepare_baseline(args: argparse.Namespace) -> tuple[Side, dict[str, Any]]:
    """The baseline commit exported (once) and its side, checked to import the tree's kgem; its meta data."""
    tree = sides.export_tree(REPO, args.baseline_sha)
    side = sides.baseline(tree, args.baseline_sha)
    origin = sides.kgem_origin(side, child_env(args.threads, args.omp_wait_policy, side.pythonpath))
    wrong = sides.wrong_kgem(side, origin)
    if wrong:
        sys.exit(f"error: {wrong}")
    print(f"baseline {side.name}: {args.baseline} exported to {tree}, kgem from {origin}", file=sys.stderr)
    return side, {"ref": args.baseline, "sha": args.baseline_sha, "side": side.name, "tree": str(tree),
                  "kgem_path": origin}


def round_order(names: list[str], round_: int) -> list[str]:
    """Every side of a configuration in each round, the order flipped every other round."""
    return names if round_ % 2 == 0 else names[::-1]


def main() -> None:
    args = parse_args()
    plan = QUICK if args.quick else FULL
    if not args.no_setup:
        for peer in sorted({p for peers in args.peers.values() for p in peers}):
            print(f"environment {peer}: {envs.create(peer)}", file=sys.stderr)
    baseline, baseline_meta = prepare_baseline(args) if args.baseline_sha else (None, None)
    by_name = {name: sides.current(name) for name in ("kgem", *envs.PEERS)}
    if baseline:
        by_name[baseline.name] = baseline
    comparisons = {c: [*args.peers[c], *([baseline.name] if baseline else [])] for c in args.configs}
    export_data(args.source, args.data)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logs = OUT / "logs" / stamp
    logs.mkdir(parents=True, exist_ok=True)
    hw = hardware(args)
    print(f"hardware: {hw['matmul_gflops_per_s']:.1f} GFLOP/s matmul", file=sys.stderr)
    runs = []
    for config in args.configs:
        for round_ in range(args.rounds):
            for name in round_order(["kgem", *comparisons[config]], round_):
                record = run_side(by_name[name], config, args, plan, logs / f"{config}-{name}-r{round_}.log")
                record["round"] = round_
                runs.append(record)
                shown = record.get("error") or {k: round(v, 1) for k, v in metrics_of(record).items()}
                print(f"{config} round {round_} {name}: {shown}", file=sys.stderr)
    summary = summarise(runs, comparisons)
    table = markdown(summary, hw, runs, args.quick)
    result = {"meta": {"time": stamp, "quick": args.quick, "rounds": args.rounds, "plan": plan,
                       "threads": args.threads, "omp_wait_policy": args.omp_wait_policy, "configs": args.configs,
                       "peers": args.peers, "baseline": baseline_meta, "machine": platform.platform(),
                       "cpus": os.cpu_count(), "load_average": os.getloadavg(),
                       "settings": {c: SETTINGS[c].summary for c in args.configs}},
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
