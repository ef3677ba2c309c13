"""``kgem evaluate | predict | similar | index | export``: use a saved model directory."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from kgem.circuits.model import CircuitModel
from kgem.config import apply_overrides, from_dict, yaml_value
from kgem.configs import DataConfig, EvaluationConfig
from kgem.data import Dataset, relation_categories
from kgem.data.negatives import GivenNegatives
from kgem.data.parquet import SUFFIXES as TABLE_SUFFIXES
from kgem.data.parquet import read_frame, table_format, write_frame
from kgem.data.rdf import model_prefixes, rdf_format, write_ntriples
from kgem.data.triples import Triples, read_triples
from kgem.errors import KgemError
from kgem.evaluation.calibrators import calibration_report, plot_binary_reliability
from kgem.evaluation.classification import classify
from kgem.evaluation.classification import score_triples as score_all
from kgem.factory import (
    dataset_from_config,
    evaluator_from_config,
    negative_weights_from_config,
    negatives_from_config,
)
from kgem.inference.index import NeighbourIndex, build_index, draw_ids, recall
from kgem.inference.similarity import Kind
from kgem.pipeline import test_likelihood, write_csv
from kgem.saving import LoadedModel, load_model, save_calibration


def load(args: argparse.Namespace) -> Any:
    return load_model(args.model, device=getattr(args, "device", None) or "cpu", mmap=getattr(args, "mmap", False))


def dataset_for(loaded: Any, args: argparse.Namespace) -> Any:
    """The dataset the model was trained on (from its saved config), or the one named by --dataset/--data-path."""
    saved = loaded.extra.get("pipeline", {}).get("data")
    if saved is None and args.dataset is None and args.data_path is None:
        raise KgemError(f"{args.model} does not say which dataset it was trained on; give --dataset or --data-path")
    cfg = from_dict(DataConfig, saved) if saved is not None else DataConfig()
    overrides = [f"dataset={yaml_value(args.dataset)}"] if args.dataset else []
    if args.data_path or args.dataset:
        overrides.append(f"path={yaml_value(args.data_path)}")
    return dataset_from_config(apply_overrides(cfg, overrides))


def write_or_print(frame: pd.DataFrame, output: str | None, index: bool = False) -> None:
    if output is None:
        with pd.option_context("display.width", 200, "display.max_rows", 500):
            print(frame.to_string(index=index))
        return
    if Path(output).is_dir():
        raise KgemError(f"{output}: is a folder; --output takes the name of a CSV or Parquet file")
    if output.endswith(TABLE_SUFFIXES):  # .parquet, .arrow, ...: the frame's columns as they are (kgem[parquet])
        write_frame(frame, output, index=index)
    else:
        write_csv(frame if index else frame.set_index(frame.columns[0]), Path(output))
    print(f"wrote {len(frame)} rows to {output}")


def check_folder(path: str | Path) -> None:
    """A folder to write into: it, or the nearest of its parents that exists, must be a folder."""
    for folder in (Path(path), *Path(path).parents):
        if folder.exists():
            if not folder.is_dir():
                raise KgemError(f"{path}: {folder} exists and is not a folder")
            return


def evaluation_config(loaded: LoadedModel, args: argparse.Namespace, ds: Dataset) -> EvaluationConfig:
    """The evaluation section the model was trained with, overridden by the flags given."""
    flags = {key: value for key, value in [("num_negatives", args.eval_negatives), ("fraction", args.eval_fraction),
                                           ("negative_sampler", args.eval_sampler),
                                           ("seed", args.seed), ("memory_budget_mb", args.memory_budget_mb),
                                           ("sides", args.sides), ("rank_type", args.rank_type),
                                           ("protocol", args.protocol)]
             if value is not None}
    if args.eval_negatives == 0:  # every entity: the exact ranking, whatever the model was trained with
        flags["num_negatives"] = None
    if args.filter is not None:
        flags["filter"] = [s for s in args.filter.split(",") if s and s != "none"]
    cfg = from_dict(EvaluationConfig, {**loaded.extra.get("pipeline", {}).get("evaluation", {}), **flags})
    unknown = [s for s in cfg.filter if s not in ds.splits()]
    if unknown:
        raise KgemError(f"--filter: no split {unknown[0]!r}; the dataset has {', '.join(ds.splits())}")
    return cfg


def given_negatives(loaded: LoadedModel, ds: Dataset, cfg: EvaluationConfig, split: str) -> GivenNegatives | None:
    """Protocol ogb's negatives of ``split`` in the model's ids: the dataset's, matched by label where the model's
    vocabularies differ (None for the standard protocol)."""
    negatives = negatives_from_config(cfg, ds, split)
    if negatives is None or (ds.entities == loaded.entities and ds.relations == loaded.relations):
        return negatives
    return negatives.translated(loaded.entities.lookup(ds.entities.labels),
                                loaded.relations.lookup(ds.relations.labels))


def evaluate_classification(loaded: LoadedModel, ds: Dataset, split: Triples, args: argparse.Namespace) -> None:
    """``kgem evaluate --task classification``: thresholds tuned on the valid split (its negatives from
    ``--valid-negatives`` or corrupted), the split classified with them (its negatives from ``--negatives`` or
    corrupted, as ``--corruption`` says)."""
    if ds.valid is None:
        raise KgemError("triple classification tunes its thresholds on the valid split; the dataset has none")

    def negatives(given: str | None, positives: torch.Tensor, seed: int) -> torch.Tensor:
        if given:
            read = read_triples(given, entities=loaded.entities, relations=loaded.relations, on_unseen="drop")
            return loaded.encode(read)
        return loaded.corruptions(ds, positives, args.corruption, seed)

    valid, test = loaded.encode(ds.valid), loaded.encode(split)
    result = classify(loaded.model, (valid, negatives(args.valid_negatives, valid, 1)),
                      (test, negatives(args.negatives, test, 2)), relation_labels=loaded.relations.labels)
    print(result)
    table = result.table(per_relation=args.per_relation)
    if args.per_relation:
        print("\nby relation:\n" + table.round(4).to_string())
    if args.output:
        write_or_print(table, args.output, index=True)


def cmd_evaluate(args: argparse.Namespace) -> None:
    loaded = load(args)
    ds = dataset_for(loaded, args)
    split = ds.splits().get(args.split)
    if split is None:
        raise KgemError(f"the dataset has no {args.split} split (it has {', '.join(ds.splits())})")
    if args.task == "classification":
        evaluate_classification(loaded, ds, split, args)
        return
    cfg = evaluation_config(loaded, args, ds)
    hrt = loaded.encode(split)
    if len(split) and not len(hrt):
        raise KgemError(f"none of the {len(split)} {args.split} triples uses only labels the model knows: is it the "
                        f"dataset the model was trained on?")
    filtered = cfg.filter and cfg.protocol != "ogb"  # OGB's protocol filters nothing
    known = loaded.with_known([ds.splits()[s] for s in cfg.filter]).known if filtered else None
    train = loaded.encode(ds.train)
    evaluator = evaluator_from_config(cfg, known, progress=not args.quiet, relation_categories=relation_categories(
        train, loaded.model.num_relations), negative_weights=negative_weights_from_config(
        cfg, train, loaded.model.num_entities), negatives=given_negatives(loaded, ds, cfg, args.split))
    result = evaluator(loaded.model, hrt)
    if len(hrt) < len(split):
        print(f"left out {len(split) - len(hrt)} {args.split} triples with labels the model does not know")
    print(result)
    if isinstance(loaded.model, CircuitModel) and len(hrt):  # a distribution: how likely the split is, too
        likelihood = test_likelihood(loaded.model, hrt)
        print(f"{args.split} log-likelihood {likelihood['log_likelihood']:.4f} nats per triple (uniform "
              f"{likelihood['uniform_log_likelihood']:.4f})")
        if likelihood.get("excluded_triples"):  # a typed circuit: triples its constraints give probability 0
            print(f"{int(likelihood['excluded_triples'])} {args.split} triples break the constraints; the others "
                  f"average {likelihood.get('log_likelihood_allowed', float('nan')):.4f}")
    if args.per_category:
        print("\nby relation category:\n" + result.per_category().round(4).to_string())
    if args.per_relation:
        print("\nby relation:\n" + result.per_relation(loaded.relations.labels).round(4).to_string())
    if args.output:
        write_or_print(result.to_df(), args.output, index=True)


def cmd_predict(args: argparse.Namespace) -> None:
    loaded = load(args)
    given = {"head": args.head, "relation": args.relation, "tail": args.tail}
    if args.file:
        if any(value is not None for value in given.values()):
            raise KgemError("give either --file or --head/--relation/--tail, not both")
        queries = read_queries(args.file)
        columns = [c for c in ("head", "relation", "tail") if c in queries.columns]
        if len(columns) < 2:
            raise KgemError(f"{args.file}: needs a header with two or three of head, relation, tail; "
                            f"got {list(queries.columns)}")
    else:
        columns = [name for name, value in given.items() if value is not None]
        if len(columns) < 2:
            raise KgemError("give two of --head, --relation, --tail (the third is predicted) or all three (scored)")
        queries = pd.DataFrame({name: [given[name]] for name in columns})
    if args.remove_known or args.mark_known:
        loaded = loaded.with_known(dataset_for(loaded, args))
    if len(columns) == 3:
        frame = loaded.score_triples(queries)
    else:
        missing = ({"head", "relation", "tail"} - set(columns)).pop()
        method = {"tail": loaded.predict_tails, "head": loaded.predict_heads,
                  "relation": loaded.predict_relations}[missing]
        frame = method(queries, k=args.k, remove_known=args.remove_known)
    if args.output and rdf_format(args.output) == "ntriples":  # the triples, IRIs expanded by the model's prefixes
        print(f"wrote {len(frame)} triples to {write_ntriples(frame, args.output, model_prefixes(loaded.extra))}")
        return
    write_or_print(frame, args.output)


def read_queries(path: str) -> pd.DataFrame:
    """The queries of ``predict --file``: CSV or TSV (tab-separated if the header has a tab), with a header naming
    the columns, or a Parquet or Arrow table."""
    file = Path(path)
    if file.is_dir():
        raise KgemError(f"{path}: is a folder, not a file of queries")
    if not file.exists():
        raise KgemError(f"{path}: no such file")
    if not file.stat().st_size:
        raise KgemError(f"{path}: empty; expected a header naming two or three of head, relation, tail, then a "
                        f"query per line")
    if table_format(file):
        return table_queries(file)
    try:
        with file.open(encoding="utf-8") as f:
            sep = "\t" if "\t" in f.readline() else ","  # a sniffer takes the 'u' of a lone 'usa' for one
        queries = pd.read_csv(file, sep=sep, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8")
    except (OSError, ValueError) as e:  # undecodable bytes, ragged rows
        raise KgemError(f"{path}: cannot read queries ({e}); expected a header naming two or three of head, "
                        f"relation, tail, separated by commas or tabs") from e
    if queries.empty:
        raise KgemError(f"{path}: a header but no queries; expected a query per line after it")
    return queries


def table_queries(file: Path) -> pd.DataFrame:
    """The queries of a Parquet or Arrow file, every label as text (integer labels too, as a TSV file gives them);
    a null is an error naming its row."""
    queries = read_frame(file)
    if queries.empty:
        raise KgemError(f"{file}: no queries (the table has no rows)")
    nulls = queries.isna().to_numpy().any(axis=1)
    if nulls.any():
        row = int(nulls.argmax())
        raise KgemError(f"{file}: row {row}: a null label: {queries.iloc[row].tolist()}")
    return queries.astype(str)


def cmd_calibrate(args: argparse.Namespace) -> None:
    """Fit a calibrator on the valid split, report ECE, Brier score and log loss on the test split before (the
    sigmoid of the raw scores) and after, and save it with the model (``calibration.json``)."""
    loaded = load(args)
    ds = dataset_for(loaded, args)
    negatives = read_triples(args.negatives, entities=loaded.entities, relations=loaded.relations,
                             on_unseen="drop") if args.negatives else None
    calibrated = loaded.calibrate(ds, args.method, negatives=negatives, corruption=args.corruption,
                                  positive_base_rate=args.positive_base_rate, seed=args.seed)
    assert calibrated.calibrator is not None
    report: dict[str, Any] = {"method": args.method, "calibrator": calibrated.calibrator.to_dict()}
    if ds.test is not None:
        test = loaded.encode(ds.test)
        negative = loaded.corruptions(ds, test, args.corruption, args.seed + 1)
        scores = score_all(loaded.model, torch.cat([test, negative]))
        labels = np.r_[np.ones(len(test)), np.zeros(len(negative))]
        before = 1 / (1 + np.exp(-scores))
        after = calibrated.calibrator.probabilities(scores)
        report["test"] = {"before": calibration_report(before, labels), "after": calibration_report(after, labels)}
        if args.plot:
            plot_binary_reliability({"uncalibrated": (before, labels), args.method: (after, labels)}, args.plot)
    save_calibration(args.model, calibrated.calibrator)
    print(json.dumps(report, indent=1))


def cmd_similar(args: argparse.Namespace) -> None:
    loaded = load(args)
    index = NeighbourIndex.load(args.index) if args.index else None
    kind = "relation" if args.relations else "entity"
    write_or_print(loaded.similar(args.labels, k=args.k, metric=args.metric, kind=kind, index=index), args.output)


def cmd_index(args: argparse.Namespace) -> None:
    """Build and save a neighbour index, then print its settings and its recall@k against the exact scan."""
    if Path(args.output).is_dir():
        raise KgemError(f"{args.output}: is a folder; -o takes the name of the index file")
    if args.recall_queries < 0 or args.k < 1:
        raise KgemError(f"--recall-queries must be 0 or more and -k at least 1, got {args.recall_queries} and {args.k}")
    check_folder(Path(args.output).parent)
    loaded = load(args)
    model = loaded._embedding_model("index")
    kind: Kind = "relation" if args.relations else "entity"
    started = time.perf_counter()
    index = build_index(model, metric=args.metric, kind=kind, lists=args.lists, probes=args.probes,
                        sample=args.sample, seed=args.seed)
    built = time.perf_counter() - started
    index.save(args.output)
    s = index.settings
    report: dict[str, Any] = {"file": str(args.output), "metric": s.metric, "kind": s.kind, "rows": s.rows,
                              "dim": s.dim, "lists": s.lists, "probes": index.probes, "sample": s.sample,
                              "build_seconds": round(built, 3)}
    if args.recall_queries:
        queries = draw_ids(s.rows, args.recall_queries, args.seed)
        report.update({f"recall@{args.k}": round(recall(index, model, queries, args.k), 4),
                       "recall_queries": len(queries)})
    print(json.dumps(report))


def cmd_export(args: argparse.Namespace) -> None:
    check_folder(args.directory)
    written = load(args).export(args.directory, format=args.format)
    print(f"wrote {len(written)} files to {args.directory}: " + ", ".join(sorted(written)))
    if args.format == "npy":
        print(f"TensorBoard projector: tensorboard --logdir {Path(args.directory) / 'projector'}")


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help="dataset name or folder (default: the one the model was trained on)")
    p.add_argument("--data-path", "--data_path", help="folder holding the dataset's files")


def add_device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="where the model computes: cpu (default), cuda, cuda:1, ...")
    p.add_argument("--mmap", action="store_true",
                   help="map the saved weights instead of reading them (CPU): a model larger than memory")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="rank a split with a saved model: MRR, Hits@k, ...",
                       description="Filtered link-prediction ranking of a split with a saved model. The dataset "
                                   "and protocol default to those the model was trained and evaluated with.")
    p.add_argument("model", help="saved model folder (e.g. runs/NAME/model)")
    add_data_options(p)
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--task", choices=["ranking", "classification"], default="ranking",
                   help="ranking (link prediction, default) or classification (true or false, with thresholds tuned "
                        "on the valid split)")
    p.add_argument("--negatives", metavar="FILE", help="classification: the split's negative triples (labels); "
                                                         "default: corruptions")
    p.add_argument("--valid-negatives", metavar="FILE", help="classification: the valid split's negative triples")
    p.add_argument("--corruption", choices=["uniform", "type", "hard"], default="uniform",
                   help="classification: how negatives are corrupted (type: the relation's domain or range; hard: "
                        "the highest-scoring of 32 uniform candidates)")
    p.add_argument("--filter", help="comma-separated splits to filter, or 'none' for raw ranks "
                                    "(default: as trained, usually train,valid,test)")
    p.add_argument("--sides", choices=["both", "head", "tail"])
    p.add_argument("--rank-type", choices=["realistic", "optimistic", "pessimistic"])
    p.add_argument("--protocol", choices=["standard", "ogb"],
                   help="standard: against all (or --eval-negatives sampled) entities, filtered; ogb: against the "
                        "negatives given with each triple (ogbl-biokg, ogbl-wikikg2), unfiltered (default: as trained)")
    p.add_argument("--memory-budget-mb", type=int, metavar="MB",
                   help="size of one score block (default: as trained, evaluation.memory_budget_mb)")
    p.add_argument("--eval-negatives", "--neg-sample-size-eval", "--neg_sample_size_eval", type=int, metavar="N",
                   help="rank against N sampled entities (filtered, seeded) instead of all; 0: all (exact), "
                        "whatever the model was trained with")
    p.add_argument("--eval-sampler", choices=["uniform", "degree"],
                   help="with --eval-negatives: draw them uniformly or in proportion to training degree + 1")
    p.add_argument("--eval-fraction", "--eval-percent", "--eval_percent", type=float, metavar="F",
                   help="evaluate a seeded random fraction F in (0, 1] of the split")
    p.add_argument("--seed", type=int, help="seed of the sampled negatives and the fraction (default: as trained)")
    p.add_argument("--per-category", action="store_true", help="also MRR/Hits by 1-1, 1-N, N-1, N-N relations")
    p.add_argument("--per-relation", action="store_true", help="also the metrics of every relation")
    p.add_argument("--output", help="write the metrics table to this CSV file (.parquet: Parquet)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_device_option(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="top-k tails, heads or relations for a query, or scores of triples",
                       description="Give two of --head/--relation/--tail to predict the third (top k), or all three "
                                   "to score the triple; --file takes many queries (CSV/TSV with a header naming "
                                   "the columns head, relation, tail).",
                       epilog="example: kgem predict runs/umls/model --head virus --relation causes -k 5 "
                              "--remove-known")
    p.add_argument("model", help="saved model folder")
    p.add_argument("--head")
    p.add_argument("--relation")
    p.add_argument("--tail")
    p.add_argument("--file", help="queries, one per row (CSV/TSV with a header, or Parquet)")
    p.add_argument("-k", type=int, default=10, help="how many predictions per query (default 10)")
    p.add_argument("--remove-known", action="store_true", help="leave out facts already in the dataset")
    p.add_argument("--mark-known", action="store_true", help="add a column saying which are known facts")
    add_data_options(p)
    p.add_argument("--output", help="write a CSV file (.parquet: Parquet; .nt: the predicted triples as N-Triples, "
                                    "IRIs in full) instead of printing")
    add_device_option(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("calibrate", help="fit probabilities of triples being true and save them with the model",
                       description="Fit a calibrator (Platt, temperature or isotonic) on the valid split's triples "
                                   "and negatives, report ECE, Brier score and log loss on the test split before "
                                   "and after, and save it in the model folder: predictions then have a "
                                   "probability column, and predict_proba works.")
    p.add_argument("model", help="saved model folder (e.g. runs/NAME/model)")
    add_data_options(p)
    p.add_argument("--method", choices=["platt", "temperature", "isotonic"], default="platt")
    p.add_argument("--negatives", metavar="FILE", help="the valid split's negative triples (labels); default: "
                                                         "corruptions")
    p.add_argument("--corruption", choices=["uniform", "type", "hard"], default="uniform",
                   help="how negatives are corrupted (as kgem evaluate --task classification)")
    p.add_argument("--positive-base-rate", type=float, metavar="P",
                   help="weigh positives and negatives to this share of positives (AmpliGraph's mode for "
                        "corruptions)")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruptions")
    p.add_argument("--plot", metavar="PNG", help="also draw the test split's reliability diagram (needs kgem[plot])")
    p.add_argument("--device", default="cpu", help="where the model computes")
    p.add_argument("--mmap", action="store_true", help="map the saved weights instead of reading them")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("similar", help="nearest entities (or relations) in embedding space",
                       description="The k nearest neighbours of each label by cosine similarity, dot product or "
                                   "(negative) Euclidean distance.")
    p.add_argument("model", help="saved model folder")
    p.add_argument("labels", nargs="+", help="entity (or, with --relations, relation) labels")
    p.add_argument("--relations", action="store_true", help="the labels are relations")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--metric", choices=["cosine", "l2", "dot"],
                   help="cosine (default), dot or l2; with --index, the index's")
    p.add_argument("--index", metavar="FILE", help="answer from this neighbour index (kgem index) instead of the "
                                                   "exact scan: approximate, fast on very large tables")
    p.add_argument("--output", help="write a CSV file (.parquet: Parquet) instead of printing")
    add_device_option(p)
    p.set_defaults(func=cmd_similar)

    p = sub.add_parser("index", help="build an approximate nearest-neighbour index for similar (needs faiss)",
                       description="Build a faiss IVF-Flat index of the entity (or relation) rows, reading the "
                                   "table a block at a time (with --mmap, a table larger than memory), save it as "
                                   "FILE and FILE.json, and print its settings and its recall@k against the exact "
                                   "scan as JSON. Use it with kgem similar --index FILE. Needs pip install "
                                   "'kgem[index]'.",
                       epilog="example: kgem index runs/umls/model -o runs/umls/entities.faiss --probes 8")
    p.add_argument("model", help="saved model folder")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to save the index")
    p.add_argument("--relations", action="store_true", help="index the relations instead of the entities")
    p.add_argument("--metric", choices=["cosine", "l2", "dot"], default="cosine")
    p.add_argument("--lists", type=int, help="cells of the index (default 4 sqrt(rows), at most rows / 39)")
    p.add_argument("--probes", type=int, help="cells a search visits (default an eighth of them; all: exact)")
    p.add_argument("--sample", type=int, help="rows the cells are trained on (default 64 per cell)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training sample and the recall queries")
    p.add_argument("--recall-queries", type=int, default=100, metavar="N",
                   help="measure recall@k on N seeded queries against the exact scan (default 100; 0: skip)")
    p.add_argument("-k", type=int, default=10, help="the k of the recall@k measured (default 10)")
    add_device_option(p)
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("export", help="write embeddings as .npy + TSV labels + TensorBoard projector files")
    p.add_argument("model", help="saved model folder")
    p.add_argument("directory", help="where to write")
    p.add_argument("--format", choices=["npy", "parquet"], default="npy",
                   help="npy (default: .npy + TSV labels + projector files) or parquet (entities.parquet and "
                        "relations.parquet: id, label, embedding; needs pip install 'kgem[parquet]')")
    p.set_defaults(func=cmd_export)
