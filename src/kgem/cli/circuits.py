"""``kgem sample``: use a saved generative circuit (``kgem.circuits.store``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kgem.atomic import atomic_write
from kgem.circuits.sampling import sample_labels
from kgem.circuits.store import load_circuit
from kgem.errors import KgemError


def count(text: str) -> int:
    """``-n``: a whole number of triples, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def seed(text: str) -> int:
    """``--seed``: an integer in [0, 2**64), the range of torch's generator seeds."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 0 <= value < 1 << 64:
        raise argparse.ArgumentTypeError(f"must lie in [0, 2**64), got {value}")
    return value


def cmd_sample(args: argparse.Namespace) -> None:
    """Draw ``n`` triples exactly from the circuit and write them as ``head<TAB>relation<TAB>tail`` lines, the
    layout of a dataset's triple files, so a sample can be read back as a dataset."""
    if args.output is not None and Path(args.output).is_dir():
        raise KgemError(f"{args.output}: is a folder; --output takes the name of a TSV file")
    loaded = load_circuit(args.model)
    try:
        frame = sample_labels(loaded.circuit, args.n, loaded.entities, loaded.relations, seed=args.seed)
    except ValueError as e:  # probabilities that overflow: the weights load but describe no distribution
        raise KgemError(f"cannot sample from {args.model}: {e}") from e
    lines = "".join(f"{h}\t{r}\t{t}\n" for h, r, t in frame.itertuples(index=False))
    if args.output is None:
        sys.stdout.write(lines)
        return
    with atomic_write(args.output) as f:
        f.write(lines)
    print(f"wrote {len(frame)} triples to {args.output}", file=sys.stderr)


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("sample", help="draw triples from a saved generative circuit",
                       description="Draw N triples exactly from the distribution of a saved circuit (see "
                                   "kgem.circuits.store) and print them, or write them to a file, as "
                                   "head<TAB>relation<TAB>tail lines. The same --seed gives the same triples.")
    p.add_argument("model", help="saved circuit folder")
    p.add_argument("-n", type=count, default=1000, help="how many triples (default 1000)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the draws (default 0)")
    p.add_argument("--output", help="write a TSV file instead of printing")
    p.set_defaults(func=cmd_sample)
