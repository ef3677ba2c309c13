"""bench/large_graph.py's parts: the generated graph has the shape asked for, the evaluation outputs are parsed, and
a failed step is reported as failed, never as a number."""

from __future__ import annotations

import numpy as np

from bench_script import load_bench

large_graph = load_bench("large_graph.py", "large_graph")


def test_the_generated_graph_has_power_law_degrees_over_the_ids_asked_for(tmp_path) -> None:
    path = tmp_path / "g.tsv"
    large_graph.generate(path, entities=5000, relations=50, triples=20_000, alpha=0.8, seed=1)
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    assert len(rows) == 20_000 and all(len(r) == 3 for r in rows)
    heads = np.array([int(h[1:]) for h, _, _ in rows])
    tails = np.array([int(t[1:]) for _, _, t in rows])
    relations = np.array([int(r[1:]) for _, r, _ in rows])
    assert heads.min() >= 0 and heads.max() < 5000 and relations.max() < 50
    assert len(set(heads[:5000].tolist())) == 5000  # every entity names a triple
    degrees = np.sort(np.bincount(tails, minlength=5000))[::-1]
    assert degrees[:50].sum() > 2 * degrees[-2500:].sum()  # the top 1% outweighs the bottom half
    again = tmp_path / "again.tsv"
    large_graph.generate(again, entities=5000, relations=50, triples=20_000, alpha=0.8, seed=1)
    assert again.read_bytes() == path.read_bytes()


def test_the_evaluation_outputs_are_read() -> None:
    sampled = {"stdout": "header\n      count    mrr\nboth   10 0.5\n\nfull-ranking metrics estimated from the "
                         "sampled ranks (conservative 95% intervals):\n         estimate    low   high\nmetric\n"
                         "mrr        0.6960 0.2464 0.7752\nmr         2.9 1.7 5.8\n"}
    assert large_graph._estimate(sampled) == {"estimate": 0.696, "low": 0.2464, "high": 0.7752}
    exact = {"stdout": "      count    mrr       mr\nside\nhead    5 0.1 3.0\nboth   10 0.0765 347.0\n"}
    assert large_graph._exact_mrr(exact) == 0.0765
    assert large_graph._estimate({"stdout": ""}) is None and large_graph._exact_mrr({}) is None


def test_a_failing_kgem_step_is_reported_as_failed() -> None:
    record = large_graph.run_kgem(["import", "/nonexistent/file.tsv", "-o", "/tmp/never"])
    assert record["status"] == "failed" and "no such file" in record["error"]
    assert "peak_rss_gib" not in record
