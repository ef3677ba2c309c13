"""PyTorch-BigGraph 1.0.0's side: one configuration, one process, one JSON line on stdout (runs in bench/.envs/pbg).

    PYTHONPATH=bench bench/.envs/pbg/bin/python -m compare.run_pbg --config C1s

Data: the exported id triples are written as TSV and converted once by PBG's own importer
(``convert_input_data``, one entity type, one partition, dynamic relations) into HDF5 under
``<scratch>/pbg/fb15k237``. PBG renumbers the entities; the graph is the same.

Training: PBG's ``train_and_report_stats`` generator (what ``torchbiggraph_train`` runs) with ``workers=2`` HOGWILD
processes (PBG sets one intra-op thread in each), one edge chunk per epoch, so it yields once per epoch. The clock
ticks between yields, so a measured interval is whole epochs including PBG's per-epoch checkpoint write; the first
epoch (pool start, PBG's 2 s ``hogwild_delay`` for the second worker) is warm-up. PBG's own compute-only rate
(its "Processed N edges in X s" log line, pool work only) is reported as ``compute_only_triples_per_s``.

PBG's semantics (kept, not aligned with kgem):

- each positive is scored against 64 uniform negatives on the left *and* 64 on the right (two losses summed), and the
  batch is cut into chunks of ``num_uniform_negs`` = 64 positives that share one sample of negatives; kgem's shared
  mode corrupts one random side per positive with 64 entities shared by the whole batch, so PBG scores twice as
  many negatives per positive (reported as ``negative_scores_per_positive``);
- dynamic relations keep two operators per relation (one applied to the right side, one to the left), FB15k-237's
  usual PBG set-up (its ``fb15k`` example);
- no entity normalisation for TransE (kgem runs with ``normalize="none"``, the same); entity embeddings use PBG's
  row-wise Adagrad (one accumulator per row), relation parameters dense Adagrad; kgem uses its ``rowadagrad`` (the same
  row-wise rule) for both tables, with sparse gradients (touched rows only);
- losses are summed over the batch (``reduction="sum"``), kgem's are means; the softmax loss is PBG's
  ``cross_entropy([pos, logsumexp(neg)])``, which equals kgem's ``cross_entropy`` over ``[pos, neg...]``.

Evaluation (E1): PBG's ``FilteredRankingEvaluator`` (its filter is a Python dict built edge by edge from the
train, valid and test edge files) and ``do_eval`` with ``all_negs`` on a TransE model trained for one epoch. Its ranks
count negatives scoring ``>=`` the positive (pessimistic ties; kgem's are realistic).
"""

from __future__ import annotations

import argparse
import logging
import re
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from compare.common import (
    SETTINGS,
    Clock,
    Data,
    Setting,
    current_rss_mb,
    emit,
    guarded,
    load_data,
    runner_args,
    timed,
    training_result,
)

SPLITS = ("train", "valid", "test")
PROCESSED = re.compile(r"Processed (\d+) edges in ([0-9.e+-]+) s")


class LogTap(logging.Handler):
    """Collects PBG's per-bucket "Processed N edges in X s" lines (compute time of the worker pool only)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.buckets: list[tuple[int, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = PROCESSED.search(record.getMessage())
        if match:
            self.buckets.append((int(match.group(1)), float(match.group(2))))


def tap_logs() -> LogTap:
    tap = LogTap()
    logger = logging.getLogger("torchbiggraph")
    logger.setLevel(logging.INFO)
    logger.addHandler(tap)
    logger.propagate = False
    return tap


def convert(data: Data, data_folder: Path, scratch: Path) -> tuple[Path, dict[str, Path]]:
    """PBG's importer, once: TSV of ids -> entity counts / names + HDF5 edges. Returns (entity path, edge paths)."""
    from torchbiggraph.config import EntitySchema, RelationSchema
    from torchbiggraph.converters.import_from_tsv import convert_input_data

    root = scratch / "pbg" / "fb15k237"
    entity_path = root / "entities"
    edges = {split: root / f"{split}_partitioned" for split in SPLITS}
    done = root / ".converted"
    source = str((data_folder / "meta.json").resolve())
    if done.is_file() and done.read_text() == source:
        return entity_path, edges
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    tsv = {}
    for split in SPLITS:
        tsv[split] = root / f"{split}.tsv"
        np.savetxt(tsv[split], getattr(data, split), fmt="%d", delimiter="\t")
    convert_input_data({"all": EntitySchema(num_partitions=1)},
                       [RelationSchema(name="all_edges", lhs="all", rhs="all", operator="none")],
                       str(entity_path), [str(edges[s]) for s in SPLITS], [tsv[s] for s in SPLITS],
                       lhs_col=0, rhs_col=2, rel_col=1, dynamic_relations=True)
    done.write_text(source)
    return entity_path, edges


def config_of(setting: Setting, entity_path: Path, edge_path: Path, checkpoint: Path, **overrides: Any) -> Any:
    from torchbiggraph.config import ConfigSchema

    operator, comparator, loss = {"transe": ("translation", "l2", "ranking"),
                                  "complex": ("complex_diagonal", "dot", "softmax")}[setting.model]
    if setting.approach == "slcwa":
        loss = {"margin_ranking": "ranking", "cross_entropy": "softmax"}[setting.loss]
    raw = {
        "entity_path": str(entity_path), "edge_paths": [str(edge_path)], "checkpoint_path": str(checkpoint),
        "entities": {"all": {"num_partitions": 1}},
        "relations": [{"name": "all_edges", "lhs": "all", "rhs": "all", "operator": operator}],
        "dynamic_relations": True, "dimension": setting.dim, "global_emb": False, "comparator": comparator,
        "loss_fn": loss, "margin": setting.loss_args.get("margin", 0.1), "lr": setting.lr,
        "batch_size": setting.batch_size, "num_batch_negs": 0, "num_uniform_negs": setting.negatives,
        "workers": setting.hogwild_workers, "num_edge_chunks": 1, "eval_fraction": 0.0, "num_epochs": 1,
        **overrides,
    }
    return ConfigSchema.from_dict(raw)


