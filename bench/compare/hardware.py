"""This machine's dense float32 matmul FLOP/s and the FLOP/s of kgem's all-entity scoring, as one JSON line.

    PYTHONPATH=bench .venv/bin/python -m compare.hardware [--threads 2] [--size 4096] [--seconds 5]

Matmul: ``(n, n) @ (n, n)`` counts ``2 n^3`` flops; the best of repeated timings over ``--seconds`` is reported.
Scoring: ``model.score_t(h, r)`` of a bilinear model (ComplEx, 200 real numbers per entity) for ``B`` queries against
all ``E`` entities counts ``2 B E d`` flops for its one ``(B, d) @ (d, E)`` product (the element-wise query products
are ignored), i.e. the rate evaluation can reach at best without the rank counting and filtering around it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from compare.common import DATA, limit_threads, load_data


def best_seconds(fn: Callable[[], object], seconds: float, min_runs: int = 3) -> float:
    fn()  # warm-up
    best, start, runs = float("inf"), time.perf_counter(), 0
    while runs < min_runs or time.perf_counter() - start < seconds:
        tic = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - tic)
        runs += 1
    return best


def matmul_gflops_per_s(size: int = 4096, seconds: float = 2.0) -> float:
    """Dense float32 ``(n, n) @ (n, n)`` GFLOP/s, the best of repeats over ``seconds``."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / best_seconds(lambda: a @ b, seconds) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--queries", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--data", default=str(DATA / "fb15k237"))
    args = parser.parse_args()
    limit_threads(args.threads)
    import torch

    from kgem.models import build_model

    n = args.size
    matmul = matmul_gflops_per_s(n, args.seconds)
    data = load_data(args.data)
    model = build_model("complex", data.num_entities, data.num_relations, 100).eval()
    h = torch.randint(data.num_entities, (args.queries,))
    r = torch.randint(data.num_relations, (args.queries,))
    with torch.no_grad():
        score_s = best_seconds(lambda: model.score_t(h, r), args.seconds)
    score_flops = 2 * args.queries * data.num_entities * 200
    sys.stdout.write(json.dumps({
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "matmul_size": n, "matmul_seconds": 2 * n**3 / matmul / 1e9, "matmul_gflops_per_s": matmul,
        "score_t_queries": args.queries, "score_t_entities": data.num_entities, "score_t_dim": 200,
        "score_t_seconds": score_s, "score_t_gflops_per_s": score_flops / score_s / 1e9,
    }) + "\n")


if __name__ == "__main__":
    main()
