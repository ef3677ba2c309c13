"""The ``kgem`` command line. User mistakes print one line to stderr and exit with code 2, no traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from kgem.cli import circuits, data, dglke, discover, extend, hpo, info, plot, serve, train, use
from kgem.errors import KgemError, TrainingInterrupted

EPILOG = """\
a first session:
  kgem train --dataset umls --output runs/umls          train ComplEx (the default) and save everything there
  kgem predict runs/umls/model --head virus --relation causes -k 5
  kgem similar runs/umls/model virus bacterium
  kgem evaluate runs/umls/model --per-category
  kgem models                                          every model with its paper
  kgem config                                          the full config, every option explained

'kgem COMMAND --help' explains each command."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kgem", description="Knowledge-graph embeddings: train, evaluate, predict.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    train.add_parsers(sub)
    use.add_parsers(sub)
    info.add_parsers(sub)
    circuits.add_parsers(sub)
    data.add_parsers(sub)
    discover.add_parsers(sub)
    dglke.add_parsers(sub)
    plot.add_parsers(sub)
    hpo.add_parsers(sub)
    serve.add_parsers(sub)
    extend.add_parsers(sub)
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
    except TrainingInterrupted as e:
        print(f"kgem: {e} (kgem resume RUN_FOLDER)", file=sys.stderr)
        return 130
    except KgemError as e:
        print(f"kgem: error: {' '.join(str(e).split())}", file=sys.stderr)  # one line, whatever the message
        return 2
    except BrokenPipeError:  # output piped into head: stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python flushes stdout at exit
        return 0
    except OSError as e:  # a path the user gave that cannot be read or written: also one line, not a traceback
        print(f"kgem: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kgem: interrupted", file=sys.stderr)
        return 130
    return 0
