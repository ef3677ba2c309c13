"""``kgem optimize``: a hyper-parameter search on Optuna over the ranges of a config's ``hpo.search_space``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kgem.errors import ConfigError
from kgem.hpo import BEST, STUDY, hpo, import_optuna, quiet, study_url, trials_table

OPTIMIZE_HELP = """\
Search hyper-parameters: every trial trains the config with values drawn from its hpo.search_space (ranges for any
config key), is ranked by validation MRR, and may be stopped early by the pruner. Each trial is a run folder under
OUTPUT/trials/; the study is kept in OUTPUT/study.db, so running the same command again resumes a search that was
stopped; the best trial's config is written to OUTPUT/best_config.yaml.

a config with a search space (the rest as for kgem train):
  model: {name: distmult}
  training: {epochs: 40, frequency: 5}
  hpo:
    trials: 20
    search_space:
      model.dim: {type: int, low: 32, high: 256, log: true}
      training.lr: {type: float, low: 0.01, high: 0.5, log: true}
      training.regularizer_args.weight: {type: float, low: 0.0001, high: 0.1, log: true}

examples:
  kgem optimize search.yaml -o runs/search --trials 20
  kgem optimize search.yaml -o runs/search --table          the trials so far, without running any
  kgem train --config runs/search/best_config.yaml"""


def cmd_optimize(args: argparse.Namespace) -> None:
    output = Path(args.output)
    if args.table:
        print_table(output)
        return
    result = hpo(args.config, output=output, n_trials=args.trials, sampler=args.sampler, pruner=args.pruner,
                 timeout=args.timeout, overrides=args.set, progress=not args.quiet)
    print(result.trials.to_string())
    best = result.trials.loc[result.best_trial]
    print(f"\nbest: trial {result.best_trial}, validation MRR {best['valid_mrr']:.4f}, run folder "
          f"{output / str(best['run_folder'])}")
    print(f"its config: {output / BEST} (kgem train --config {output / BEST})")


def print_table(output: Path) -> None:
    """The trials of the search in ``output``, read from its study without running any."""
    if not (output / "study.db").is_file():
        raise ConfigError(f"{output} holds no search (no study.db)")
    optuna = import_optuna()
    with quiet(optuna):
        study = optuna.load_study(study_name=STUDY, storage=study_url(output))
    print(trials_table(study).to_string())


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("optimize", help="search hyper-parameters with Optuna (a config with hpo.search_space)",
                       description=OPTIMIZE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML or JSON config with an hpo.search_space section")
    p.add_argument("-o", "--output", required=True, help="the search's folder (run it again to resume)")
    p.add_argument("--trials", type=int, help="trials to finish (default: hpo.trials)")
    p.add_argument("--sampler", choices=["tpe", "random", "grid"], help="default: hpo.sampler")
    p.add_argument("--pruner", choices=["none", "median", "percentile", "successive_halving", "hyperband",
                                        "threshold"], help="default: hpo.pruner")
    p.add_argument("--timeout", type=float, help="seconds after which no new trial starts")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--table", action="store_true", help="print the trials so far and stop")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_optimize)
