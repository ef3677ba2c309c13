"""Plots of a training run: the loss and validation curves, a 2-D map of the entity embeddings, per-relation MRR
and the relation patterns of the training graph.

Each ``plot_*`` function takes plain inputs (a DataFrame, an array) and returns a matplotlib ``Figure`` drawn on
its own Agg canvas, so the global backend is never touched (no display needed); ``path`` also saves it as a PNG,
atomically. ``plot_run`` draws every plot it can for a run folder written by ``kgem train --output DIR`` and
returns the files it wrote; a plot whose input is missing (e.g. no validation) is skipped with a logged warning.

matplotlib is an optional dependency (``pip install 'kgem[plot]'``), imported only when a figure is drawn; UMAP
maps need ``umap-learn``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from kgem.atomic import atomic_path
from kgem.circuits.model import CircuitModel
from kgem.config import load_config
from kgem.configs import PipelineConfig
from kgem.data import Dataset, relation_categories
from kgem.data.patterns import PATTERNS, relation_patterns
from kgem.data.types import read_entity_types
from kgem.data.vocab import Vocabulary
from kgem.errors import ConfigError, DataError, KgemError
from kgem.evaluation.calibration import PLOT_HINT
from kgem.evaluation.evaluator import eval_mode
from kgem.factory import (
    dataset_from_config,
    evaluator_from_config,
    negative_weights_from_config,
    negatives_from_config,
)
from kgem.inference.predictor import LinkPredictor
from kgem.saving import LoadedModel, load_model

if TYPE_CHECKING:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

__all__ = ["PLOTS", "best_validated_epoch", "embedding_coordinates", "most_frequent_relation", "plot_embeddings",
           "plot_losses", "plot_model_embeddings", "plot_relation_mrr", "plot_relation_patterns", "plot_run",
           "plot_validation", "read_entity_groups"]

PLOTS = ("losses", "validation", "embeddings", "relations", "patterns")  # plot_run's plots, each <name>.png
METHODS = ("pca", "umap")
DPI = 100
MAX_POINTS = 20_000  # entities drawn on a run's embedding map at most (a seeded sample beyond)
MAX_GROUPS = 9  # colour groups of an embedding map (tab10 but its grey); the rarer ones are drawn grey as "other"
MAX_NAMES = 40  # an embedding map names its points when it has at most this many
MAX_CELL_TEXT = 80  # a pattern heat map writes its values in the cells up to this many relations
UMAP_HINT = "UMAP maps need umap-learn, which is not installed: pip install umap-learn"
log = logging.getLogger(__name__)


def _matplotlib() -> tuple[type[Figure], type[FigureCanvasAgg]]:
    """matplotlib's figure and Agg canvas classes; without matplotlib, a one-line error naming the extra."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise KgemError(PLOT_HINT) from None
    del matplotlib  # imported first so a missing package fails here, even with its submodules loaded before
    return Figure, FigureCanvasAgg


def _figure(width: float, height: float) -> Figure:
    """An empty figure of ``width`` x ``height`` inches at ``DPI``, on its own Agg canvas."""
    figure_class, canvas_class = _matplotlib()
    figure = figure_class(figsize=(width, height), dpi=DPI, layout="constrained")
    canvas_class(figure)
    return figure


def _finish(figure: Figure, path: str | os.PathLike[str] | None) -> Figure:
    """Save ``figure`` as a PNG at ``path`` (written beside it, then renamed over it) when a path is given."""
    if path is not None:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=DPI)
    return figure


def _by_epoch(losses: pd.DataFrame, column: str) -> pd.Series:
    """``column`` of a losses table (``PipelineResult.losses()`` or a run's ``losses.csv``: epochs as the index
    or an ``epoch`` column) as a float series indexed by epoch."""
    frame = losses.set_index("epoch") if "epoch" in losses.columns else losses
    if column not in frame.columns:
        raise DataError(f"the losses table has no {column!r} column (it has {', '.join(map(str, frame.columns))})")
    if frame.empty:
        raise DataError("the losses table is empty: no epoch was trained")
    return frame[column].astype(float)


def _epoch_axis(axes: Any) -> None:
    """Whole epochs on the x axis, and a light grid."""
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)


