"""What the server answers, without the web framework: a loaded model, the facts it was trained on, a label search
and a 2-D map of its entities, each question answered by the batched inference of ``LinkPredictor``.

The model is loaded once and never changed. Its scoring calls run one at a time (``ServedModel.lock``): a model's
tables may be memory-mapped and paged in and out by the scan, and torch already spreads one call over every core,
so requests take turns on the model while everything else (labels in, tables out) runs side by side. Every label
is checked before a query runs: an unknown one is an ``UnknownLabel`` that carries close matches, for the server's
404 answer.
"""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from kgem.circuits.model import CircuitModel
from kgem.config import from_dict
from kgem.configs import DataConfig
from kgem.data import Dataset
from kgem.data.vocab import Vocabulary
from kgem.errors import KgemError, TooLarge, UnknownLabel
from kgem.evaluation.evaluator import eval_mode
from kgem.factory import dataset_from_config
from kgem.inference.similarity import Kind, Metric
from kgem.plots import embedding_coordinates, most_frequent_relation
from kgem.saving import LoadedModel, load_model
from kgem.version import __version__

Side = Literal["tail", "head", "relation"]
QUERY_COLUMNS: dict[Side, tuple[str, str]] = {"tail": ("head", "relation"), "head": ("relation", "tail"),
                                             "relation": ("head", "tail")}
SUGGESTIONS = 5  # close matches offered for an unknown label
SUGGESTION_POOL = 200_000  # labels difflib compares an unknown one with, at most (as Vocabulary.suggest)
MAX_BODY_BYTES = 1 << 20  # the largest request body a server takes by default
DEFAULT_K = 10  # answers per query when a request does not say


@dataclass(frozen=True)
class Limits:
    """What one request may ask for: ``max_k`` answers per query, ``max_batch`` queries (or triples, or labels) per
    request, ``max_search`` labels per search, ``max_facts`` facts per entity, ``max_top_scores`` triples a top
    triples scan may score (entities x entities x relations scanned), ``map_points`` entities on the map (a seeded
    sample beyond)."""

    max_k: int = 1000
    max_batch: int = 1024
    max_search: int = 100
    max_facts: int = 1000
    max_top_scores: int = 1 << 28
    map_points: int = 5000

    def __post_init__(self) -> None:
        small = [name for name, value in vars(self).items() if value < 1]
        if small:
            raise KgemError(f"server limits must be at least 1: {', '.join(small)}")

    def k(self, k: int | None) -> int:
        """``k``, checked; None: 10, or ``max_k`` if smaller."""
        if k is None:
            return min(DEFAULT_K, self.max_k)
        if not 1 <= k <= self.max_k:
            raise TooLarge(f"k must be between 1 and {self.max_k}, got {k}")
        return k

    def check_batch(self, size: int, what: str) -> None:
        if not 1 <= size <= self.max_batch:
            raise TooLarge(f"a request takes between 1 and {self.max_batch} {what}, got {size}")


