"""``kgem plot``: the PNG plots of a run folder (needs matplotlib: ``pip install 'kgem[plot]'``)."""

from __future__ import annotations

import argparse
from typing import Any

from kgem.plots import METHODS, PLOTS, plot_run


def cmd_plot(args: argparse.Namespace) -> None:
    """Draw the plots asked for and print each file written; a skipped plot is a warning on stderr."""
    for path in plot_run(args.run, args.output, which=args.which or PLOTS, labels=args.labels, method=args.method,
                         seed=args.seed):
        print(path)


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("plot", help="draw a run's plots as PNG files (needs kgem[plot])",
                       description="Draw the plots of a run folder written by kgem train --output: the training "
                                   "loss, the validation MRR with the epoch early stopping kept, a 2-D map of the "
                                   "entity embeddings, MRR per relation (the test split ranked again with the saved "
                                   "model) and the relation patterns of the training triples. A plot whose input "
                                   "is missing (e.g. no validation) is skipped with a warning. Prints the files "
                                   "written. Needs pip install 'kgem[plot]'.",
                       epilog="example: kgem plot runs/umls --which losses embeddings --method pca")
    p.add_argument("run", metavar="RUN_DIR", help="run folder (kgem train --output RUN_DIR)")
    p.add_argument("-o", "--output", metavar="OUT_DIR", help="where to write the PNG files (default RUN_DIR/plots)")
    p.add_argument("--which", nargs="+", choices=PLOTS, metavar="PLOT",
                   help=f"the plots to draw, of {', '.join(PLOTS)} (default all)")
    p.add_argument("--labels", metavar="FILE", help="colour the embedding map by the groups of this TSV file of "
                                                    "entity<TAB>group lines (default: each entity's most frequent "
                                                    "training relation)")
    p.add_argument("--method", choices=METHODS, default="pca",
                   help="how the embeddings are mapped to 2-D: pca (default) or umap (needs pip install umap-learn)")
    p.add_argument("--seed", type=int, default=0, help="seed of UMAP and of the sample of a large entity table")
    p.set_defaults(func=cmd_plot)