def plot_losses(losses: pd.DataFrame, *, title: str | None = None,
                path: str | os.PathLike[str] | None = None) -> Figure:
    """The training loss per epoch (700 x 450 pixels)."""
    loss = _by_epoch(losses, "loss")
    figure = _figure(7, 4.5)
    axes = figure.add_subplot()
    axes.plot(loss.index, loss.to_numpy(), marker="o" if len(loss) <= 50 else None, color="tab:blue")
    axes.set(xlabel="epoch", ylabel="loss", title=title or "training loss")
    _epoch_axis(axes)
    return _finish(figure, path)


def best_validated_epoch(valid_mrr: pd.Series, min_delta: float = 0.0) -> int:
    """The epoch early stopping keeps: the first validation, then each one that beats the best so far by more than
    ``min_delta`` (``kgem.training.EarlyStopping``'s rule); NaN entries (epochs not validated) are skipped."""
    validated = valid_mrr.dropna()
    if validated.empty:
        raise DataError("no validated epoch: valid_mrr is empty (no valid split, or training.early_stopping off)")
    best, epoch = float("-inf"), int(validated.index[0])
    for at, value in zip(validated.index.tolist(), validated.tolist()):
        if value > best + min_delta:
            best, epoch = value, int(at)
    return epoch


def plot_validation(losses: pd.DataFrame, best_epoch: int | None = None, *, title: str | None = None,
                    path: str | os.PathLike[str] | None = None) -> Figure:
    """Validation MRR at each validated epoch, the early-stopping curve, with ``best_epoch`` marked (default: the
    epoch of the highest MRR, the first among ties) (700 x 450 pixels)."""
    valid = _by_epoch(losses, "valid_mrr").dropna()
    best = best_validated_epoch(valid) if best_epoch is None else best_epoch
    if best not in valid.index:
        raise DataError(f"best_epoch {best} was not validated (validated epochs: {', '.join(map(str, valid.index))})")
    figure = _figure(7, 4.5)
    axes = figure.add_subplot()
    axes.plot(valid.index, valid.to_numpy(), marker="o", color="tab:blue", label="validation MRR")
    axes.axvline(best, color="tab:red", linestyle="--", label=f"best epoch {best} (MRR {valid[best]:.3f})")
    axes.plot([best], [valid[best]], marker="*", markersize=16, color="tab:red")
    axes.set(xlabel="epoch", ylabel="MRR", title=title or "validation (early stopping)")
    _epoch_axis(axes)
    axes.legend(loc="lower right")
    return _finish(figure, path)


def _real_rows(vectors: Any) -> np.ndarray:
    """``vectors`` (array or tensor, ``(n, d)``) as float64 numpy; complex rows as their real parts then their
    imaginary parts, ``(n, 2d)``."""
    array = vectors.detach().cpu().numpy() if isinstance(vectors, torch.Tensor) else np.asarray(vectors)
    if array.ndim != 2:
        raise DataError(f"embeddings must be a 2-D (rows, dim) array, got shape {array.shape}")
    if np.iscomplexobj(array):
        array = np.concatenate([array.real, array.imag], axis=1)
    array = array.astype(np.float64)
    if len(array) < 2 or not np.isfinite(array).all():
        raise DataError(f"a 2-D map needs at least 2 rows of finite numbers, got {len(array)} rows"
                        + ("" if np.isfinite(array).all() else " with NaN or infinite values"))
    return array


def _pca(rows: np.ndarray) -> np.ndarray:
    """The rows projected on their two principal axes: the top right singular vectors of the centred matrix, each
    signed so that its largest-magnitude loading is positive (a deterministic orientation); a 1-D table gets a zero
    second coordinate."""
    centred = torch.from_numpy(rows - rows.mean(axis=0))
    axes = torch.linalg.svd(centred, full_matrices=False).Vh[:2]
    signs = torch.sign(axes.gather(1, axes.abs().argmax(dim=1, keepdim=True)))
    coordinates = (centred @ (axes * signs).T).numpy()
    return np.pad(coordinates, ((0, 0), (0, 2 - coordinates.shape[1])))


