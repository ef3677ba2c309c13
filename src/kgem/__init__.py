"""kgem: knowledge-graph embeddings in PyTorch."""

__version__ = "0.1.0"  # before the imports: kgem.saving reads it

from kgem.data import Dataset, KnownTriples, Triples, Vocabulary, load_dataset, read_triples
from kgem.errors import ConfigError, DataError, KgemError
from kgem.pipeline import PipelineResult, pipeline
from kgem.saving import LoadedModel, load_model, save_model

load = load_model

__all__ = ["ConfigError", "DataError", "Dataset", "KgemError", "KnownTriples", "LoadedModel", "PipelineResult",
           "Triples", "Vocabulary", "__version__", "load", "load_dataset", "load_model", "pipeline", "read_triples",
           "save_model"]
