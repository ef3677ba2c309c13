"""``kgem query | discover | clusters | duplicates``: knowledge discovery with a saved model
(``kgem.inference.discovery`` and ``kgem.inference.clusters``)."""

from __future__ import annotations

import argparse
from typing import Any, Literal

from kgem.cli.use import add_data_options, add_device_option, dataset_for, load, write_or_print
from kgem.errors import KgemError
from kgem.inference.clusters import ALGORITHMS, DISTANCES, find_clusters, find_duplicates
from kgem.inference.discovery import SIDES, STRATEGIES, discover_facts, query_topn


def cmd_query(args: argparse.Namespace) -> None:
    loaded = load(args)
    given = {"head": args.head, "relation": args.relation, "tail": args.tail}
    restrict = {"relations" if args.relation is None else "entities": args.candidates} if args.candidates else {}
    dataset = dataset_for(loaded, args) if args.remove_known or args.mark_known else None
    write_or_print(query_topn(loaded, **given, n=args.n, remove_known=args.remove_known, dataset=dataset, **restrict),
                   args.output)


def cmd_discover(args: argparse.Namespace) -> None:
    loaded = load(args)
    found = discover_facts(loaded, dataset_for(loaded, args), strategy=args.strategy, relations=args.relation,
                           max_candidates=args.max_candidates, top_n=args.top_n, seed=args.seed, sides=args.sides)
    print(f"{len(found)} of {found.attrs['candidates']} candidates rank within the top {args.top_n}")
    write_or_print(found, args.output)


def cmd_clusters(args: argparse.Namespace) -> None:
    found = find_clusters(load(args), args.labels or None, kind="relation" if args.relations else "entity",
                          algorithm=args.algorithm, n_clusters=args.n_clusters, eps=args.eps,
                          min_samples=args.min_samples, seed=args.seed)
    write_or_print(found, args.output)


def cmd_duplicates(args: argparse.Namespace) -> None:
    found = find_duplicates(load(args), args.labels or None, kind="relation" if args.relations else "entity",
                            metric=args.metric, tolerance=tolerance(args.tolerance),
                            expected_fraction=args.expected_fraction)
    groups = found["group"].nunique()
    print(f"{groups} group{'' if groups == 1 else 's'} of duplicates ({len(found)} items) within {args.metric} "
          f"distance {found.attrs['tolerance']:.6g}")
    write_or_print(found, args.output)


def tolerance(text: str) -> float | Literal["auto"]:
    """``--tolerance``: 'auto' or a number."""
    if text == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise KgemError(f"--tolerance takes a number or 'auto', got {text!r}") from None


def add_parsers(sub: Any) -> None:
    for add in (add_query, add_discover, add_clusters, add_duplicates):
        add(sub)


def add_items(p: argparse.ArgumentParser, verb: str) -> None:
    """The saved model and the items a table command reads: entity labels, or relations with --relations."""
    p.add_argument("model", help="saved model folder")
    p.add_argument("labels", nargs="*", help=f"the labels to {verb} (default: all)")
    p.add_argument("--relations", action="store_true", help=f"{verb} relations instead of entities")


def add_output(p: argparse.ArgumentParser, command: Any) -> None:
    """Where the table goes and where the model computes, then the command to run."""
    p.add_argument("-o", "--output", help="write a CSV file (.parquet: Parquet) instead of printing")
    add_device_option(p)
    p.set_defaults(func=command)


def add_query(sub: Any) -> None:
    p = sub.add_parser("query", help="the top n completions of a triple with one slot open",
                       description="Give two of --head/--relation/--tail: the n best completions of the third, as "
                                   "kgem predict ranks them, optionally among --candidates only.",
                       epilog="example: kgem query runs/umls/model --relation causes --tail virus -n 5")
    p.add_argument("model", help="saved model folder")
    p.add_argument("--head")
    p.add_argument("--relation")
    p.add_argument("--tail")
    p.add_argument("-n", type=int, default=10, help="how many completions (default 10)")
    p.add_argument("--candidates", nargs="+", metavar="LABEL", help="rank only these labels for the open slot")
    p.add_argument("--remove-known", action="store_true", help="leave out facts already in the dataset")
    p.add_argument("--mark-known", action="store_true", help="add a column saying which are known facts")
    add_data_options(p)
    add_output(p, cmd_query)


def add_discover(sub: Any) -> None:
    p = sub.add_parser("discover", help="likely missing facts: candidates drawn by a strategy, kept if ranked high",
                       description="Draw candidate triples of each --relation (default: every relation) that are "
                                   "not in the dataset, rank each against its corruptions as kgem evaluate does "
                                   "(filtered; by default the mean of its head and tail rank) and keep those ranked "
                                   "within --top-n, best first.",
                       epilog="example: kgem discover runs/umls/model --relation causes --strategy entity_frequency "
                              "--max-candidates 500 --top-n 10")
    p.add_argument("model", help="saved model folder")
    p.add_argument("--relation", action="append", metavar="R", help="a target relation (repeat for more)")
    p.add_argument("--strategy", choices=STRATEGIES, default="random_uniform",
                   help="how candidates are drawn: uniformly, by entity frequency, by graph degree, by clustering "
                        "coefficient, or every pair (exhaustive); default random_uniform")
    p.add_argument("--max-candidates", type=int, default=1000, metavar="N",
                   help="candidates per relation, at most (default 1000)")
    p.add_argument("--top-n", type=int, default=10, metavar="K", help="keep candidates ranked K or better (default 10)")
    p.add_argument("--sides", choices=SIDES, default="both", help="rank against head and/or tail corruptions")
    p.add_argument("--seed", type=int, default=0, help="seed of the candidates (default 0)")
    add_data_options(p)
    add_output(p, cmd_discover)


def add_clusters(sub: Any) -> None:
    p = sub.add_parser("clusters", help="cluster entities (or relations) by their embeddings (needs scikit-learn)",
                       description="k-means or DBSCAN over the embedding rows (Euclidean). Needs pip install "
                                   "'kgem[cluster]'.",
                       epilog="example: kgem clusters runs/umls/model --n-clusters 6 -o clusters.csv")
    add_items(p, "cluster")
    p.add_argument("--algorithm", choices=ALGORITHMS, default="kmeans")
    p.add_argument("--n-clusters", type=int, default=8, help="k-means: how many clusters (default 8)")
    p.add_argument("--eps", type=float, default=0.5, help="DBSCAN: the neighbourhood radius (default 0.5)")
    p.add_argument("--min-samples", type=int, default=5, help="DBSCAN: neighbours of a core point (default 5)")
    p.add_argument("--seed", type=int, default=0, help="k-means: seed of the starts (default 0)")
    add_output(p, cmd_clusters)


def add_duplicates(sub: Any) -> None:
    p = sub.add_parser("duplicates", help="groups of entities (or relations) with near-identical embeddings",
                       description="Groups of items linked by embedding distances within --tolerance (connected "
                                   "components), found by an exact blocked scan.",
                       epilog="example: kgem duplicates runs/umls/model --tolerance 0.05 --metric cosine")
    add_items(p, "compare")
    p.add_argument("--tolerance", default="auto",
                   help="largest distance of a duplicate, or 'auto' (default): as many as --expected-fraction")
    p.add_argument("--expected-fraction", type=float, default=0.1, metavar="F",
                   help="with --tolerance auto: the share of items to put in groups (default 0.1)")
    p.add_argument("--metric", choices=DISTANCES, default="l2", help="l2 (Euclidean, default) or cosine distance")
    add_output(p, cmd_duplicates)