def _umap(rows: np.ndarray, seed: int) -> np.ndarray:
    try:
        import umap
    except ImportError:
        raise KgemError(UMAP_HINT) from None
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(rows) - 1), random_state=seed)
    return np.asarray(reducer.fit_transform(rows), dtype=np.float64)


def embedding_coordinates(vectors: Any, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D coordinates ``(n, 2)`` of the rows of ``vectors`` by ``method``: "pca" (exact, by SVD) or "umap"
    (seeded; needs umap-learn). Complex rows are mapped as their real and imaginary parts side by side."""
    if method not in METHODS:
        raise DataError(f"unknown map method {method!r}; choose one of {', '.join(METHODS)}")
    rows = _real_rows(vectors)
    return _pca(rows) if method == "pca" else _umap(rows, seed)


def _check_length(values: Sequence[Any] | np.ndarray | None, rows: int, what: str) -> np.ndarray | None:
    if values is None:
        return None
    array = np.asarray(values, dtype=object)
    if len(array) != rows:
        raise DataError(f"{len(array)} {what} for {rows} embedding rows")
    return array


def _colour_groups(groups: np.ndarray) -> list[tuple[str, np.ndarray, Any]]:
    """``(legend name, row mask, colour)`` per drawn group: the ``MAX_GROUPS`` most frequent groups in the tab10
    colours but grey (ties by name), the rest grey as "other", rows without a group ("" or None) light grey."""
    from matplotlib import colormaps

    names = np.asarray(["" if g is None else str(g) for g in groups], dtype=object)
    found, counts = np.unique(names[names != ""], return_counts=True)
    ranked = [str(found[i]) for i in np.lexsort((found, -counts))]
    palette = [colormaps["tab10"](i) for i in range(10) if i != 7]  # 7: tab10's grey
    drawn: list[tuple[str, np.ndarray, Any]] = [(name, names == name, colour)
                                                 for name, colour in zip(ranked[:MAX_GROUPS], palette)]
    other = np.isin(names, ranked[MAX_GROUPS:])
    if other.any():
        drawn.append((f"other ({len(ranked) - MAX_GROUPS} groups)", other, "grey"))
    if (names == "").any():
        drawn.append(("unlabelled", names == "", "lightgrey"))
    return drawn


def plot_embeddings(vectors: Any, labels: Sequence[str] | np.ndarray | None = None,
                    colours: Sequence[str] | np.ndarray | None = None, method: str = "pca", *, seed: int = 0,
                    title: str | None = None, path: str | os.PathLike[str] | None = None) -> Figure:
    """A 2-D map of the rows of ``vectors`` (``embedding_coordinates``): ``labels`` names the points (written
    when there are at most ``MAX_NAMES``), ``colours`` gives each row a group (e.g. an entity type) coloured with a
    legend (800 x 600 pixels)."""
    points = embedding_coordinates(vectors, method, seed)
    names = _check_length(labels, len(points), "labels")
    groups = _check_length(colours, len(points), "colour groups")
    figure = _figure(8, 6)
    axes = figure.add_subplot()
    size = 30 if len(points) <= 1000 else 6
    if groups is None:
        axes.scatter(points[:, 0], points[:, 1], s=size, color="tab:blue")
    else:
        for name, rows, colour in _colour_groups(groups):
            axes.scatter(points[rows, 0], points[rows, 1], s=size, color=colour, label=name)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", frameon=False)
    if names is not None and len(points) <= MAX_NAMES:
        for (x, y), name in zip(points, names):
            axes.annotate(str(name), (x, y), xytext=(3, 3), textcoords="offset points", fontsize=7)
    axes.set(xlabel=f"{method.upper()} 1", ylabel=f"{method.upper()} 2",
             title=title or f"entity embeddings ({method.upper()}, {len(points)} rows)")
    return _finish(figure, path)


def read_entity_groups(path: str | os.PathLike[str], entities: Vocabulary) -> np.ndarray:
    """The group of each entity (object array, "" for an entity the file does not list) from a UTF-8 TSV file of
    ``entity<TAB>group`` lines, the entity-types format (``kgem.data.types``): a malformed line, an unknown entity
    or an entity listed twice is a DataError naming the file and line."""
    types, of_entity = read_entity_types(path, entities)
    index = of_entity.numpy()
    return np.where(index >= 0, types.labels[np.maximum(index, 0)] if len(types) else "", "").astype(object)


def most_frequent_relation(hrt: torch.Tensor, num_entities: int,
                           relation_labels: Sequence[str] | np.ndarray) -> np.ndarray:
    """Each entity's most frequent relation in ``hrt`` (as head or as tail; the lowest id among ties), a rough
    entity type for colouring a map; "" for an entity without a triple."""
    num_relations = len(relation_labels)
    h, r, t = hrt.long().numpy().T
    codes, counts = np.unique(np.concatenate([h * num_relations + r, t * num_relations + r]), return_counts=True)
    entity, relation = codes // num_relations, codes % num_relations
    order = np.lexsort((relation, -counts, entity))
    entity, relation = entity[order], relation[order]
    first = np.r_[True, entity[1:] != entity[:-1]] if len(entity) else np.zeros(0, dtype=bool)
    labels = np.asarray([str(x) for x in relation_labels], dtype=object)
    groups = np.full(num_entities, "", dtype=object)
    groups[entity[first]] = labels[relation[first]]
    return groups


def _sample(num: int, max_points: int, seed: int) -> torch.Tensor:
    """All ids ``0..num-1`` when at most ``max_points``, else a seeded sample of ``max_points`` of them, sorted."""
    if num <= max_points:
        return torch.arange(num)
    chosen = torch.randperm(num, generator=torch.Generator().manual_seed(seed))[:max_points]
    return chosen.sort().values


def plot_model_embeddings(predictor: LinkPredictor, hrt: torch.Tensor | None = None, *,
                          labels_file: str | os.PathLike[str] | None = None, method: str = "pca",
                          max_points: int = MAX_POINTS, seed: int = 0,
                          path: str | os.PathLike[str] | None = None) -> Figure:
    """``plot_embeddings`` of a model's entity rows as it scores with them (a loaded model or a pipeline result;
    a seeded sample of ``max_points`` rows of a larger table), named by label and coloured by the groups of
    ``labels_file`` (``read_entity_groups``) or else by each entity's most frequent relation in ``hrt`` (the
    training triples, in the model's ids); uncoloured when neither is given."""
    if isinstance(predictor.model, CircuitModel):
        raise DataError(f"the generative circuit {predictor.model.name} keeps no entity embedding table to map")
    model = predictor.model
    ids = _sample(model.num_entities, max_points, seed)
    with eval_mode(model):
        vectors = model.entity(ids.to(model.device))
    if labels_file is not None:
        groups: np.ndarray | None = read_entity_groups(labels_file, predictor.entities)[ids.numpy()]
    elif hrt is not None:
        groups = most_frequent_relation(hrt, model.num_entities, predictor.relations.labels)[ids.numpy()]
    else:
        groups = None
    kept = f", {len(ids)} of {model.num_entities} sampled" if len(ids) < model.num_entities else ""
    return plot_embeddings(vectors, predictor.entities.labels[ids.numpy()], groups, method, seed=seed,
                           title=f"entity embeddings ({method.upper()}{kept})", path=path)


