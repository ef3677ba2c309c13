"""Data layer: triples, vocabularies, readers, datasets and the known-triples index."""

from kgem.data.dataset import Dataset
from kgem.data.known import KnownTriples
from kgem.data.sources import DATASETS, DatasetInfo, RemoteFile, load_dataset, register_dataset
from kgem.data.stats import degree_stats, relation_categories
from kgem.data.triples import Triples, read_triples, triples_from_df
from kgem.data.types import DomainConstraints, derive_types, read_types
from kgem.data.vocab import Vocabulary

__all__ = [
    "DATASETS", "Dataset", "DatasetInfo", "DomainConstraints", "KnownTriples", "RemoteFile", "Triples", "Vocabulary",
    "degree_stats", "derive_types", "load_dataset", "read_triples", "read_types", "register_dataset",
    "relation_categories", "triples_from_df",
]
