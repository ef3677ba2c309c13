"""``kgem datasets``, ``kgem models``, ``kgem config`` and ``kgem recipes``: what is available and what every
option means."""

from __future__ import annotations

import argparse
import inspect
from typing import Any

import pandas as pd

from kgem.circuits.registry import CIRCUITS, circuit_arguments
from kgem.config import to_commented_yaml
from kgem.data.sources import DATASETS, load_dataset
from kgem.errors import KgemError
from kgem.models import model_info, model_names
from kgem.pipeline import resolve_config
from kgem.recipes import markdown_table, recipe, recipes_table


def cmd_datasets(args: argparse.Namespace) -> None:
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
                     "edge_weights": "-" if info.edge_weights is None else info.edge_weights,
                     "sha256": {None: "-", True: "pinned", False: "NOT pinned"}[info.pinned],
                     "description": info.description + (" [deprecated]" if info.deprecated else "")})
    print(pd.DataFrame(rows).set_index("name").to_string())
    notes = [f"  {name}: {DATASETS.get(name).deprecated}" for name in DATASETS if DATASETS.get(name).deprecated]
    if notes:
        print("\ndeprecated (kept to reproduce published results):", *notes, sep="\n")


def models_table() -> pd.DataFrame:
    """Every registered model with its representation kinds, default entity normalisation (``args.normalize``:
    none | forward | step), arguments (read from its builder's signatures) and paper."""
    rows = []
    for name in model_names():
        info = model_info(name)
        rows.append({"model": name, "entities": info.entities, "relations": info.relations,
                     "normalize": info.normalize, "arguments": argument_defaults(name),
                     "reference": info.reference})
    return pd.DataFrame(rows).set_index("model")


def argument_defaults(name: str) -> str:
    """``name=default, ...`` of the model's arguments, as ``model.args`` takes them."""
    return ", ".join(f"{p.name}={p.default!r}" for p in model_info(name).parameters()
                     if p.default is not inspect.Parameter.empty)


def circuits_table() -> pd.DataFrame:
    """Every generative circuit (trained with ``training.objective``) with its arguments and defaults."""
    rows = [{"circuit": name, "class": CIRCUITS.get(name).__name__,
             "arguments": ", ".join(f"{key}={value!r}" for key, value in circuit_arguments(name).items())}
            for name in CIRCUITS.names()]
    return pd.DataFrame(rows).set_index("circuit")


def cmd_models(args: argparse.Namespace) -> None:
    with pd.option_context("display.max_colwidth", 90, "display.width", 250):
        print(models_table().to_string())
        print("\ngenerative circuits (exact probabilities; --objective pll|mle; kgem sample RUN/model):")
        print(circuits_table().to_string())


def cmd_config(args: argparse.Namespace) -> None:
    print(to_commented_yaml(resolve_config(args.config, args.set or [])), end="")


def cmd_recipes(args: argparse.Namespace) -> None:
    if args.name:
        found = recipe(args.name)
        print(f"# {found.name}: {found.model}\n# source: {found.source}")
        for label, numbers in (("published", found.published), ("measured", found.measured)):
            shown = ", ".join(f"{k} {v}" for k, v in numbers.items()) if numbers else "none"
            print(f"# {label}: {shown}")
        if found.notes:
            print(f"# notes: {found.notes}")
        print(f"# run it: kgem train --recipe {found.name}  (flags override it)\n")
        print(found.text(), end="")
    elif args.markdown:
        print(markdown_table())
    else:
        with pd.option_context("display.max_colwidth", 120, "display.width", 250, "display.max_rows", None):
            print(recipes_table(full=args.full).to_string(na_rep="—", float_format=lambda x: f"{x:.3f}"))


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("datasets", help="list the registered datasets, or describe one",
                       description="Without arguments: list datasets with their published counts. "
                                   "'describe NAME' loads one and prints counts, relation categories and degrees.")
    p.add_argument("action", nargs="?", choices=["list", "describe"], default="list")
    p.add_argument("name", nargs="?", help="dataset name, or a folder with train/valid/test files")
    p.add_argument("--path", help="read the dataset from this local folder instead of the cache")
    p.add_argument("--on-unseen", choices=["error", "drop", "keep"], default="drop",
                   help="valid/test triples with entities unseen in train (default: drop; keep: the entities join "
                        "the vocabulary)")
    p.set_defaults(func=cmd_datasets)
    p = sub.add_parser("models", help="list the models with their arguments and papers",
                       description="Every registered model: representation kinds, arguments with defaults "
                                   "(set them with --set model.args.NAME=VALUE) and the paper it implements.")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("config", help="print the full config with every option explained",
                       description="Print the pipeline config as commented YAML: the defaults, or a config file "
                                   "with overrides applied. Save it, edit it, run it with 'kgem train --config'.")
    p.add_argument("config", nargs="?", help="a YAML/JSON config file to show resolved")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. model.dim=200")
    p.set_defaults(func=cmd_config)
    p = sub.add_parser("recipes", help="list the shipped training recipes with published and measured results",
                       description="Recipes are config files that follow a published model's settings (ComplEx-N3, "
                                   "with relation prediction, RotatE, TuckER, TransE on FB15k-237, WN18RR, "
                                   "YAGO3-10, CoDEx-L) or reach the best test MRR in a CPU time budget. Without a "
                                   "name: the table; with one: its source, numbers and config. "
                                   "Run one with 'kgem train --recipe NAME'.")
    p.add_argument("name", nargs="?", help="a recipe: print its source, numbers and config file")
    p.add_argument("--full", action="store_true", help="every metric, time, hardware and source")
    p.add_argument("--markdown", "--table", action="store_true", help="the table as Markdown (as in the README)")
    p.set_defaults(func=cmd_recipes)
