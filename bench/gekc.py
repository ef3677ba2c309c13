"""Generative KGE circuits against plain ComplEx, each trained for the same time budget on FB15k-237 / WN18RR.

    .venv/bin/python bench/gekc.py [--dataset fb15k237|wn18rr|both] [--budget-seconds 600] [--threads 2]
    .venv/bin/python bench/gekc.py --quick --dataset fb15k237     # a smoke test of every step, about 15 s

Four runs per dataset, in this order: plain ComplEx (1vsAll cross-entropy, reciprocal relations, N3, Adagrad,
kgem's ``train_epoch``), then ComplEx² with PLL, ComplEx² with MLE and CP² with PLL (Adam, the step of
``kgem.circuits.fit``), all at the same rank. Each trains on shuffled mini-batches, epoch after epoch, until its
wall-clock budget is spent (the step running when it runs out is finished). Then, per run: filtered link prediction
on ``--eval-limit`` test triples (circuits rank by ``log p(t | h, r)`` and ``log p(h | r, t)``, ComplEx by its
score with reciprocal relations), the circuits' average test log-likelihood over the whole test split next to the
uniform bar ``-log(E^2 R)``, and the Kernel Triple Distance of ``--ktd-samples`` exact samples against as many test
triples, next to the KTD of uniform triples, both with the trained plain ComplEx as the feature model. And
calibration on the same ranked test triples and filter: each query's distribution over every entity
(``kgem.evaluation.query_probabilities``: the circuits' exact conditionals, ComplEx's softmax over its scores), with
the expected calibration error (``ece``, 15 bins), the Brier score of the top answer (``brier``) and the filtered
negative log-likelihood of the true answers (``nll_filtered``). And Sem@1, Sem@3 and Sem@10 (``sem@k``,
``kgem.evaluation.semantic_at_k``) on the same ranked test triples: the share of each query's k best entities (all
entities ranked, no filter) allowed in its slot. FB15k-237 and WN18RR ship no type files, so this is Sem@k against
domains/ranges observed in train (``kgem.data.derive_types``): an entity fits a relation's head (tail) slot when it is
the head (tail) of one of its training triples, and a relation without a training triple allows no entity. A k
above the number of entities is left out. The markdown output says so under its table.

Every run prints one JSON line; a run that raises (a NaN loss, a failed sample) or ends with a non-finite number is
``"status": "failed"`` with its ``error`` and no metrics. The JSON (settings and runs) and a markdown table go to
``bench/out/gekc/results-<time>.{json,md}``, and per dataset a reliability diagram of every successful run to
``reliability-<dataset>-<time>.png`` beside them (skipped, with a note, without matplotlib).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from kgem.circuits import (
    CP2,
    CircuitModel,
    ComplEx2,
    average_log_likelihood,
    kernel_triple_distance,
    sample,
    uniform_log_likelihood,
    uniform_triples,
)
from kgem.circuits.fit import fit_epoch, objective_fn
from kgem.circuits.squared import SquaredCircuit
from kgem.data import Dataset, DomainConstraints, KnownTriples, derive_types
from kgem.errors import KgemError
from kgem.evaluation import (
    Calibration,
    EvaluationResult,
    evaluate,
    plot_reliability,
    query_probabilities,
    semantic_at_k,
)
from kgem.evaluation.semantic import SEM_AT
from kgem.models import Model, build_model
from kgem.training import LOSSES, REGULARIZERS, OneVsAll, build_optimizer, train_epoch

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = ROOT.parent / "shared" / "datasets"
OUT = ROOT / "bench" / "out" / "gekc"
DATASETS = {"fb15k237": ["fb15k237"], "wn18rr": ["wn18rr"], "both": ["fb15k237", "wn18rr"]}
CIRCUITS: dict[str, tuple[type[SquaredCircuit], str]] = {
    "complex2-pll": (ComplEx2, "pll"), "complex2-mle": (ComplEx2, "mle"), "cp2-pll": (CP2, "pll")}
SEM_NOTE = "Sem@k against domains/ranges observed in train (the datasets ship no type files)."
QUICK = {"budget_seconds": 2.0, "rank": 16, "eval_limit": 100, "ktd_samples": 200}


@dataclass
class Budget:
    """Shuffled batches of ``rows``, epoch after epoch, until ``seconds`` of wall clock have passed since the first
    one was asked for; ``steps`` counts the batches handed out. At least one batch is always given."""

    seconds: float
    steps: int = 0
    elapsed: float = 0.0
    start: float | None = field(default=None, repr=False)

    def batches(self, rows: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        self.start = time.perf_counter()
        while True:
            order = torch.randperm(len(rows), generator=generator)
            for chunk in order.split(batch_size):
                if self.steps and self.spent():
                    return
                yield rows[chunk]
                self.steps += 1

    def spent(self) -> bool:
        assert self.start is not None
        self.elapsed = time.perf_counter() - self.start
        return self.elapsed >= self.seconds

    def timing(self, rows: int, batch_size: int) -> dict[str, float]:
        """Steps, epochs (fractional: the last one may be cut short) and seconds per epoch and per step."""
        self.spent()
        per_epoch = math.ceil(rows / batch_size)
        epochs = self.steps / per_epoch
        return {"steps": self.steps, "epochs": round(epochs, 3), "train_seconds": round(self.elapsed, 2),
                "seconds_per_step": self.elapsed / max(self.steps, 1),
                "seconds_per_epoch": self.elapsed / epochs if epochs else math.nan}


def train_complex(data: Dataset, args: argparse.Namespace) -> tuple[Model, dict[str, Any]]:
    """Plain ComplEx (``rank`` complex numbers per row), 1vsAll cross-entropy with reciprocal relations, N3,
    Adagrad: kgem's default recipe, trained by kgem's own ``train_epoch`` until the budget is spent."""
    torch.manual_seed(args.seed)
    model = build_model("complex", data.num_entities, data.num_relations, args.rank, inverse=True)
    approach = OneVsAll()
    rows = approach.prepare(data.train.hrt, model)
    optimizer = build_optimizer("adagrad", model.parameters(), lr=args.complex_lr)
    budget = Budget(args.budget_seconds)
    generator = torch.Generator().manual_seed(args.seed)
    loss = train_epoch(model, approach, budget.batches(rows, args.batch_size, generator),
                       LOSSES.get("cross_entropy")(), optimizer, REGULARIZERS.get("n3")(weight=args.n3), generator)
    settings = {"rank": args.rank, "batch_size": args.batch_size, "lr": args.complex_lr, "optimizer": "adagrad",
                "n3": args.n3, "reciprocal": True}
    return model, {"settings": settings, "train_loss": loss, **budget.timing(len(rows), args.batch_size)}


def train_circuit(name: str, data: Dataset, args: argparse.Namespace) -> tuple[SquaredCircuit, dict[str, Any]]:
    """A squared circuit trained by the step of ``kgem.circuits.fit`` (one ``fit_epoch`` per batch, which raises
    on a non-finite loss before the step) on batches that stop at the budget."""
    cls, objective = CIRCUITS[name]
    torch.manual_seed(args.seed)
    circuit = cls(data.num_entities, data.num_relations, args.rank)
    optimizer = torch.optim.Adam(circuit.parameters(), lr=args.circuit_lr)
    loss_of, budget = objective_fn(objective), Budget(args.budget_seconds)
    generator = torch.Generator().manual_seed(args.seed)
    circuit.train()
    total, seen = 0.0, 0
    for batch in budget.batches(data.train.hrt, args.batch_size, generator):
        total += fit_epoch(circuit, (batch,), loss_of, optimizer, budget.steps + 1) * len(batch)
        seen += len(batch)
    timing = budget.timing(len(data.train.hrt), args.batch_size)
    settings = {"rank": args.rank, "batch_size": args.batch_size, "lr": args.circuit_lr, "optimizer": "adam",
                "objective": objective}
    return circuit, {"settings": settings, "train_loss": total / seen, **timing}


def ranking(result: EvaluationResult) -> dict[str, float]:
    return {"test_mrr": result.mrr, **{f"test_hits@{k}": result.hits_at(k) for k in (1, 3, 10)}}


@dataclass
class Bench:
    """One dataset's shared pieces: the data, the filter, the ranked test triples, the domain constraints observed
    in train (for Sem@k), the KTD reference triples, the feature model (the trained plain ComplEx, once it exists)
    and each evaluated run's calibration."""

    data: Dataset
    args: argparse.Namespace
    known: KnownTriples = field(init=False)
    ranked: torch.Tensor = field(init=False)
    constraints: DomainConstraints = field(init=False)
    reference: torch.Tensor = field(init=False)
    features: Model | None = None
    curves: dict[str, Calibration] = field(default_factory=dict)

    def __post_init__(self) -> None:
        test = self.data.test.hrt if self.data.test is not None else None
        if test is None or len(test) < 2:
            raise SystemExit(f"{self.data.name}: the benchmark needs a test split of at least 2 triples")
        self.known = self.data.known()
        self.constraints = derive_types(self.data.train.hrt, self.data.num_entities, self.data.num_relations)
        order = torch.randperm(len(test), generator=torch.Generator().manual_seed(self.args.seed))
        self.ranked = test[order[: self.args.eval_limit]]
        self.reference = test[order[: self.args.ktd_samples]]

    def evaluate(self, name: str, model: Model | CircuitModel) -> dict[str, float]:
        """Filtered link prediction, Sem@k and calibration on the ranked test triples; the calibration is kept for
        the reliability diagram under ``name``."""
        curve = query_probabilities(model, self.ranked, known=self.known)
        self.curves[name] = curve
        return {**ranking(evaluate(model, self.ranked, known=self.known, filter_splits="train+valid+test")),
                **self.semantic(model), "ece": curve.ece(), "brier": curve.brier(), "nll_filtered": curve.nll()}

    def semantic(self, model: Model | CircuitModel) -> dict[str, float]:
        """``sem@k`` (both sides averaged) for each k of ``SEM_AT`` that does not exceed the number of entities."""
        ks = [k for k in SEM_AT if k <= self.data.num_entities]
        result = semantic_at_k(model, self.ranked, self.constraints, ks=ks)
        return {f"sem@{k}": result[f"sem@{k}"] for k in ks}

    def ktd(self, samples: torch.Tensor) -> float | None:
        return None if self.features is None else kernel_triple_distance(self.features, samples, self.reference)

    def run_complex(self) -> dict[str, Any]:
        model, record = train_complex(self.data, self.args)
        self.features = model
        uniform = uniform_triples(self.data.num_entities, self.data.num_relations, len(self.reference),
                                  self.args.seed)
        return {**record, **self.evaluate("complex", model), "ktd_uniform": self.ktd(uniform)}

    def run_circuit(self, name: str) -> dict[str, Any]:
        circuit, record = train_circuit(name, self.data, self.args)
        assert self.data.test is not None
        uniform = uniform_triples(self.data.num_entities, self.data.num_relations, len(self.reference),
                                  self.args.seed)
        samples = sample(circuit, len(self.reference), seed=self.args.seed)
        return {**record, **self.evaluate(name, CircuitModel(circuit)),
                "test_log_likelihood": average_log_likelihood(circuit, self.data.test.hrt),
                "uniform_log_likelihood": uniform_log_likelihood(circuit.num_entities, circuit.num_relations),
                "ktd": self.ktd(samples), "ktd_uniform": self.ktd(uniform),
                "ktd_note": None if self.features is not None else "no feature model: the plain ComplEx run failed"}


