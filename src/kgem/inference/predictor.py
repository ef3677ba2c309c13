"""``LinkPredictor``: the inference functions as methods of anything that holds a model and its vocabularies
(a loaded model, a pipeline result), so users write ``trained.predict_tails([("virus", "causes")])``.
``memory_budget_bytes`` bounds one score block, as in evaluation (default: the scan's ``DEFAULT_MEMORY_BUDGET``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from kgem.circuits.model import AnyModel, CircuitModel
from kgem.data.known import KnownSplits, KnownTriples
from kgem.data.vocab import Vocabulary
from kgem.errors import DataError
from kgem.evaluation.calibrators import Calibrator
from kgem.inference import generative
from kgem.inference._common import Queries
from kgem.inference.export import export_embeddings
from kgem.inference.index import NeighbourIndex, similar_indexed
from kgem.inference.predict import predict_heads, predict_relations, predict_tails, score_triples
from kgem.inference.similarity import Metric, similar
from kgem.inference.top import top_triples
from kgem.models.model import Model


class LinkPredictor:
    """Mixin: subclasses provide ``model``, ``entities``, ``relations`` and ``known_triples()`` (the facts to mark
    as known or remove, or None when they are not at hand)."""

    model: AnyModel
    entities: Vocabulary
    relations: Vocabulary

    calibrator: Calibrator | None = None  # scores -> probabilities a triple is true (kgem.evaluation.calibrators)

    def known_triples(self) -> KnownTriples | KnownSplits | None:
        return None

    def _calibrated(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with a ``probability`` column from the calibrator, where there is one."""
        if self.calibrator is None:
            return frame
        return frame.assign(probability=self.calibrator.probabilities(frame["score"].to_numpy(np.float64)))

    def predict_proba(self, triples: Queries) -> np.ndarray:
        """The calibrated probability that each ``(head, relation, tail)`` label triple is true (AmpliGraph's
        ``predict_proba``); needs a calibrator (``kgem calibrate``, or ``LoadedModel.calibrate``)."""
        if self.calibrator is None:
            raise DataError("predict_proba needs a calibrated model: kgem calibrate MODEL_DIR, or "
                            "loaded.calibrate(dataset) in Python")
        scores = score_triples(self.model, self.entities, self.relations, triples)["score"].to_numpy(np.float64)
        return self.calibrator.probabilities(scores)

    def _known(self, remove_known: bool) -> KnownTriples | KnownSplits | None:
        known = self.known_triples()
        if remove_known and known is None:
            raise DataError("remove_known needs the known triples: load the model with its dataset "
                            "(e.g. kgem.load(dir).with_known(dataset))")
        return known

    def predict_tails(self, queries: Queries, *, k: int = 10, remove_known: bool = False,
                      memory_budget_bytes: int | None = None) -> pd.DataFrame:
        """Top-k tails of ``(head, relation)`` label pairs; see ``kgem.inference.predict_tails``."""
        found = predict_tails(self.model, self.entities, self.relations, queries, k=k,
                              known=self._known(remove_known), remove_known=remove_known,
                              memory_budget_bytes=memory_budget_bytes)
        return self._calibrated(found)

    def predict_heads(self, queries: Queries, *, k: int = 10, remove_known: bool = False,
                      memory_budget_bytes: int | None = None) -> pd.DataFrame:
        """Top-k heads of ``(relation, tail)`` label pairs."""
        found = predict_heads(self.model, self.entities, self.relations, queries, k=k,
                              known=self._known(remove_known), remove_known=remove_known,
                              memory_budget_bytes=memory_budget_bytes)
        return self._calibrated(found)

    def predict_relations(self, pairs: Queries, *, k: int = 10, remove_known: bool = False,
                          memory_budget_bytes: int | None = None) -> pd.DataFrame:
        """Top-k relations between ``(head, tail)`` label pairs."""
        found = predict_relations(self.model, self.entities, self.relations, pairs, k=k,
                                  known=self._known(remove_known), remove_known=remove_known,
                                  memory_budget_bytes=memory_budget_bytes)
        return self._calibrated(found)

    def score_triples(self, triples: Queries) -> pd.DataFrame:
        """Scores of ``(head, relation, tail)`` label triples, in input order."""
        return self._calibrated(score_triples(self.model, self.entities, self.relations, triples,
                                              known=self.known_triples()))

    def top_triples(self, *, k: int = 100, relation: str | None = None, remove_known: bool = False,
                    memory_budget_bytes: int | None = None) -> pd.DataFrame:
        """The k highest-scoring triples of one relation or of the whole graph (bounded memory)."""
        found = top_triples(self.model, self.entities, self.relations, k=k, relation=relation,
                            known=self._known(remove_known), remove_known=remove_known,
                            memory_budget_bytes=memory_budget_bytes)
        return self._calibrated(found)

    def similar(self, labels: list[str], *, k: int = 10, metric: Metric | None = None,
                kind: Literal["entity", "relation"] | None = None, memory_budget_bytes: int | None = None,
                index: NeighbourIndex | None = None) -> pd.DataFrame:
        """Nearest entities (or relations) of each label by cosine (the default), dot or (negative) L2: the exact
        scan, or with ``index`` (``kgem.inference.index.build_index``) the index's approximate answer, for its
        metric and kind (the same table; a ``metric`` or ``kind`` given must be the index's)."""
        model = self._embedding_model("similar")
        if index is not None:
            index.check(model, metric=metric, kind=kind)
            vocab = self.entities if index.settings.kind == "entity" else self.relations
            return similar_indexed(index, model, vocab, labels, k=k)
        kind = kind or "entity"
        vocab = self.entities if kind == "entity" else self.relations
        return similar(model, vocab, labels, k=k, metric=metric or "cosine", kind=kind,
                       memory_budget_bytes=memory_budget_bytes)

    def export(self, directory: str | os.PathLike[str], *,
               format: Literal["npy", "parquet"] = "npy") -> dict[str, Path]:  # noqa: A002 - kgem export --format
        """Embeddings as .npy + TSV labels + TensorBoard projector files, or (``format="parquet"``) as
        ``entities.parquet`` and ``relations.parquet`` tables of id, label and embedding."""
        return export_embeddings(self._embedding_model("export"), self.entities, self.relations, directory,
                                 format=format)

    def _embedding_model(self, what: str) -> Model:
        if isinstance(self.model, CircuitModel):
            raise DataError(f"{what} compares embedding rows; the generative circuit {self.model.name} keeps its "
                            f"own factors (use conditional, log_prob or sample)")
        return self.model

    def log_prob(self, triples: Queries) -> pd.DataFrame:
        """Exact ``log p(h, r, t)`` and ``p(h, r, t)`` of label triples (generative circuits)."""
        return generative.log_prob(self.model, self.entities, self.relations, triples)

    def conditional(self, *, head: str | None = None, relation: str | None = None, tail: str | None = None,
                    k: int | None = None) -> pd.DataFrame:
        """The exact distribution of the missing slot (``p(t | h, r)``, ``p(h | r, t)``, ``p(r | h, t)``,
        ``p(r | h)`` or ``p(h)``), most probable first (generative circuits); see ``kgem.inference.generative``."""
        return generative.conditional(self.model, self.entities, self.relations, head=head, relation=relation,
                                      tail=tail, k=k)

    def sample(self, n: int, *, seed: int = 0) -> pd.DataFrame:
        """``n`` label triples drawn exactly from the circuit's distribution (generative circuits)."""
        return generative.sample(self.model, self.entities, self.relations, n, seed=seed)
