"""Inference with labels in and labels out: predictions, top triples, neighbours and embedding export."""

from kgem.inference.export import export_embeddings
from kgem.inference.index import NeighbourIndex, build_index, recall
from kgem.inference.predict import predict_heads, predict_relations, predict_tails, score_triples
from kgem.inference.similarity import similar
from kgem.inference.top import top_triples

__all__ = ["NeighbourIndex", "build_index", "export_embeddings", "predict_heads", "predict_relations", "predict_tails",
           "recall", "score_triples", "similar", "top_triples"]
