"""``make demo``: load a bundled dataset, train ComplEx, and print the filtered test metrics."""

from __future__ import annotations

import argparse

import torch

from kgem.data import load_dataset, relation_categories
from kgem.evaluation import evaluate
from kgem.models import build_model, initializers
from kgem.training import LOSSES, REGULARIZERS, EarlyStopping, OneVsAll, Trainer, build_optimizer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="umls")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    ds = load_dataset(args.dataset)
    assert ds.valid is not None and ds.test is not None
    print(ds, end="\n\n")
    init = initializers.normal(std=1e-3)
    model = build_model("complex", ds.num_entities, ds.num_relations, 100, inverse=True,
                        entity_initializer=init, relation_initializer=init)
    known = ds.known()
    valid = ds.valid.hrt
    trainer = Trainer(model, OneVsAll(), LOSSES.get("cross_entropy")(),
                      build_optimizer("adagrad", model.parameters(), lr=0.1),
                      regularizer=REGULARIZERS.get("n3")(weight=0.01), batch_size=256)
    history = trainer.fit(ds.train.hrt, args.epochs,
                          EarlyStopping(lambda m: evaluate(m, valid, known=known).mrr, frequency=5, patience=2))
    print(f"\ntrained ComplEx for {len(history.losses)} epochs in {history.seconds:.1f} s "
          f"(best validation MRR at epoch {history.best_epoch})\n")
    categories = relation_categories(ds.train.hrt, ds.num_relations)
    result = evaluate(model, ds.test.hrt, known=known, filter_splits="train+valid+test",
                      relation_categories=categories)
    print(result, end="\n\n")
    print("by relation category:")
    print(result.per_category().round(3).to_string())


if __name__ == "__main__":
    main()
