"""Inference with labels in and labels out: predictions, top triples, neighbours and embedding export."""

from kgem.inference.clusters import find_clusters, find_duplicates
from kgem.inference.discovery import discover_facts, generate_candidates, query_topn
from kgem.inference.emb_sim import embedding_similarity
from kgem.inference.export import export_embeddings
from kgem.inference.index import NeighbourIndex, build_index, recall
from kgem.inference.lists import predict_lists
from kgem.inference.predict import predict_heads, predict_relations, predict_tails, score_triples
from kgem.inference.similarity import similar
from kgem.inference.top import top_triples

__all__ = ["NeighbourIndex", "build_index", "discover_facts", "embedding_similarity", "export_embeddings",
           "find_clusters", "find_duplicates", "generate_candidates", "predict_heads", "predict_lists",
           "predict_relations", "predict_tails", "query_topn", "recall", "score_triples", "similar", "top_triples"]