def non_finite(record: dict[str, Any]) -> list[str]:
    """Names of the record's numbers that are NaN or infinite."""
    return [key for key, value in record.items() if isinstance(value, float) and not math.isfinite(value)]


def guarded(dataset: str, model: str, args: argparse.Namespace, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``'s record with its timing, or a failed record (the exception, or the non-finite numbers) that
    keeps no metric."""
    head = {"dataset": dataset, "model": model, "budget_seconds": args.budget_seconds, "threads": args.threads,
            "seed": args.seed, "eval_triples": args.eval_limit, "ktd_samples": args.ktd_samples}
    start = time.perf_counter()
    try:
        record = run()
    except Exception as error:  # any failure of the run is its result
        return {**head, "status": "failed", "error": f"{type(error).__name__}: {error}"}
    bad = non_finite(record)
    if bad:
        return {**head, "status": "failed", "error": f"non-finite {', '.join(bad)}",
                "settings": record.get("settings")}
    return {**head, "status": "ok", **record, "total_seconds": round(time.perf_counter() - start, 2)}


def run_dataset(name: str, args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Calibration]]:
    """The dataset's records, and the calibration of each run that succeeded."""
    folder = Path(args.data_root) / name
    if not folder.is_dir():
        raise SystemExit(f"{folder}: no such dataset folder (expected train/valid/test.txt in it)")
    bench = Bench(Dataset.from_folder(folder), args)
    records = [guarded(name, "complex", args, bench.run_complex)]
    print(json.dumps(records[-1]), flush=True)
    for circuit in CIRCUITS:
        records.append(guarded(name, circuit, args, partial(bench.run_circuit, circuit)))
        print(json.dumps(records[-1]), flush=True)
    ok = {r["model"] for r in records if r["status"] == "ok"}
    return records, {model: curve for model, curve in bench.curves.items() if model in ok}


def write_reliability(curves: dict[str, Calibration], dataset: str, path: Path) -> Path | None:
    """The reliability diagram of the dataset's runs, or None (with a printed note) without matplotlib or runs."""
    if not curves:
        print(f"{dataset}: no successful run, no reliability diagram", flush=True)
        return None
    try:
        return plot_reliability(curves, path, title=f"{dataset}: filtered link prediction")
    except KgemError as error:
        print(f"{dataset}: no reliability diagram ({error})", flush=True)
        return None


def cell(record: dict[str, Any], key: str, digits: int = 4) -> str:
    value = record.get(key)
    if value is None:
        return "–"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def table(records: list[dict[str, Any]]) -> str:
    """The markdown table: one row per run; a failed run shows its error instead of numbers."""
    lines = ["| dataset | model | status | rank | batch | lr | epochs | s/epoch | s/step | MRR | H@1 | H@3 | H@10 "
             "| Sem@1 | Sem@3 | Sem@10 | test LL | uniform LL | KTD | KTD uniform | ECE | Brier | NLL filt. |",
             "|" + "---|" * 23]
    for r in records:
        s = r.get("settings") or {}
        start = f"| {r['dataset']} | {r['model']} | {r['status']} | {s.get('rank', '–')} | " \
                f"{s.get('batch_size', '–')} | {s.get('lr', '–')} |"
        if r["status"] != "ok":
            lines.append(f"{start} {r['error']} |" + " |" * 16)
            continue
        keys = ["epochs", "seconds_per_epoch", "seconds_per_step", "test_mrr", "test_hits@1", "test_hits@3",
                "test_hits@10", *(f"sem@{k}" for k in SEM_AT), "test_log_likelihood", "uniform_log_likelihood", "ktd",
                "ktd_uniform", "ece", "brier", "nll_filtered"]
        lines.append(start + "".join(f" {cell(r, k)} |" for k in keys))
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fb15k237", help="fb15k237, wn18rr, both, or a folder under --data-root")
    parser.add_argument("--data-root", default=str(DATA_ROOT))
    parser.add_argument("--budget-seconds", type=float, default=600.0, help="training wall clock per model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rank", type=int, default=200, help="ComplEx/ComplEx² complex rank, CP² rank")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--circuit-lr", type=float, default=1e-3, help="Adam, the circuits")
    parser.add_argument("--complex-lr", type=float, default=0.1, help="Adagrad, plain ComplEx")
    parser.add_argument("--n3", type=float, default=0.05, help="N3 weight of plain ComplEx")
    parser.add_argument("--eval-limit", type=int, default=2000, help="test triples ranked per model")
    parser.add_argument("--ktd-samples", type=int, default=1000, help="samples and test triples in the KTD")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT), help="folder of results-<time>.{json,md}")
    parser.add_argument("--quick", action="store_true", help=f"smoke test: {QUICK}")
    if parser.parse_known_args(argv)[0].quick:
        parser.set_defaults(**QUICK)  # flags given explicitly still win
    args = parser.parse_args(argv)
    for name in ("budget_seconds", "threads", "rank", "batch_size", "eval_limit"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.ktd_samples < 2:
        parser.error(f"--ktd-samples must be at least 2, got {args.ktd_samples}")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    names = DATASETS.get(args.dataset, [args.dataset])
    records, curves = [], {}
    for name in names:
        runs, curves[name] = run_dataset(name, args)
        records += runs
    markdown = f"{table(records)}\n\n{SEM_NOTE}"
    print(markdown)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"results-{stamp}.json").write_text(json.dumps({"settings": vars(args), "runs": records}, indent=1))
    (out / f"results-{stamp}.md").write_text(markdown + "\n")
    for name in names:
        write_reliability(curves[name], name, out / f"reliability-{name}-{stamp}.png")
    return records


if __name__ == "__main__":
    main(sys.argv[1:])
