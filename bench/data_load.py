"""Read FB15k-237 from a local folder and build the filter index; print counts and seconds as JSON.

    python bench/data_load.py [--path ../shared/datasets/fb15k237] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from kgem.data import load_dataset

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "fb15k237"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--path", default=str(DEFAULT))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    read_s, index_s = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ds = load_dataset("fb15k237", path=args.path, on_unseen="drop")
        read_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        known = ds.known()
        index_s.append(time.perf_counter() - start)
    splits = ds.splits()
    print(json.dumps({
        "dataset": "fb15k237", "path": args.path, "threads": args.threads, "repeats": args.repeats,
        "num_entities": ds.num_entities, "num_relations": ds.num_relations,
        "triples_in_files": {name: len(t) + t.stats.get("unseen", 0) for name, t in splits.items()},
        "triples": {name: len(t) for name, t in splits.items()},
        "dropped_unseen": {name: t.stats.get("unseen", 0) for name, t in splits.items()},
        "known_triples": len(known),
        "read_seconds_median": statistics.median(read_s), "read_seconds_min": min(read_s),
        "index_seconds_median": statistics.median(index_s), "index_seconds_min": min(index_s),
    }, indent=2))


if __name__ == "__main__":
    main()
