"""kgem: knowledge-graph embeddings in PyTorch."""

from kgem.data import Dataset, KnownTriples, Triples, Vocabulary, load_dataset, read_triples
from kgem.errors import ConfigError, DataError, KgemError
from kgem.hpo import HpoResult, hpo
from kgem.pipeline import PipelineResult, pipeline
from kgem.recipes import Recipe, recipe, recipes, recipes_table
from kgem.saving import LoadedModel, load_model, save_model
from kgem.version import __version__

load = load_model

__all__ = ["ConfigError", "DataError", "Dataset", "HpoResult", "KgemError", "KnownTriples", "LoadedModel",
           "PipelineResult", "Recipe", "Triples", "Vocabulary", "__version__", "hpo", "load", "load_dataset",
           "load_model", "pipeline", "read_triples", "recipe", "recipes", "recipes_table", "save_model"]
