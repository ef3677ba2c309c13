"""The result of a link-prediction evaluation: per-query ranks plus the metadata needed to read them correctly."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from kgem.data.stats import CATEGORIES
from kgem.evaluation.estimate import BeaterEstimates, estimate_full_metrics, estimate_weighted_metrics
from kgem.evaluation.metrics import hits_at, rank_metrics
from kgem.evaluation.ranks import RANK_TYPES, EvaluationError, Ranks, check_rank_type

SIDES = ("head", "tail", "both")
SAMPLERS = {"uniform": "uniform", "degree": "degree-proportional",  # name: how it prints
            "given": "given with each triple"}  # OGB's protocol (kgem.evaluation.given)


@dataclass(frozen=True)
class EvaluationResult:
    """Ranks of every query; a query is one test triple with its head (side "head") or tail ("tail") hidden.

    ``side`` (str) and ``relation`` (int64) are numpy arrays aligned with ``ranks``. Metrics are computed on demand
    for any side ("head", "tail" or "both") and rank type; the defaults are both sides and ``rank_type``.
    """

    ranks: Ranks
    side: np.ndarray
    relation: np.ndarray
    num_entities: int
    filtered: bool
    filter_splits: str = ""
    rank_type: str = "realistic"
    sampled: bool = False
    num_negatives: int | None = None
    relation_categories: np.ndarray | None = None
    reciprocal: bool | None = None  # head queries answered through reciprocal relations (None: not recorded)
    full_candidates: torch.Tensor | None = None  # sampled: each query's candidates in the full ranking (int64)
    sampler: str | None = None  # sampled: how the negatives were drawn, "uniform" or "degree" (None: uniform)
    beaters: BeaterEstimates | None = None  # degree sampler: per query, the estimated beaters of the full ranking

    def __post_init__(self) -> None:
        check_rank_type(self.rank_type)
        if not len(self.ranks) == len(self.side) == len(self.relation):
            raise EvaluationError(f"ranks, side and relation differ in length: "
                                  f"{len(self.ranks)}, {len(self.side)}, {len(self.relation)}")
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise EvaluationError(f"unknown sampler {self.sampler!r}; choose from {', '.join(SAMPLERS)}")
        if self.beaters is not None and len(self.beaters) != len(self.ranks):
            raise EvaluationError(f"{len(self.beaters)} beater estimates for {len(self.ranks)} ranks")

    @property
    def sampled_by(self) -> str | None:
        """How the negatives were drawn: "uniform" or "degree"; None for a full ranking."""
        return (self.sampler or "uniform") if self.sampled else None

    def _select(self, side: str, rank_type: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The ranks of one side (or both) and their candidate counts."""
        if side not in SIDES:
            raise EvaluationError(f"unknown side {side!r}; choose from {', '.join(SIDES)}")
        ranks = self.ranks if side == "both" else self.ranks[torch.from_numpy(self.side == side)]
        return ranks.get(rank_type or self.rank_type), ranks.num_candidates

    def metrics(self, side: str = "both", rank_type: str | None = None) -> dict[str, float]:
        """count, mrr, mr, hits@1/3/5/10, amr and amri of one side (or both) for one rank type."""
        return rank_metrics(*self._select(side, rank_type))

    @property
    def mrr(self) -> float:
        """MRR over both sides with the default rank type."""
        return self.metrics()["mrr"]

    def estimate(self, side: str = "both", rank_type: str | None = None, level: float = 0.95) -> pd.DataFrame:
        """A sampled evaluation's estimates of the full-ranking metrics, each with a conservative interval at
        ``level`` (``kgem.evaluation.estimate``): rows mrr, mr, hits@1/3/10; columns estimate, low, high. A
        degree-proportional sample's come from its beater estimates, a uniform one's from the sampled ranks."""
        if self.sampler == "given":
            raise EvaluationError("these ranks are against the negatives given with each triple (OGB's protocol): "
                                  "its metrics are the protocol's own, not estimates of a full ranking")
        if not self.sampled or self.full_candidates is None:
            raise EvaluationError("estimate() belongs to a sampled evaluation (num_negatives); this one ranked "
                                  "against every entity: its metrics are exact")
        ranks, sampled = self._select(side, rank_type)
        chosen = slice(None) if side == "both" else torch.from_numpy(self.side == side)
        full = self.full_candidates[chosen]
        if self.beaters is not None:
            return estimate_weighted_metrics(ranks, self.beaters[chosen], full, rank_type=rank_type or self.rank_type,
                                             level=level)
        return estimate_full_metrics(ranks, sampled, full, level=level)

    def hits_at(self, k: int) -> float:
        """Hits@k over both sides with the default rank type (any k, not only 1/3/5/10)."""
        return hits_at(self._select("both", None)[0], k)

    def _sides_present(self) -> list[str]:
        present = [s for s in ("head", "tail") if (self.side == s).any()]
        return [*present, "both"] if len(present) != 1 else present

    def to_df(self, rank_type: str | None = None) -> pd.DataFrame:
        """One row per side evaluated (head, tail, both), one column per metric."""
        rows = {side: self.metrics(side, rank_type) for side in self._sides_present()}
        return _table(pd.DataFrame.from_dict(rows, orient="index"), "side")

    def _grouped(self, keys: np.ndarray, order: Sequence[Any], side: str, rank_type: str | None) -> pd.DataFrame:
        """Metrics of the queries grouped by ``keys`` (one per query), rows in ``order`` where present."""
        ranks, num_candidates = self._select(side, rank_type)
        if side != "both":
            keys = keys[self.side == side]
        codes, uniques = pd.factorize(keys)
        members = np.split(np.argsort(codes, kind="stable"), np.cumsum(np.bincount(codes, minlength=len(uniques)))[:-1])
        groups = {key: torch.from_numpy(idx) for key, idx in zip(uniques.tolist(), members)}
        rows = {key: rank_metrics(ranks[groups[key]], num_candidates[groups[key]]) for key in order if key in groups}
        return pd.DataFrame.from_dict(rows, orient="index")

    def per_relation(self, relation_labels: Sequence[str] | None = None, side: str = "both",
                     rank_type: str | None = None) -> pd.DataFrame:
        """Metrics per relation (rows: relations with at least one query, labelled if labels are given)."""
        table = self._grouped(self.relation, np.unique(self.relation).tolist(), side, rank_type)
        if relation_labels is not None:
            table.index = [relation_labels[i] for i in table.index]
        return _table(table, "relation")

    def per_category(self, categories: np.ndarray | None = None, side: str = "both",
                     rank_type: str | None = None) -> pd.DataFrame:
        """Metrics per relation category (1-1, 1-N, N-1, N-N; see ``kgem.data.relation_categories``).

        ``categories`` holds one category per relation id; default: the ``relation_categories`` given at evaluation.
        """
        categories = self.relation_categories if categories is None else categories
        if categories is None:
            raise EvaluationError("per_category needs relation categories, e.g. "
                                  "kgem.data.relation_categories(dataset.train.hrt, dataset.num_relations)")
        categories = np.asarray(categories, dtype=object)
        return _table(self._grouped(categories[self.relation], list(CATEGORIES), side, rank_type), "category")

    def to_dict(self) -> dict[str, Any]:
        """Metadata and the metrics of every side and rank type, JSON-able (NaN becomes None)."""
        metrics = {side: {rt: {k: None if math.isnan(v) else v for k, v in self.metrics(side, rt).items()}
                          for rt in RANK_TYPES} for side in self._sides_present()}
        out = {"filtered": self.filtered, "filter_splits": self.filter_splits, "rank_type": self.rank_type,
               "sampled": self.sampled, "num_negatives": self.num_negatives, "num_entities": self.num_entities,
               "num_queries": len(self.ranks), "reciprocal": self.reciprocal, "metrics": metrics}
        if self.sampled:
            out["sampler"] = self.sampled_by
        if self.sampled and self.full_candidates is not None:
            out["full_ranking_estimate"] = {"level": 0.95, "sampler": self.sampled_by, "estimated": True,
                                            **self.estimate().to_dict(orient="index")}
        return out

    def describe(self) -> str:
        """One line: filtered or raw, full or sampled ranking, rank type and query count."""
        setting = f"filtered ({self.filter_splits})" if self.filtered and self.filter_splits else (
            "filtered" if self.filtered else "raw")
        against = (f"vs {self.num_negatives} sampled negatives ({SAMPLERS[self.sampled_by or 'uniform']})"
                   if self.sampled else f"vs all {self.num_entities} entities")
        heads = {True: ", heads via reciprocal relations", False: ", heads by their own scores", None: ""}[
            self.reciprocal]
        return f"{setting} link prediction {against}, {self.rank_type} ranks, {len(self.ranks)} queries{heads}"

    def __str__(self) -> str:
        text = f"{self.describe()}\n{self.to_df().to_string(float_format=lambda x: f'{x:.4f}')}"
        if self.sampled and self.full_candidates is not None:
            estimate = self.estimate().to_string(float_format=lambda x: f"{x:.4f}")
            sampler = SAMPLERS[self.sampled_by or "uniform"]
            text += (f"\n\nfull-ranking metrics estimated from the sampled ranks ({sampler} sampler; estimates with "
                     f"conservative 95% intervals):\n" + estimate)
        return text


def _table(df: pd.DataFrame, index_name: str) -> pd.DataFrame:
    """Integer query counts and a named index, so the table prints cleanly."""
    if "count" in df:
        df["count"] = df["count"].astype(int)
    df.index.name = index_name
    return df
