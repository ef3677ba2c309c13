"""``kgem import``: label triples of any size into a dataset folder that opens memory-mapped."""

from __future__ import annotations

import argparse
import json
from typing import Any

from kgem.data.imports import import_triples
from kgem.data.readers import order_to_columns
from kgem.errors import DataError


def cmd_import(args: argparse.Namespace) -> None:
    columns: tuple[int | str, ...] = (0, 1, 2)
    if args.format:
        if not args.format.startswith("raw_udd_"):
            raise DataError(f"--format: kgem import reads label files, DGL-KE's raw_udd_{{order}} (e.g. raw_udd_hrt); "
                            f"got {args.format!r}")
        columns = order_to_columns(args.format.removeprefix("raw_udd_"))
    if args.columns:
        columns = tuple(int(c) if c.isdigit() else c for c in args.columns)
    if len(columns) != 3:
        raise DataError(f"--columns: give the head, relation and tail columns, got {list(columns)}")
    if args.chunk_mb <= 0:
        raise DataError(f"--chunk-mb must be positive, got {args.chunk_mb}")
    report = import_triples(args.files, args.output, ratios=args.split, seed=args.seed, delimiter=args.delimiter,
                            header=args.header, columns=columns, quotechar=args.quotechar,
                            extra_columns="ignore" if args.ignore_extra_columns else "error",
                            chunk_bytes=int(args.chunk_mb * 2**20))
    print(json.dumps(report.to_dict(), indent=2))


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "import", help="read label triples of any size into a dataset folder that opens memory-mapped",
        description="Read label triples (TSV, CSV, gzipped; Parquet or Arrow a row group at a time, needs "
                    "pip install 'kgem[parquet]') in chunks, in memory bounded by the "
                    "vocabularies, into OUTPUT: the vocabularies (sorted labels: deterministic ids) and one int64 id "
                    "file per split. Give one file (with --split to hold out valid and test, seeded, every entity "
                    "and relation kept in train) or train, valid and test files. Held-out triples that repeat or "
                    "reverse a training triple are reported. Train on it with 'kgem train --dataset OUTPUT'.")
    p.add_argument("files", nargs="+", metavar="FILE", help="one file, or the train, valid and test files")
    p.add_argument("-o", "--output", required=True, help="the dataset folder to write")
    p.add_argument("--split", nargs=3, type=float, metavar=("TRAIN", "VALID", "TEST"),
                   help="split one file by these shares, e.g. 0.8 0.1 0.1")
    p.add_argument("--seed", type=int, default=0, help="seed of the split")
    p.add_argument("--delimiter", help="field separator (default: comma for .csv, tab otherwise)")
    p.add_argument("--header", action="store_true", help="the first line names the columns (Parquet and Arrow "
                                                         "files always name theirs)")
    p.add_argument("--columns", nargs=3, metavar=("HEAD", "RELATION", "TAIL"),
                   help="head, relation and tail columns: positions, or names with --header")
    p.add_argument("--format", help="DGL-KE's raw_udd_{order} (raw_udd_hrt, raw_udd_htr, ...): the column order")
    p.add_argument("--quotechar", help="quote character of fields holding the delimiter")
    p.add_argument("--ignore-extra-columns", action="store_true", help="read lines with more fields than used")
    p.add_argument("--chunk-mb", type=float, default=32.0, help="bytes read per chunk, in MiB (default 32)")
    p.set_defaults(func=cmd_import)