class LabelSearch:
    """Case-insensitive prefix and substring search over labels, bounded by the answers asked for.

    The lowered labels are joined into one string, ``\\n`` before each: a label starts with ``q`` where
    ``"\\n" + q`` is found, holds it where ``q`` is, and ``str.find`` (C speed) walks the string from match to match,
    so a search costs one pass at most, whatever the number of labels, and no per-label Python loop."""

    def __init__(self, labels: np.ndarray) -> None:
        lowered = [str(label).lower() for label in labels]
        self.text = "".join("\n" + label for label in lowered) + "\n"
        lengths = np.fromiter((len(label) + 1 for label in lowered), dtype=np.int64, count=len(lowered))
        self.starts = np.cumsum(lengths) - lengths + 1  # where each label's first character is in ``text``

    def find(self, query: str, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` ``(id, "prefix" | "substring")``: the labels starting with ``query`` in id order, then
        those holding it elsewhere."""
        needle = query.lower()
        if not needle or "\n" in needle:
            return []
        prefix = self._scan("\n" + needle, limit)
        seen = set(prefix)
        rest = [i for i in self._scan(needle, limit + len(prefix)) if i not in seen][: limit - len(prefix)]
        return [(i, "prefix") for i in prefix] + [(i, "substring") for i in rest]

    def _scan(self, needle: str, limit: int) -> list[int]:
        """Ids of the first ``limit`` labels whose text holds ``needle`` (one id per label)."""
        found: list[int] = []
        position = self.text.find(needle)
        while position >= 0 and len(found) < limit:
            label = int(np.searchsorted(self.starts, position + 1, side="right")) - 1  # +1: a "\n" opens the label
            found.append(label)
            following = self.starts[label + 1] - 1 if label + 1 < len(self.starts) else len(self.text)
            position = self.text.find(needle, int(following))
        return found


def saved_metrics(extra: dict[str, Any]) -> dict[str, float] | None:
    """MRR and Hits@k of both sides, as the run that saved the model evaluated its test split, or None."""
    evaluation = extra.get("evaluation", {})
    both = evaluation.get("metrics", {}).get("both", {}).get(evaluation.get("rank_type", "realistic"), {})
    kept = {name: float(value) for name, value in both.items() if name == "mrr" or name.startswith("hits@")}
    return kept or None


def saved_dataset(loaded: LoadedModel) -> Dataset | None:
    """The dataset the model was trained on, as its saved pipeline config names it, or None if it names none."""
    saved = loaded.extra.get("pipeline", {}).get("data")
    return None if saved is None else dataset_from_config(from_dict(DataConfig, saved))


class ServedModel:
    """A loaded model and what the server answers with it. ``dataset`` (the model's training data, matched by
    label) gives the known facts: predictions mark them, ``facts`` lists them, the map colours entities by their
    most frequent relation. Each method takes labels and returns a table or a JSON-ready dict."""

    def __init__(self, loaded: LoadedModel, dataset: Dataset | None = None, limits: Limits | None = None) -> None:
        self.loaded = loaded.with_known(dataset) if dataset is not None else loaded
        self.dataset = dataset
        self.limits = limits or Limits()
        self.lock = threading.Lock()

    @classmethod
    def open(cls, directory: str | os.PathLike[str], *, dataset: Dataset | None = None, with_known: bool = True,
             limits: Limits | None = None, device: str = "cpu", mmap: bool = False) -> ServedModel:
        """The saved model in ``directory`` with ``dataset``, or (``with_known``) the dataset its config names."""
        loaded = load_model(directory, device=device, mmap=mmap)
        if dataset is None and with_known:
            dataset = saved_dataset(loaded)
        return cls(loaded, dataset, limits)

    @property
    def entities(self) -> Vocabulary:
        return self.loaded.entities

    @property
    def relations(self) -> Vocabulary:
        return self.loaded.relations

    def info(self) -> dict[str, Any]:
        """The model, its data and the server's limits."""
        model, known = self.loaded.model, self.loaded.known_triples()
        calibrator = self.loaded.calibrator
        return {"kgem_version": __version__, "model": self.loaded.spec.get("name"), "dim": self.loaded.spec.get("dim"),
                "spec": self.loaded.spec, "num_entities": model.num_entities, "num_relations": model.num_relations,
                "generative": isinstance(model, CircuitModel),
                "calibrated": calibrator is not None, "calibrator": calibrator.kind if calibrator else None,
                "dataset": self.dataset.name if self.dataset is not None else None,
                "known_facts": len(known) if known is not None else None,
                "test_metrics": saved_metrics(self.loaded.extra), "limits": vars(self.limits)}

    def check_labels(self, kind: Kind, labels: Sequence[str]) -> np.ndarray:
        """Ids of ``labels`` in the ``kind`` vocabulary; the first unknown one is an ``UnknownLabel``."""
        vocab = self.entities if kind == "entity" else self.relations
        ids = vocab.lookup(np.asarray(labels, dtype=object))
        missing = np.flatnonzero(ids < 0)
        if len(missing):
            label = str(labels[int(missing[0])])
            raise UnknownLabel(kind, label, self.suggest(kind, label))
        return ids

    def suggest(self, kind: Kind, label: str) -> list[str]:
        """The labels closest to ``label`` (difflib's ratio), then those holding it, ``SUGGESTIONS`` at most."""
        vocab = self.entities if kind == "entity" else self.relations
        pool = [str(x) for x in vocab.labels[:SUGGESTION_POOL]]
        close = difflib.get_close_matches(label, pool, n=SUGGESTIONS)
        search = self.entity_search if kind == "entity" else self.relation_search
        holding = [str(vocab.labels[i]) for i, _ in search.find(label, SUGGESTIONS)]
        return list(dict.fromkeys(close + holding))[:SUGGESTIONS]

    @cached_property
    def entity_search(self) -> LabelSearch:
        return LabelSearch(self.entities.labels)

    @cached_property
    def relation_search(self) -> LabelSearch:
        return LabelSearch(self.relations.labels)

    def search(self, query: str, limit: int, kind: Kind = "entity") -> dict[str, Any]:
        """Labels starting with ``query``, then holding it (case-insensitive), ``limit`` at most."""
        if not 1 <= limit <= self.limits.max_search:
            raise TooLarge(f"limit must be between 1 and {self.limits.max_search}, got {limit}")
        vocab, search = ((self.entities, self.entity_search) if kind == "entity"
                         else (self.relations, self.relation_search))
        found = search.find(query, limit + 1)  # one more: whether there were more
        return {"query": query, "truncated": len(found) > limit,
                "matches": [{"label": str(vocab.labels[i]), "match": how} for i, how in found[:limit]]}

    def predict(self, side: Side, queries: Sequence[tuple[str, str]], k: int | None = None,
                remove_known: bool = False) -> pd.DataFrame:
        """The top ``k`` of the missing ``side`` for each query, as ``LinkPredictor.predict_tails`` (``_heads``,
        ``_relations``) answers."""
        k = self.limits.k(k)
        self.limits.check_batch(len(queries), "queries")
        columns = QUERY_COLUMNS[side]
        frame = pd.DataFrame(list(queries), columns=list(columns), dtype=object)
        for column in columns:
            self.check_labels("relation" if column == "relation" else "entity", frame[column].tolist())
        method = {"tail": self.loaded.predict_tails, "head": self.loaded.predict_heads,
                  "relation": self.loaded.predict_relations}[side]
        with self.lock:
            return method(frame, k=k, remove_known=remove_known)

    def score(self, triples: Sequence[tuple[str, str, str]]) -> pd.DataFrame:
        """Scores of label triples in input order (with probabilities where calibrated, known where known)."""
        frame = self._triples(triples)
        with self.lock:
            return self.loaded.score_triples(frame)

    def probabilities(self, triples: Sequence[tuple[str, str, str]]) -> pd.DataFrame:
        """The calibrated probability of each label triple (``LinkPredictor.predict_proba``)."""
        frame = self._triples(triples)
        with self.lock:
            probability = self.loaded.predict_proba(frame)
        return frame.assign(probability=probability)

    def _triples(self, triples: Sequence[tuple[str, str, str]]) -> pd.DataFrame:
        self.limits.check_batch(len(triples), "triples")
        frame = pd.DataFrame(list(triples), columns=["head", "relation", "tail"], dtype=object)
        for column in ("head", "relation", "tail"):
            self.check_labels("relation" if column == "relation" else "entity", frame[column].tolist())
        return frame

    def similar(self, labels: Sequence[str], k: int | None = None, metric: Metric = "cosine",
                kind: Kind = "entity") -> pd.DataFrame:
        """The ``k`` nearest neighbours of each label (``LinkPredictor.similar``, the exact scan)."""
        k = self.limits.k(k)
        self.limits.check_batch(len(labels), "labels")
        self.check_labels(kind, labels)
        with self.lock:
            return self.loaded.similar(list(labels), k=k, metric=metric, kind=kind)

    def top(self, k: int | None = None, relation: str | None = None, remove_known: bool = False) -> pd.DataFrame:
        """The ``k`` highest-scoring triples of ``relation`` or of every relation, if the scan is within
        ``max_top_scores``."""
        k = self.limits.k(k)
        if relation is not None:
            self.check_labels("relation", [relation])
        num = self.loaded.model.num_entities
        scored = num * num * (1 if relation is not None else self.loaded.model.num_relations)
        if scored > self.limits.max_top_scores:
            raise TooLarge(f"top triples would score {scored} triples, the server allows {self.limits.max_top_scores}"
                           + ("" if relation is not None else ": name a relation"))
        with self.lock:
            return self.loaded.top_triples(k=k, relation=relation, remove_known=remove_known)

    def facts(self, entity: str, limit: int) -> dict[str, Any]:
        """The known facts with ``entity`` as head or tail (a self-loop once), by relation, ``limit`` at most."""
        if not 1 <= limit <= self.limits.max_facts:
            raise TooLarge(f"limit must be between 1 and {self.limits.max_facts}, got {limit}")
        e = int(self.check_labels("entity", [entity])[0])
        known = self.loaded.known_triples()
        if known is None:
            return {"entity": entity, "available": False, "total": 0, "truncated": False, "facts": []}
        hrt = entity_facts(known, e, self.loaded.model.num_relations)
        rows = pd.DataFrame({"head": self.entities.to_labels(hrt[:, 0].numpy()),
                             "relation": self.relations.to_labels(hrt[:, 1].numpy()),
                             "tail": self.entities.to_labels(hrt[:, 2].numpy())})
        return {"entity": entity, "available": True, "total": len(rows), "truncated": len(rows) > limit,
                "facts": rows.iloc[:limit].to_dict(orient="records")}

    @cached_property
    def embedding_map(self) -> dict[str, Any]:
        """The entities (a seeded sample of ``map_points`` beyond) on the first two principal axes of their
        embeddings, with each one's most frequent training relation as its group where the dataset is known."""
        model = self.loaded._embedding_model("the map")
        ids = sample_ids(model.num_entities, self.limits.map_points)
        with self.lock, eval_mode(model):
            vectors = model.entity(ids.to(model.device))
        xy = embedding_coordinates(vectors)
        groups = None
        if self.dataset is not None:
            train = self.loaded.encode(self.dataset.train)
            groups = most_frequent_relation(train, model.num_entities, self.relations.labels)[ids.numpy()].tolist()
        return {"num_entities": model.num_entities, "sampled": len(ids) < model.num_entities,
                "labels": self.entities.to_labels(ids.numpy()).tolist(), "x": np.round(xy[:, 0], 5).tolist(),
                "y": np.round(xy[:, 1], 5).tolist(), "groups": groups}


def entity_facts(known: Any, entity: int, num_relations: int) -> torch.Tensor:
    """``(n, 3)`` ids of the known triples with ``entity`` as head or as tail, sorted by relation then head then
    tail: one query per relation of each side, answered by the index's CSR lookups (no loop over the facts)."""
    relations = torch.arange(num_relations)
    same = torch.full((num_relations,), entity, dtype=torch.int64)
    index = known.for_queries(torch.stack([same, relations, same], 1))
    row, tails = index.tail_pairs(same, relations)
    as_head = torch.stack([same[row], relations[row], tails], 1)
    row, heads = index.head_pairs(relations, same)
    as_tail = torch.stack([heads, relations[row], same[row]], 1)
    hrt = torch.cat([as_head, as_tail[as_tail[:, 0] != entity]])  # a self-loop is in both
    order = np.lexsort((hrt[:, 2].numpy(), hrt[:, 0].numpy(), hrt[:, 1].numpy()))
    return hrt[torch.from_numpy(order)]


def sample_ids(num: int, points: int, seed: int = 0) -> torch.Tensor:
    """All ids when at most ``points``, else a seeded sample of ``points`` of them, sorted."""
    if num <= points:
        return torch.arange(num)
    return torch.randperm(num, generator=torch.Generator().manual_seed(seed))[:points].sort().values
