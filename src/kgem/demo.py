"""``make demo``: train ComplEx on a bundled dataset through the pipeline, print the test metrics, save the model,
load it back, ask it questions (the top-5 tails of a readable query and the nearest neighbours of an entity), and
draw the run's plots (with matplotlib, the ``plot`` extra that ``make demo`` installs)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

import kgem
from kgem.cli.train import next_run_folder
from kgem.errors import KgemError
from kgem.plots import plot_run

QUERIES = {  # a readable query and an entity to find neighbours of, per bundled dataset
    "umls": (("virus", "causes"), "virus"),
    "nations": (("usa", "intergovorgs"), "usa"),
    "kinships": (("person0", "term1"), "person0"),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="umls", choices=sorted(QUERIES))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--output", type=Path, help="run folder (default: runs/demo_{dataset}_{n})")
    args = parser.parse_args(argv)
    output = args.output or next_run_folder("demo", args.dataset)
    # the default config is the ComplEx recipe: 1vsAll, reciprocal relations, N3, Adagrad, early stopping
    result = kgem.pipeline(overrides=[f"data.dataset={args.dataset}", f"training.epochs={args.epochs}"],
                           output=output)
    print(result.dataset, end="\n\n")
    print(f"trained ComplEx for {len(result.history.losses)} epochs in {result.timings['train']:.1f} s "
          f"(best validation MRR at epoch {result.history.best_epoch})\n")
    assert result.evaluation is not None
    print(result.evaluation, end="\n\n")
    print("by relation category:")
    print(result.evaluation.per_category().round(3).to_string(), end="\n\n")

    start = time.perf_counter()
    model = kgem.load(output / "model").with_known(result.dataset)  # a fresh object, read from the saved files
    print(f"saved to {output / 'model'} and loaded back in {time.perf_counter() - start:.2f} s\n")
    (head, relation), entity = QUERIES[args.dataset]
    with pd.option_context("display.width", 200):
        print(f"top 5 answers to ({head}, {relation}, ?); 'known' marks facts of train/valid/test:")
        print(model.predict_tails([(head, relation)], k=5).to_string(index=False), end="\n\n")
        print("top 5 answers not already known, i.e. what else is probably true:")
        print(model.predict_tails([(head, relation)], k=5, remove_known=True).to_string(index=False), end="\n\n")
        print(f"nearest neighbours of {entity} (cosine similarity of embeddings):")
        print(model.similar([entity], k=5).to_string(index=False), end="\n\n")
    print(f"more: kgem predict {output / 'model'} --head {head} --relation {relation} -k 10 --remove-known")
    try:
        written = plot_run(output, which=["losses", "validation", "embeddings"])
    except KgemError as e:  # matplotlib missing: the demo has done its job; say how to get the plots
        print(f"no plots: {e}")
        return
    print("\nplots of the run: " + ", ".join(map(str, written)))


if __name__ == "__main__":
    main()
