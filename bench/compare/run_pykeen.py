"""PyKEEN 1.11.1's side: one configuration, one process, one JSON line on stdout (runs in bench/.envs/pykeen).

    PYTHONPATH=bench bench/.envs/pykeen/bin/python -m compare.run_pykeen --config C1

Training is PyKEEN's own ``SLCWATrainingLoop`` / ``LCWATrainingLoop.train()``; a training callback ticks the clock
after every batch and ends training with an exception once the measurement is done. Evaluation is PyKEEN's
``RankBasedEvaluator(filtered=True)``.

Where the semantics line up with kgem (and where they do not):

- Data: the same id triples (``compare.export``), wrapped in a ``CoreTriplesFactory``.
- Negatives: PyKEEN's ``BasicNegativeSampler`` (``"basic"``) repeats each positive 64 times and corrupts the heads of
  the first half of the flattened ``B * 64`` negatives and the tails of the second half; the batch is shuffled, so
  each positive has all its negatives on one random side, as kgem's uniform ``NegativeSampler`` has. PyKEEN never
  draws the true entity itself (kgem may, with probability 1/E). PyKEEN scores the negatives as ``B * 64`` full
  triples (``score_hrt`` re-embeds h, r and t of each); kgem broadcasts ``(B, 1, d)`` against ``(B, 64, d)``.
- TransE: PyKEEN normalises entity rows to unit L2 norm after each optimizer step (its ``entity_constrainer``);
  kgem runs with ``normalize="step"``, the same projection (its default, ``forward``, normalises inside the forward
  pass with the gradient flowing through it: a different training rule).
- DistMult: PyKEEN's default entity normalisation and relation L2 regulariser are switched off (kgem has neither).
- RotatE: PyKEEN 1.11.1's ``RotatEInteraction.forward`` returns ``negative_norm(h * r - t, p=2)`` and ignores its
  ``p`` argument, so its RotatE is the L2 norm of the complex difference, never the paper's sum of moduli; kgem runs
  with ``p=2``, the same function (its default ``p=1`` is the paper's). Relations are unit-modulus in both (PyKEEN:
  a constrainer on complex numbers; kgem: phases).
- ComplEx: PyKEEN's default L2 regulariser is switched off. KvsAll: ``LCWATrainingLoop`` predicts tails of distinct
  ``(h, r)`` of a factory with inverse triples, which is kgem's ``KvsAll`` with ``inverse=True``.
- Losses: ``MarginRankingLoss(margin=1)``, ``SoftplusLoss``, ``NSSALoss(margin=9, adversarial_temperature=1)``,
  ``BCEWithLogitsLoss``: all mean-reduced, as kgem's.
- Initialisers differ (PyKEEN's defaults are kept); they do not change the work per batch.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

import numpy as np

from compare.common import (
    SETTINGS,
    Clock,
    Data,
    Setting,
    current_rss_mb,
    emit,
    eval_triples,
    guarded,
    load_data,
    runner_args,
    timed,
    training_result,
)

# PyKEEN materialises (B, E, d) for all-entity scores of TransE (h + r - t) and ComplEx (its einsum); 32 queries keep
# that near 370 MB (kgem's default budget is 256 MB). 32 was also faster than 256 for ComplEx (3.2 GB peak) here.
EVAL_BATCH = {"transe": 32, "complex": 32}


class MeasurementDone(Exception):
    """Raised from the callback to leave PyKEEN's training loop (not a RuntimeError, which PyKEEN would catch)."""


