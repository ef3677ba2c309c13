"""kgem: knowledge-graph embeddings in PyTorch."""

from kgem.data import Dataset, KnownTriples, Triples, Vocabulary, load_dataset, read_triples
from kgem.errors import ConfigError, DataError, KgemError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "Dataset", "KgemError", "KnownTriples", "Triples", "Vocabulary",
           "__version__", "load_dataset", "read_triples"]
