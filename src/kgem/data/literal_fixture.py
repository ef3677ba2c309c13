"""A seeded graph in which a numeric attribute decides one relation: the fixture of the LiteralE models.

Items have a ``size``; ``in_band`` links each item to one of a few band entities, the band of its size (equal
shares of the items, by size rank), so the tail of ``(item, in_band, ?)`` follows from the item's size alone.
Training shows the band of half of the items; valid and test hold the bands of the others. Every item's only other
edge is ``listed_in`` one catalog entity, the same for all, so nothing in the graph's structure tells a test item's
band (nor, for a test item, that bands are what ``in_band`` leads to), while a model that reads the sizes can give
each band its interval of sizes. A second attribute, ``noise``, given for half of the items, is uninformative; the
bands and the catalog have no attributes (missing values). Small enough for any model to train on in seconds.

Only tails follow from the sizes this way: a head query ``(?, in_band, band)`` asks for the items of a band, an
interval of sizes, which a bilinear score (DistMult, ComplEx) linear in the size can pick out only for the first
and the last band.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kgem.data.dataset import Dataset
from kgem.data.literals import Literals, literals_from_df
from kgem.data.triples import Triples
from kgem.data.vocab import Vocabulary

RELATIONS = ["in_band", "listed_in"]
LITERALS_FILE = "literals.tsv"


@dataclass(frozen=True)
class LiteralGraph:
    """The dataset and its attribute lines ``values`` (columns entity, attribute, value: the attribute file)."""

    dataset: Dataset
    values: pd.DataFrame

    def literals(self) -> Literals:
        """The attribute matrix over the dataset's entities, as ``read_literals`` reads the written file."""
        return literals_from_df(self.values, self.dataset.entities, source="literal_graph")

    def write(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``train.tsv``, ``valid.tsv``, ``test.tsv`` and ``literals.tsv`` into ``folder`` (a dataset folder
        and its attribute file); returns the folder."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        for name, triples in self.dataset.splits().items():
            triples.write(root / f"{name}.tsv")
        self.values.to_csv(root / LITERALS_FILE, sep="\t", header=False, index=False)
        return root


def literal_graph(seed: int = 0, *, num_items: int = 200, num_bands: int = 4, shown: float = 0.5) -> LiteralGraph:
    """``num_items`` items with sizes drawn uniformly from [1, 1000] in ``num_bands`` bands; the band of a share
    ``shown`` of the items in train, a quarter of the others in valid, the rest in test. Entity ids are those of the
    sorted labels, as a dataset read from the written files numbers them."""
    if num_bands < 2 or num_items < 4 * num_bands or not 0 < shown < 1:
        raise ValueError(f"need num_bands >= 2, num_items >= 4 * num_bands and 0 < shown < 1, got {num_bands}, "
                         f"{num_items}, {shown}")
    rng = np.random.default_rng(seed)
    size = rng.uniform(1.0, 1000.0, num_items)
    band = np.empty(num_items, dtype=np.int64)
    band[np.argsort(size)] = np.arange(num_items) * num_bands // num_items  # equal shares by size rank
    items = [f"e{i:0{len(str(num_items - 1))}d}" for i in range(num_items)]
    bands = [f"band_{k:0{len(str(num_bands - 1))}d}" for k in range(num_bands)]
    entities = Vocabulary.from_labels([*bands, "catalog", *items], kind="entity")
    relations = Vocabulary(RELATIONS, kind="relation")
    item, band_of, catalog = entities.lookup(items), entities.lookup(bands)[band], int(entities.lookup(["catalog"])[0])
    facts = [(int(item[i]), 0, int(band_of[i])) for i in range(num_items)]
    listed = [(int(item[i]), 1, catalog) for i in range(num_items)]
    order = rng.permutation(num_items)
    shown_count = round(shown * num_items)
    held = order[shown_count:]
    cut = len(held) // 4

    def triples(rows: list[tuple[int, int, int]], split: str) -> Triples:
        return Triples(torch.tensor(sorted(rows), dtype=torch.long).reshape(-1, 3), entities, relations,
                       source=f"literal_graph/{split}")

    dataset = Dataset(triples([facts[i] for i in order[:shown_count]] + listed, "train"),
                      triples([facts[i] for i in held[:cut]], "valid"), triples([facts[i] for i in held[cut:]], "test"),
                      name="literal_graph")
    noisy = np.sort(rng.permutation(num_items)[: num_items // 2])
    values = pd.DataFrame({"entity": items + [items[i] for i in noisy],
                           "attribute": ["size"] * num_items + ["noise"] * len(noisy),
                           "value": np.r_[size.round(3), rng.normal(size=len(noisy)).round(3)]})
    return LiteralGraph(dataset, values)