def _bar_height(rows: int) -> float:
    """Inches of a figure with one bar or heat-map row per relation."""
    return max(3.0, 0.25 * rows + 1.5)


def plot_relation_mrr(per_relation: pd.DataFrame, *, title: str | None = None,
                      path: str | os.PathLike[str] | None = None) -> Figure:
    """Horizontal bars of each relation's MRR (``EvaluationResult.per_relation()``), the best at the top, with
    its query count where the table has one (800 pixels wide, 25 pixels a relation, at least 300 high)."""
    if "mrr" not in per_relation.columns:
        raise DataError(f"the per-relation table has no 'mrr' column (it has {', '.join(per_relation.columns)})")
    if per_relation.empty:
        raise DataError("the per-relation table is empty: no relation has a query")
    table = per_relation.sort_values("mrr", kind="stable")
    names = [f"{label} ({int(n)})" for label, n in zip(table.index, table["count"])] if "count" in table else \
        [str(label) for label in table.index]
    figure = _figure(8, _bar_height(len(table)))
    axes = figure.add_subplot()
    axes.barh(np.arange(len(table)), table["mrr"].to_numpy(dtype=float), color="tab:blue")
    axes.set_yticks(np.arange(len(table)), names, fontsize=8)
    axes.set(xlim=(0, 1), ylim=(-0.6, len(table) - 0.4), xlabel="MRR",
             title=title or "MRR per relation" + (" (queries)" if "count" in table else ""))
    axes.grid(axis="x", alpha=0.3)
    return _finish(figure, path)


