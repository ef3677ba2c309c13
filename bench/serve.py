"""Latency and throughput of ``kgem serve``: concurrent requests against a real uvicorn server on 127.0.0.1.

    .venv/bin/python bench/serve.py                                   # trains a small FB15k-237 model first
    .venv/bin/python bench/serve.py --model runs/fb15k237/model --requests 4000 --clients 16

Starts the server on the saved model ``--model`` (or, without one, on a small model trained quickly on FB15k-237 from
``--data-root``), in a thread of this process, bound to 127.0.0.1 on a free port. For each endpoint measured it fires
``--requests`` requests from ``--clients`` concurrent clients (one keep-alive connection each): ``predict``, the top
``-k`` tails of a test triple's ``(head, relation)``, ``similar``, the ``-k`` nearest neighbours of a test head, and
``predict_batch``, ``--batch`` such queries in one POST. Prints one JSON line per endpoint, with the p50 and p99
latency in milliseconds and the requests per second, then a summary line. A request that fails (not 200, not the
expected rows, or no answer) makes its endpoint "failed" with the first error, and no numbers.
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import numpy as np

from kgem.pipeline import pipeline
from kgem.serve import ServedModel, create_app
from kgem.serve.server import running

Request = tuple[str, str, bytes | None, int]  # method, path with query, JSON body, rows expected


@dataclass
class Fired:
    """What ``fire`` saw: each request's latency (seconds) and the errors, first ones kept."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def report(self) -> dict[str, Any]:
        """p50, p99 (ms) and requests/s, or "failed" with the first error: a failure is never a number."""
        if self.errors or not self.latencies:
            return {"status": "failed", "errors": len(self.errors),
                    "first_error": self.errors[0] if self.errors else "no request answered"}
        ms = np.asarray(self.latencies) * 1000
        return {"status": "ok", "requests": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 2),
                "p99_ms": round(float(np.percentile(ms, 99)), 2),
                "requests_per_s": round(len(ms) / self.seconds, 1)}


def fire(base_url: str, requests: Sequence[Request], clients: int, timeout: float = 60.0) -> Fired:
    """Send ``requests`` (in turn, ``clients`` at a time, each client on its own keep-alive connection) to the
    server at ``base_url`` on this machine, and time each one. A request answered other than 200 with the rows
    expected is an error; so is no answer within ``timeout`` seconds."""
    address = urlsplit(base_url)
    if address.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"load is only ever sent to this machine, not {base_url}")
    fired, lock, local = Fired(), threading.Lock(), threading.local()

    def one(request: Request) -> None:
        method, path, body, rows = request
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection(address.hostname, address.port, timeout=timeout)
        started = time.perf_counter()
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            local.connection.request(method, path, body=body, headers=headers)
            response = local.connection.getresponse()
            payload = response.read()
            took = time.perf_counter() - started
            problem = None if response.status == 200 else f"{method} {path}: {response.status} {payload[:200]!r}"
            if problem is None and len(json.loads(payload)["rows"]) != rows:
                problem = f"{method} {path}: expected {rows} rows"
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            local.connection.close()  # reconnect for the next request
            took, problem = time.perf_counter() - started, f"{method} {path}: {type(e).__name__}: {e}"
        with lock:
            fired.latencies.append(took)
            if problem is not None:
                fired.errors.append(problem)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, requests))
    fired.seconds = time.perf_counter() - started
    return fired


def workload(served: ServedModel, count: int, k: int, batch: int, seed: int) -> dict[str, list[Request]]:
    """``count`` requests per endpoint, drawn (seeded) from the test split's triples where there is one, else from
    the model's entities and relations."""
    rng = np.random.default_rng(seed)
    split = served.dataset.test if served.dataset is not None and served.dataset.test is not None else None
    if split is not None:
        hrt = split.hrt[rng.integers(0, len(split), count * max(batch, 1))].numpy()
        heads, relations = split.entities.to_labels(hrt[:, 0]), split.relations.to_labels(hrt[:, 1])
    else:
        heads = served.entities.to_labels(rng.integers(0, len(served.entities), count * max(batch, 1)))
        relations = served.relations.to_labels(rng.integers(0, len(served.relations), count * max(batch, 1)))
    rows = min(k, len(served.entities))
    requests = {
        "predict": [("GET", "/api/predict/tails?" + urlencode({"head": h, "relation": r, "k": k}), None, rows)
                    for h, r in zip(heads[:count], relations[:count])],
        "similar": [("GET", "/api/similar?" + urlencode({"label": h, "k": k}), None, min(k, len(served.entities) - 1))
                    for h in heads[:count]]}
    if batch:
        bodies = [json.dumps({"queries": [{"head": str(h), "relation": str(r)}
                                          for h, r in zip(heads[i : i + batch], relations[i : i + batch])],
                              "k": k}).encode() for i in range(0, count * batch, batch)]
        requests["predict_batch"] = [("POST", "/api/predict/tails", body, rows * batch) for body in bodies]
    return requests


def train_model(args: argparse.Namespace, folder: Path) -> Path:
    """A small model of ``args.dataset`` trained quickly (negative sampling, few epochs, a twentieth of the test
    split evaluated): the server's speed depends on the model's size, not on how well it was trained."""
    data = {"dataset": args.dataset}
    if args.data_root:
        data["path"] = str(Path(args.data_root) / args.dataset)
    pipeline({"data": data, "model": {"name": args.train_model, "dim": args.dim},
              "training": {"approach": "slcwa", "loss": "softplus", "num_negatives": 8, "epochs": args.epochs,
                           "batch_size": 4096, "early_stopping": False},
              "evaluation": {"fraction": 0.05}}, output=folder / "run", progress=False)
    return folder / "run" / "model"


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Serve the model and measure every endpoint; one record each."""
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(args.model) if args.model else train_model(args, Path(scratch))
        served = ServedModel.open(model)
        app = create_app(served)
        requests = workload(served, args.requests, args.k, args.batch, args.seed)
        records = []
        with running(app) as url:
            for endpoint, batch in requests.items():
                fire(url, batch[: args.clients], args.clients)  # warm up: connections, first-call caches
                report = fire(url, batch, args.clients).report()
                records.append({"endpoint": endpoint, "model": str(model), "clients": args.clients, **report})
        return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="saved model folder (default: train a small one on --dataset)")
    parser.add_argument("--dataset", default="fb15k237", help="the dataset a model is trained on without --model")
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets"),
                        help="folder holding the dataset, in a subfolder of its name")
    parser.add_argument("--train-model", default="distmult", help="the model trained without --model")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--requests", type=int, default=1000, help="requests per endpoint")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("-k", type=int, default=10, help="answers per query")
    parser.add_argument("--batch", type=int, default=32, help="queries per predict_batch request (0: skip it)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        records = run(args)
    except Exception as e:  # reported as failed, never as a number
        problem = (str(e).splitlines() or [type(e).__name__])[0]
        records = [{"endpoint": "all", "status": "failed", "first_error": problem}]
    for record in records:
        print(json.dumps(record), flush=True)
    failed = [r["endpoint"] for r in records if r["status"] != "ok"]
    print(json.dumps({"summary": {"settings": vars(args), "status": "failed" if failed else "ok", "failed": failed}}),
          flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