def build_model(setting: Setting, factory: Any, seed: int) -> Any:
    from pykeen import losses, models

    common: dict[str, Any] = {"triples_factory": factory, "random_seed": seed}
    if setting.approach != "eval":
        loss_classes = {"margin_ranking": losses.MarginRankingLoss, "softplus": losses.SoftplusLoss,
                        "self_adversarial": losses.NSSALoss, "bce": losses.BCEWithLogitsLoss}
        loss_args = dict(setting.loss_args)
        if setting.loss == "self_adversarial":
            loss_args["adversarial_temperature"] = loss_args.pop("temperature")
        common["loss"] = loss_classes[setting.loss](**loss_args)
    if setting.model == "transe":
        return models.TransE(embedding_dim=setting.dim, scoring_fct_norm=2, **common)
    if setting.model == "distmult":
        return models.DistMult(embedding_dim=setting.dim, entity_constrainer=None, regularizer=None, **common)
    if setting.model == "rotate":
        return models.RotatE(embedding_dim=setting.dim // 2, **common)
    if setting.model == "complex":
        return models.ComplEx(embedding_dim=setting.dim // 2, regularizer=None, **common)
    raise ValueError(setting.model)


def factory_of(data: Data, inverse: bool) -> Any:
    import torch
    from pykeen.triples import CoreTriplesFactory

    return CoreTriplesFactory(mapped_triples=torch.from_numpy(data.train), num_entities=data.num_entities,
                              num_relations=data.num_relations, create_inverse_triples=inverse)


def train(setting: Setting, args: argparse.Namespace) -> None:
    import torch
    from pykeen.training import LCWATrainingLoop, SLCWATrainingLoop
    from pykeen.training.callbacks import TrainingCallback

    data = load_data(args.data)
    factory = factory_of(data, setting.inverse)
    model = build_model(setting, factory, args.seed)
    optimizer = torch.optim.Adam(params=model.get_grad_params(), lr=setting.lr)
    clock = Clock(args.warmup, args.seconds, args.min_batches)
    losses: list[float] = []
    entity_weight = model.entity_representations[0]._embeddings.weight
    start: list[Any] = []

    class Tick(TrainingCallback):
        """Registered before PyKEEN's optimizer callback: ticks between batch k's backward and its optimizer step,
        so each measured interval holds exactly one full batch (step, loading, forward, backward)."""

        def pre_batch(self, **kwargs: Any) -> None:
            if not start:  # train() re-initialises the model, so the starting weights are taken here
                start.append(entity_weight.detach().clone())

        def on_batch(self, epoch: int, batch: Any, batch_loss: float, **kwargs: Any) -> None:
            losses.append(float(batch_loss))

        def post_batch(self, epoch: int, batch: Any, **kwargs: Any) -> None:
            if not clock.tick(self.training_loop._get_batch_size(batch), losses[-1] if losses else None):
                raise MeasurementDone

    if setting.approach == "kvsall":
        loop: Any = LCWATrainingLoop(model=model, triples_factory=factory, optimizer=optimizer, target="tail")
        loader = loop._create_training_data_loader(factory, sampler=None, batch_size=setting.batch_size)
        rows_per_epoch = len(loader.dataset)  # distinct (h, r) queries of the triples and their inverses
    else:
        loop = SLCWATrainingLoop(model=model, triples_factory=factory, optimizer=optimizer,
                                 negative_sampler="basic",
                                 negative_sampler_kwargs={"num_negs_per_pos": setting.negatives})
        rows_per_epoch = factory.num_triples
    with contextlib.suppress(MeasurementDone):
        loop.train(triples_factory=factory, num_epochs=10**6, batch_size=setting.batch_size, use_tqdm=False,
                   use_tqdm_batch=False, callbacks=[Tick()])
    per_row = data.train.shape[0] / rows_per_epoch if setting.approach == "kvsall" else 1.0
    change = float((entity_weight.detach() - start[0]).norm() / start[0].norm())
    emit("pykeen", setting, args, **training_result(clock.timing, per_row, rows_per_epoch=rows_per_epoch,
                                                     entity_relative_change=change,
                                                     loss_note="first and last batch loss"))


def evaluate(setting: Setting, args: argparse.Namespace) -> None:
    import torch
    from pykeen.evaluation import RankBasedEvaluator

    data = load_data(args.data)
    factory = factory_of(data, False)
    model = build_model(setting, factory, args.seed)
    test = torch.from_numpy(eval_triples(data, args.eval_limit))
    # filter = train + valid + test (PyKEEN adds the evaluated triples themselves; with --eval-limit the full test
    # split must still filter, so it is passed too; duplicates are harmless)
    extra = [torch.from_numpy(a) for a in (data.train, data.valid, data.test)]
    batch = args.eval_batch_size or EVAL_BATCH[setting.model]
    evaluator = RankBasedEvaluator(filtered=True)
    rss_before = current_rss_mb()
    result, seconds = timed(lambda: evaluator.evaluate(model, test, batch_size=batch, additional_filter_triples=extra,
                                                       use_tqdm=False))
    queries = 2 * len(test)
    emit("pykeen", setting, args, kind="eval", seconds=round(seconds, 3), eval_seconds=round(seconds, 3),
         queries=queries, queries_per_s=queries / seconds, eval_batch_size=batch,
         score_gflops_per_s=2 * queries * data.num_entities * setting.dim / seconds / 1e9,
         rss_before_mb=round(rss_before, 1),
         mrr=float(result.get_metric("both.realistic.inverse_harmonic_mean_rank")), rank_type="realistic")


def main() -> None:
    args = runner_args(__doc__ or "")
    setting = SETTINGS[args.config]
    np.random.seed(args.seed)
    sys.exit(guarded("pykeen", setting, args, evaluate if setting.approach == "eval" else train))


if __name__ == "__main__":
    main()