def train(setting: Setting, args: argparse.Namespace) -> None:
    from torchbiggraph.train import train_and_report_stats

    data = load_data(args.data)
    scratch = Path(args.scratch)
    entity_path, edges = convert(data, Path(args.data), scratch)
    checkpoint = scratch / "pbg" / f"checkpoint-{setting.name}-{int(time.time() * 1000)}"
    # --quick: 8 edge chunks per epoch (a tick per chunk, a checkpoint write after each) and no hogwild_delay, so
    # that a few seconds measure something; a full run ticks once per epoch and keeps PBG's defaults
    quick = {"num_edge_chunks": 8, "hogwild_delay": 0.0} if args.quick else {}
    config = config_of(setting, entity_path, edges["train"], checkpoint, num_epochs=10**6, **quick)
    tap = tap_logs()
    # warm-up: at least one whole epoch (or chunk; pool start, hogwild_delay); a tick per epoch (or chunk)
    clock = Clock(args.warmup, args.seconds, max(1, args.min_batches // 20), min_warmup_batches=1)
    run = train_and_report_stats(config)
    try:
        for _index, _before, stats, _after in run:
            loss = stats.metrics.get("loss")  # absent: no loss recorded (NaN would read as a diverged run)
            if not clock.tick(stats.count, None if loss is None else float(loss)):
                break
    finally:
        run.close()
        shutil.rmtree(checkpoint, ignore_errors=True)
    measured = tap.buckets[clock.timing.warmup_batches : clock.timing.warmup_batches + clock.timing.batches]
    compute_s = sum(s for _, s in measured)
    emit("pbg", setting, args, **training_result(
        clock.timing, rows_per_epoch=len(data.train), edge_chunks_measured=clock.timing.batches,
        workers=setting.hogwild_workers, threads_per_worker=1,
        compute_only_triples_per_s=sum(n for n, _ in measured) / compute_s if compute_s else None,
        negative_scores_per_positive=2 * setting.negatives, loss_note="PBG loss per positive (summed over both "
        "sides) of the first and the last epoch", children_peak_rss_mb=children_peak_mb()))


def children_peak_mb() -> float:
    """Largest peak RSS of the reaped worker processes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def evaluate(setting: Setting, args: argparse.Namespace) -> None:
    import attr
    from torchbiggraph.eval import do_eval_and_report_stats
    from torchbiggraph.filtered_eval import FilteredRankingEvaluator
    from torchbiggraph.graph_storages import EDGE_STORAGES
    from torchbiggraph.train import train as pbg_train

    data = load_data(args.data)
    scratch = Path(args.scratch)
    entity_path, edges = convert(data, Path(args.data), scratch)
    checkpoint = scratch / "pbg" / f"checkpoint-{setting.name}-{int(time.time() * 1000)}"
    train_setting = SETTINGS["C1s"] if setting.model == "transe" else SETTINGS["C4s"]
    config = config_of(train_setting, entity_path, edges["train"], checkpoint)
    tap = tap_logs()
    try:
        pbg_train(config)  # one epoch: PBG evaluates only a checkpoint
        test_path = edges["test"]
        if args.eval_limit:  # the first N test edges, in PBG's ids, as their own edge file
            test_path = scratch / "pbg" / f"test-first-{args.eval_limit}-{checkpoint.name}"
            storage = EDGE_STORAGES.make_instance(str(test_path))
            storage.prepare()
            full = EDGE_STORAGES.make_instance(str(edges["test"])).load_edges(0, 0)
            storage.save_edges(0, 0, full[: args.eval_limit])
        relations = [attr.evolve(r, all_negs=True) for r in config.relations]
        eval_config = attr.evolve(config, edge_paths=[str(test_path)], relations=relations, num_uniform_negs=0)
        rss_before = current_rss_mb()
        tap.buckets.clear()
        filters = [str(edges[s]) for s in ("test", "valid", "train")]
        evaluator, filter_s = timed(lambda: FilteredRankingEvaluator(eval_config, filters))
        reports, eval_s = timed(lambda: list(do_eval_and_report_stats(eval_config, evaluator=evaluator)))
    finally:
        shutil.rmtree(checkpoint, ignore_errors=True)
        if args.eval_limit:
            shutil.rmtree(test_path, ignore_errors=True)
    queries = 2 * (args.eval_limit or len(data.test))
    compute_s = sum(s for _, s in tap.buckets)
    emit("pbg", setting, args, kind="eval", seconds=round(filter_s + eval_s, 3), filter_seconds=round(filter_s, 3),
         eval_seconds=round(eval_s, 3), eval_compute_seconds=round(compute_s, 3), queries=queries,
         queries_per_s=queries / eval_s, rss_before_mb=round(rss_before, 1),
         children_peak_rss_mb=children_peak_mb(), mrr=reports[-1][2].metrics.get("mrr"),
         rank_type="pessimistic (PBG counts ties against)",
         note="eval_seconds includes spawning PBG's 2 worker processes and loading the checkpoint; "
              "eval_compute_seconds is the pool's work only")


def main() -> None:
    args = runner_args(__doc__ or "")
    setting = SETTINGS[args.config]
    sys.exit(guarded("pbg", setting, args, evaluate if setting.approach == "eval" else train))


if __name__ == "__main__":
    main()