def _cell_text(table: pd.DataFrame, column: str, row: int) -> str:
    value = table[column].iloc[row]
    if pd.isna(value):
        return "–"
    partner = {"inversion": "inverse", "implication": "implies"}.get(column)
    name = table[partner].iloc[row] if partner in table else None
    return f"{value:.2f}" + (f" {str(name)[:14]}" if name is not None and not pd.isna(name) and value > 0 else "")


def plot_relation_patterns(patterns: pd.DataFrame, *, title: str | None = None,
                           path: str | os.PathLike[str] | None = None) -> Figure:
    """The confidences of ``relation_patterns`` as a heat map, a row per relation (with its category) and a column
    per pattern, the values (and the best inverse / implied relation) written in the cells up to
    ``MAX_CELL_TEXT`` relations (900 pixels wide, 25 pixels a relation, at least 300 high)."""
    missing = [name for name in PATTERNS if name not in patterns.columns]
    if missing:
        raise DataError(f"the pattern table has no {', '.join(missing)} column (see kgem.data.patterns)")
    if patterns.empty:
        raise DataError("the pattern table is empty: no relation")
    values = patterns[list(PATTERNS)].to_numpy(dtype=float)
    names = [f"{label} ({category})" for label, category in zip(patterns.index, patterns["category"])] \
        if "category" in patterns else [str(label) for label in patterns.index]
    figure = _figure(9, _bar_height(len(patterns)))
    axes = figure.add_subplot()
    image = axes.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=0, vmax=1, aspect="auto",
                        interpolation="nearest")
    axes.set_xticks(np.arange(len(PATTERNS)), PATTERNS)
    axes.set_yticks(np.arange(len(patterns)), names, fontsize=8)
    axes.xaxis.tick_top()
    if len(patterns) <= MAX_CELL_TEXT:
        for row in range(len(patterns)):
            for column, name in enumerate(PATTERNS):
                value = values[row, column]
                axes.text(column, row, _cell_text(patterns, name, row), ha="center", va="center", fontsize=7,
                          color="black" if np.isfinite(value) and value > 0.6 else "white")
    figure.colorbar(image, ax=axes, label="confidence", shrink=0.8)
    axes.set_title(title or "relation patterns of the training triples")
    return _finish(figure, path)


class Skipped(Exception):
    """A plot of a run whose input is missing; ``plot_run`` logs it and goes on."""


class RunInputs:
    """What the plots of a run folder read, each at most once and only when a plot asks for it: the config, the
    losses table, the saved model and the dataset it was trained on."""

    def __init__(self, folder: Path, labels_file: str | os.PathLike[str] | None, method: str, seed: int) -> None:
        config = folder / "config.yaml"
        if not config.is_file():
            raise ConfigError(f"{folder} is not a run folder: {config} is missing (write one with kgem train "
                              f"--output)")
        self.folder, self.labels_file, self.method, self.seed = folder, labels_file, method, seed
        self.config = load_config(PipelineConfig, config)

    @cached_property
    def losses(self) -> pd.DataFrame:
        path = self.folder / "losses.csv"
        if not path.is_file():
            raise Skipped(f"no {path} (the run has not finished)")
        return pd.read_csv(path, index_col="epoch")

    @cached_property
    def model(self) -> LoadedModel:
        path = self.folder / "model"
        if not path.is_dir():
            raise Skipped(f"no saved model in {path} (the run has not finished)")
        return load_model(path)

    @cached_property
    def dataset(self) -> Dataset:
        try:
            return dataset_from_config(self.config.data)
        except KgemError as e:
            raise Skipped(f"cannot load the run's dataset: {' '.join(str(e).split())}") from e

    def training_triples(self) -> torch.Tensor:
        """The training triples in the saved model's ids (labels it does not know left out)."""
        return self.model.encode(self.dataset.train)

    def per_relation(self) -> pd.DataFrame:
        """The test split ranked by the saved model as the run's evaluation section says, MRR per relation."""
        test = self.dataset.test
        if test is None or not len(test):
            raise Skipped("the dataset has no test split to rank")
        cfg, loaded = self.config.evaluation, self.model
        known = loaded.with_known([self.dataset.splits()[s] for s in cfg.filter]).known if cfg.filter else None
        train = self.training_triples()
        evaluator = evaluator_from_config(
            cfg, known, relation_categories=relation_categories(train, loaded.model.num_relations),
            negative_weights=negative_weights_from_config(cfg, train, loaded.model.num_entities),
            negatives=negatives_from_config(cfg, self.dataset, "test"))  # protocol ogb: the run's own dataset
        return evaluator(loaded.model, loaded.encode(test)).per_relation(loaded.relations.labels.tolist())


