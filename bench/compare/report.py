"""The summary of a comparison (kgem against each peer and against a baseline commit) and its markdown table.

Every row compares kgem's records of one configuration with another side's: the median, minimum and maximum over
the rounds of each metric, and kgem's factor (above 1: kgem is better). A side that failed in any round makes the
row a failure. Rows against a baseline (a side named ``kgem@<sha7>``) also say whether the current code is slower
than the baseline by more than the spread of the rounds: a regression.
"""

from __future__ import annotations

import statistics
from typing import Any

from compare.common import SETTINGS
from compare.sides import is_baseline_name

# speed-up kgem should reach over each peer (the targets); None: reported without a target
TARGETS: dict[tuple[str, str], float | None] = {
    ("C1", "pykeen"): 10, ("C2", "pykeen"): 10, ("C3", "pykeen"): 10, ("C4", "pykeen"): 5,
    ("C1s", "pbg"): 1.5, ("C4s", "pbg"): 1.5, ("E1", "pykeen"): 20, ("E1", "pbg"): None, ("E2", "pykeen"): 20,
}
HIGHER_IS_BETTER = {"triples_per_s"}  # the other metrics (seconds, peak_rss_mb) are better lower


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def metrics_of(record: dict[str, Any]) -> dict[str, float]:
    """The compared numbers of one record: throughput for training, seconds and peak memory for evaluation."""
    if record.get("kind") == "train":
        return {"triples_per_s": record["triples_per_s"]}
    peak = max(record["peak_rss_mb"], record.get("children_peak_rss_mb") or 0.0)
    return {"seconds": record["seconds"], "peak_rss_mb": peak}


def default_comparisons(runs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Every configuration that has runs against each of its peers."""
    configs = {r["config"] for r in runs}
    return {c: [p for (config, p) in TARGETS if config == c] for c in SETTINGS if c in configs}


def summarise(runs: list[dict[str, Any]], comparisons: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """Per configuration and side compared with kgem (``comparisons``; default: its peers), the rows of
    ``compare_rows``, in the order given."""
    comparisons = default_comparisons(runs) if comparisons is None else comparisons
    return [row for config, others in comparisons.items() for other in others
            for row in compare_rows(runs, config, other)]


def compare_rows(runs: list[dict[str, Any]], config: str, other: str) -> list[dict[str, Any]]:
    """kgem against ``other`` on ``config``: median/min/max of each metric on both sides and the kgem factor
    (throughput: kgem / other; seconds and memory: other / kgem). A side that failed in any round makes one failed
    row: a median over the rounds that happened to survive is no result. Against a baseline, ``regression`` says
    whether kgem is worse than the baseline in every round (its best round below the baseline's worst)."""
    baseline = is_baseline_name(other)
    mark = {"baseline": True} if baseline else {}
    sides = {s: [r for r in runs if r["config"] == config and r["side"] == s] for s in ("kgem", other)}
    failures = [side_failure(s, sides[s]) for s in sides]
    if any(failures):
        return [{"config": config, "peer": other, **mark, "error": "; ".join(f for f in failures if f)}]
    rows = []
    for metric in metrics_of(sides["kgem"][0]):
        k = spread([metrics_of(r)[metric] for r in sides["kgem"]])
        p = spread([metrics_of(r)[metric] for r in sides[other]])
        higher = metric in HIGHER_IS_BETTER
        row: dict[str, Any] = {
            "config": config, "peer": other, **mark, "metric": metric, "kgem": k, "peer_stats": p,
            "kgem_factor": k["median"] / p["median"] if higher else p["median"] / k["median"],
            "target": TARGETS.get((config, other)) if metric != "peak_rss_mb" else None}
        if baseline:
            row["regression"] = k["max"] < p["min"] if higher else k["min"] > p["max"]
            row["settings_differ"] = settings_differ(sides["kgem"], sides[other])
        rows.append(row)
    return rows


def settings_differ(mine: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[str]:
    """The configuration fields in which the baseline's runner measured something else than the current one (a
    refactor that also changed a configuration compares unlike runs)."""
    a, b = mine[0].get("setting") or {}, theirs[0].get("setting") or {}
    return sorted(key for key in a.keys() | b.keys() if a.get(key) != b.get(key))


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


def table_row(row: dict[str, Any]) -> str:
    """One line of the table; a failed row names its error in the factor column."""
    if "error" in row:
        error = " ".join(str(row["error"]).split()).replace("|", "\\|")  # one table cell
        return f"| {row['config']} | – | – | {row['peer']} | – | **failed**: {error} | | |"
    k, p = row["kgem"], row["peer_stats"]
    target = f"≥ {row['target']}x" if row["target"] else ""
    ok = "" if not row["target"] else (" ✓" if row["kgem_factor"] >= row["target"] else " ✗")
    regression = "" if "regression" not in row else ("**yes**" if row["regression"] else "no")
    return (f"| {row['config']} | {row['metric']} | {fmt(k['median'])} ({fmt(k['min'])}–{fmt(k['max'])}) "
            f"| {row['peer']} | {fmt(p['median'])} ({fmt(p['min'])}–{fmt(p['max'])}) "
            f"| {row['kgem_factor']:.2f}x{ok} | {target} | {regression} |")


def baseline_verdict(summary: list[dict[str, Any]]) -> list[str]:
    """The line under the table about the baseline rows: the regressions, the failures, or that there is none."""
    rows = [row for row in summary if row.get("baseline")]
    if not rows:
        return []
    name = rows[0]["peer"]
    slower = [f"{r['config']} {r['metric']}" for r in rows if r.get("regression")]
    failed = sorted({r["config"] for r in rows if "error" in r})
    differ = sorted({f"{r['config']} ({', '.join(r['settings_differ'])})" for r in rows if r.get("settings_differ")})
    parts = [f"**regression** against {name} (the current code's best round worse than the baseline's worst): "
             f"{', '.join(slower)}" if slower else
             f"no regression against {name}: no configuration is worse than the baseline beyond the min–max spread"]
    if failed:
        parts.append(f"failed, so not checked: {', '.join(failed)}")
    if differ:
        parts.append(f"the baseline's configuration differs: {', '.join(differ)}")
    return ["", "Baseline: " + "; ".join(parts) + "."]


def hardware_lines(hw: dict[str, Any], runs: list[dict[str, Any]]) -> list[str]:
    """The machine's matmul and scoring FLOP/s, and how close kgem's full evaluation comes to them."""
    lines = [f"Hardware ({hw['threads']} threads): dense float32 matmul {hw['matmul_gflops_per_s']:.1f} GFLOP/s; "
             f"kgem ComplEx `score_t` of {hw['score_t_queries']} queries x {hw['score_t_entities']} entities "
             f"{hw['score_t_gflops_per_s']:.1f} GFLOP/s."]
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
    return lines


def markdown(summary: list[dict[str, Any]], hw: dict[str, Any], runs: list[dict[str, Any]], quick: bool) -> str:
    lines = ["| config | metric | kgem median (min–max) | peer | peer median (min–max) | kgem factor | target "
             "| regression |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [table_row(row) for row in summary]
    lines += baseline_verdict(summary)
    lines.append("")
    lines += hardware_lines(hw, runs)
    if quick:
        lines.append("")
        lines.append("**Quick run**: seconds per measurement, a test subset for E1/E2; numbers are indicative only.")
    return "\n".join(lines)
