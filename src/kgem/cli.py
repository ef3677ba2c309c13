"""The ``kgem`` command line. User mistakes print one line to stderr and exit with code 2, no traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

import pandas as pd

from kgem.errors import KgemError


def cmd_datasets(args: argparse.Namespace) -> None:
    from kgem.data.sources import DATASETS, load_dataset

    if args.action == "describe":
        if not args.name:
            raise KgemError("kgem datasets describe: give a dataset NAME (see 'kgem datasets')")
        print(load_dataset(args.name, path=args.path, on_unseen=args.on_unseen))
        return
    rows = []
    for name in DATASETS:
        info = DATASETS.get(name)
        counts = info.counts or (None,) * 5
        rows.append({"name": name, "entities": counts[0], "relations": counts[1], "train": counts[2],
                     "valid": counts[3], "test": counts[4], "source": "bundled" if info.bundled else "download",
                     "description": info.description})
    print(pd.DataFrame(rows).set_index("name").to_string())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kgem", description="Knowledge-graph embeddings: train, evaluate, predict.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("datasets", help="list the registered datasets, or describe one",
                       description="Without arguments: list datasets with their published counts. "
                                   "'describe NAME' loads one and prints counts, relation categories and degrees.")
    p.add_argument("action", nargs="?", choices=["list", "describe"], default="list")
    p.add_argument("name", nargs="?", help="dataset name, or a folder with train/valid/test files")
    p.add_argument("--path", help="read the dataset from this local folder instead of the cache")
    p.add_argument("--on-unseen", choices=["error", "drop"], default="drop",
                   help="valid/test triples with entities unseen in train (default: drop)")
    p.set_defaults(func=cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    func: Callable[[argparse.Namespace], None] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        func(args)
    except KgemError as e:
        print(f"kgem: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