def _validation(run: RunInputs, path: Path) -> Figure:
    valid = _by_epoch(run.losses, "valid_mrr")
    if valid.isna().all():
        raise Skipped("losses.csv has no validated epoch (no valid split, or training.early_stopping off)")
    return plot_validation(run.losses, best_validated_epoch(valid, run.config.training.min_delta), path=path)


def _embeddings(run: RunInputs, path: Path) -> Figure:
    if isinstance(run.model.model, CircuitModel):
        raise Skipped(f"the generative circuit {run.model.model.name} keeps no entity embedding table")
    hrt = run.training_triples() if run.labels_file is None else None
    return plot_model_embeddings(run.model, hrt, labels_file=run.labels_file, method=run.method, seed=run.seed,
                                 path=path)


def _patterns(run: RunInputs, path: Path) -> Figure:
    dataset = run.dataset
    return plot_relation_patterns(relation_patterns(dataset.train.hrt, dataset.num_relations,
                                                    dataset.relations.labels), path=path)


DRAW: dict[str, Callable[[RunInputs, Path], Figure]] = {
    "losses": lambda run, path: plot_losses(run.losses, path=path),
    "validation": _validation,
    "embeddings": _embeddings,
    "relations": lambda run, path: plot_relation_mrr(run.per_relation(), path=path),
    "patterns": _patterns,
}


def plot_run(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None, *,
             which: Sequence[str] = PLOTS, labels: str | os.PathLike[str] | None = None, method: str = "pca",
             seed: int = 0) -> list[Path]:
    """Draw the plots ``which`` (default all of ``PLOTS``) of a run folder into ``out_dir`` (default
    ``RUN_DIR/plots``) as ``<name>.png`` and return the paths written, in ``which``'s order:

    - losses: the training loss per epoch, from ``losses.csv``;
    - validation: validation MRR per validated epoch with the epoch early stopping kept;
    - embeddings: a 2-D map (``method`` pca or umap) of the saved model's entities, coloured by the groups of the
      ``labels`` file (``read_entity_groups``) or by each entity's most frequent training relation;
    - relations: MRR per relation, from ranking the dataset's test split with the saved model as the run's
      evaluation section says (filter, sides, rank type);
    - patterns: the relation patterns of the training triples (``kgem.data.patterns``).

    A plot whose input is missing (no validation, no test split, a run without its model yet) is skipped with a
    warning on this module's logger."""
    unknown = [name for name in which if name not in PLOTS]
    if unknown:
        raise ConfigError(f"unknown plot {unknown[0]!r}; choose from {', '.join(PLOTS)}")
    if method not in METHODS:
        raise ConfigError(f"unknown map method {method!r}; choose one of {', '.join(METHODS)}")
    _matplotlib()  # a missing matplotlib fails here, before a model is loaded or a split ranked
    run = RunInputs(Path(run_dir), labels, method, seed)
    out = Path(out_dir) if out_dir is not None else run.folder / "plots"
    written = []
    for name in dict.fromkeys(which):
        path = out / f"{name}.png"
        try:
            DRAW[name](run, path)
        except Skipped as e:
            log.warning("%s not drawn: %s", name, e)
            continue
        written.append(path)
    return written
