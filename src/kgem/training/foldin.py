"""Fold-in: rows for the entities and relations of triples that arrive after training, fitted while every old row
stays exactly as it was (and continual training of everything, ``unfreeze``).

``grow`` rebuilds the model with room for the new labels: the old rows, and every tensor outside the two tables (a
core tensor, convolution weights, batch-norm statistics), are copied bit for bit, so the old entities' and
relations' scores among themselves are exactly what they were.

``initialise`` starts each new row as the row of its *analogue*: the old entity (relation) the model itself finds
most likely in its place, summed over the new triples whose other two parts are known (the log-softmax of the scores
over the old entities or relations, so every triple weighs alike). A new entity ``e`` of ``(e, r, t)`` and
``(h', r', e)`` takes the row of the old entity ``c`` that maximises ``log p(c | r, t) + log p(c | h', r')``.
Copying a whole row, rather than a mean of queries or a least-squares solve, fits every interaction (distances,
products, networks) and keeps the rows' constraints (unit norm, phases) without a case per model. Rows that only
meet other new rows are initialised in later rounds from those initialised before them; rows never reached (their
triples hold a new relation and a new entity only) keep the model's fresh initialisation.

``fit`` then trains the new rows alone on the new triples, with the model's own objective (the saved run's approach,
loss and regulariser: ``Objective``), for a few hundred Adam steps: the old rows are read from a frozen copy and are
never parameters, and the model stays in eval mode (no dropout, batch-norm statistics untouched). Fitted on their
own triples alone, new rows learn where they belong but not where they do not: an entity that started as a copy of
a hub keeps answering the hub's queries. Given the old training triples, each step also adds the share of their
queries' answers the new entities take (``intrusion``), weighted by how many they are: with 1vsAll and
cross-entropy, exactly the objective of retraining on old and new triples with every old row held fixed (a run
trained with relation prediction folds in with that term too; the share of the old triples' relation predictions
that new relations take is not counted).

Models whose entity rows an encoder computes from the training graph or node attributes (R-GCN, the literal models),
and generative circuits, cannot grow row by row: they are refused with a ConfigError.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from kgem.circuits.model import AnyModel
from kgem.data.triples import Triples, read_triples
from kgem.data.vocab import Vocabulary, label_problem
from kgem.errors import ConfigError, DataError, TrainingError
from kgem.models.builders import build_model
from kgem.models.model import Model
from kgem.models.representation import Embedding, Representation
from kgem.ops.rows import EPS
from kgem.training.approaches import SLCWA, Approach, KvsAll, OneVsAll
from kgem.training.loop import local_step
from kgem.training.losses import LOSSES, Loss
from kgem.training.optim import build_optimizer
from kgem.training.regularizers import REGULARIZERS, Regularizer
from kgem.training.samplers import NegativeSampler
from kgem.training.trainer import Trainer

NewTriples = Triples | pd.DataFrame | Sequence[Sequence[str]] | str | os.PathLike[str]
Init = Literal["neighbours", "random"]
NewRelations = Literal["add", "error"]
SCORE_BLOCK = 1 << 22  # scores per block when the analogues are found (16 MB of float32)


@dataclass(frozen=True)
class Objective:
    """What the new rows are fitted on, and the whole model trained on with ``unfreeze``: the saved run's
    ``training`` section (``from_saved``), each missing key at kgem's default (``TrainingConfig``'s, which a test
    keeps in step). Edge weights, filtering and the sampler's options do not apply to fold-in."""

    approach: str = "1vsall"
    relation_prediction: float = 0.0
    loss: str = "cross_entropy"
    loss_args: dict[str, Any] = field(default_factory=dict)
    num_negatives: int = 64
    regularizer: str | None = "n3"
    regularizer_args: dict[str, Any] = field(default_factory=lambda: {"weight": 0.01})
    optimizer: str = "adagrad"
    optimizer_args: dict[str, Any] = field(default_factory=dict)
    lr: float = 0.1
    batch_size: int = 256

    @classmethod
    def from_saved(cls, training: Mapping[str, Any]) -> Objective:
        """The objective of a saved run's ``training`` section (``extra["pipeline"]["training"]``)."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in training.items() if key in names})

    def parts(self) -> tuple[Approach, Loss, Regularizer | None]:
        """The approach, loss and regulariser this objective names; a bad name or argument is a ConfigError."""
        approaches: dict[str, Callable[[], Approach]] = {
            "slcwa": lambda: SLCWA(NegativeSampler(self.num_negatives)), "kvsall": KvsAll,
            "1vsall": lambda: OneVsAll(self.relation_prediction)}
        if self.approach not in approaches:
            raise ConfigError(f"fold-in: unknown approach {self.approach!r}; known: {', '.join(approaches)}")
        try:
            approach = approaches[self.approach]()
            loss = LOSSES.get(self.loss)(**self.loss_args)
            regularizer = (REGULARIZERS.get(self.regularizer)(**self.regularizer_args) if self.regularizer
                           else None)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"fold-in: the saved approach, loss or regularizer does not build ({e})") from e
        return approach, loss, regularizer


@dataclass
class Extension:
    """What ``extend`` made: the grown model in eval mode, the grown vocabularies (old labels keep their ids, new
    ones follow, sorted) and a JSON-ready report of what was added and how the fit went."""

    model: Model
    entities: Vocabulary
    relations: Vocabulary
    report: dict[str, Any]


def extend(model: AnyModel, spec: Mapping[str, Any], entities: Vocabulary, relations: Vocabulary,
           triples: NewTriples, *, objective: Objective | None = None, steps: int = 300, lr: float = 0.01,
           init: Init = "neighbours", new_relations: NewRelations = "add", unfreeze: bool = False, epochs: int = 1,
           train: torch.Tensor | None = None, seed: int = 0) -> Extension:
    """Grow ``model`` (built from ``spec``, with vocabularies ``entities`` and ``relations``) by the entities and
    relations of ``triples`` it does not know: their rows start as ``init`` says (``neighbours``: each one's
    analogue, see the module; ``random``: the model's fresh initialisation) and are fitted alone for ``steps`` Adam
    steps at ``lr`` on the triples that touch them (0: no fit); every old row and tensor is left as it was.
    ``train`` (the old training triples, in the old ids) makes the fit keep the new rows out of the old triples'
    answers too (``fit``).

    ``new_relations="error"`` makes a relation the model does not know an error (a misspelt label) instead of a new
    row. ``unfreeze`` then trains the whole model for ``epochs`` on ``train`` and all of ``triples``, with the saved
    run's optimizer, learning rate and batch size (``objective``, by default kgem's): a warm start with the grown
    vocabularies; the old rows change. ``model`` itself is never modified."""
    started = time.perf_counter()
    base = growable(model)
    objective = objective or Objective()
    check_settings(steps, lr, init, new_relations, epochs, unfreeze, train)
    labels = label_array(triples)
    new_entities = new_labels(np.concatenate([labels[:, 0], labels[:, 2]]), entities)
    added_relations = new_labels(labels[:, 1], relations)
    if len(added_relations) and new_relations == "error":
        label = str(added_relations[0])
        raise DataError(f"unknown relation {label!r}{relations.suggest(label)} (new relations are refused here)")
    grown_entities = Vocabulary(np.concatenate([entities.labels, new_entities]), kind="entity")
    grown_relations = Vocabulary(np.concatenate([relations.labels, added_relations]), kind="relation")
    hrt = torch.from_numpy(np.stack([grown_entities.lookup(labels[:, 0]), grown_relations.lookup(labels[:, 1]),
                                     grown_entities.lookup(labels[:, 2])], 1))
    old_e, old_r = len(entities), len(relations)
    touching = (hrt[:, 0] >= old_e) | (hrt[:, 2] >= old_e) | (hrt[:, 1] >= old_r)
    report: dict[str, Any] = {"entities_added": len(new_entities), "relations_added": len(added_relations),
                              "triples": len(hrt), "triples_touching_new": int(touching.sum()), "init": init,
                              "steps": steps, "lr": lr, "unfreeze": unfreeze, "seed": seed}
    if not bool(touching.any()) and not unfreeze:
        report.update(note="no new entity or relation: the model is unchanged", seconds=0.0)
        return Extension(base, entities, relations, report)
    grown = grow(base, spec, len(grown_entities), len(grown_relations), seed=seed)
    if init == "neighbours":
        report["initialised"] = initialise(grown, hrt[touching], old_e, old_r)
    if bool(touching.any()):
        report.update(fit(grown, hrt[touching], old_e, old_r, objective, steps=steps, lr=lr, old_triples=train,
                          seed=seed).report())
    if unfreeze:
        assert train is not None
        everything = torch.cat([train.to(hrt), hrt])
        epoch_losses = train_all(grown, everything, objective, epochs=epochs, seed=seed)
        report.update(epochs=epochs, epoch_losses=[round(x, 6) for x in epoch_losses], train_triples=len(train))
    report["seconds"] = round(time.perf_counter() - started, 3)
    return Extension(grown, grown_entities, grown_relations, report)


def growable(model: AnyModel) -> Model:
    """``model`` if its entity and relation rows are embedding tables, else a ConfigError saying why not."""
    if not isinstance(model, Model):
        raise ConfigError("fold-in grows the tables of an embedding model; this is a generative circuit (retrain it "
                          "with the new triples)")
    for part, what in ((model.entity, "entity"), (model.relation, "relation")):
        if type(part) is not Embedding:
            raise ConfigError(f"fold-in: this model's {what} rows are computed by an encoder ({type(part).__name__}: "
                              f"rgcn, literal models) from the training graph or node attributes, so new {what}s "
                              f"cannot get rows of their own; retrain with the new triples instead")
    return model


def check_settings(steps: int, lr: float, init: str, new_relations: str, epochs: int, unfreeze: bool,
                   train: torch.Tensor | None) -> None:
    """A ConfigError naming the first setting of ``extend`` that cannot work."""
    if init not in ("neighbours", "random"):
        raise ConfigError(f"init must be neighbours or random, got {init!r}")
    if new_relations not in ("add", "error"):
        raise ConfigError(f"new_relations must be add or error, got {new_relations!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"steps must be a whole number, 0 or more, got {steps!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"lr must be a positive number, got {lr!r}")
    if unfreeze and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ConfigError(f"epochs must be at least 1 with unfreeze, got {epochs!r}")
    if unfreeze and train is None:
        raise ConfigError("unfreeze trains on the old triples too: give them (train=dataset, or kgem extend "
                          "--train FILE; by default kgem extend reads the dataset the model was trained on)")


def label_array(triples: NewTriples) -> np.ndarray:
    """``triples`` as an ``(n, 3)`` object array of label strings: a file (read as ``read_triples`` reads one),
    ``Triples``, a DataFrame with head, relation and tail columns, or a sequence of label triples."""
    if isinstance(triples, (str, os.PathLike)):
        triples = read_triples(Path(triples))
    if isinstance(triples, Triples):
        ids = triples.hrt.numpy()
        return np.stack([triples.entities.to_labels(ids[:, 0]), triples.relations.to_labels(ids[:, 1]),
                         triples.entities.to_labels(ids[:, 2])], 1).astype(object)
    if isinstance(triples, pd.DataFrame):
        missing = [name for name in ("head", "relation", "tail") if name not in triples.columns]
        if missing:
            raise DataError(f"the new triples' DataFrame lacks columns {missing} (it has {list(triples.columns)})")
        table = triples[["head", "relation", "tail"]].to_numpy(dtype=object)
    else:
        rows = [(row,) if isinstance(row, str) else tuple(row) for row in triples]
        bad = next((i for i, row in enumerate(rows) if len(row) != 3), None)
        if bad is not None:
            raise DataError(f"new triple {bad}: expected (head, relation, tail), got {rows[bad]!r}")
        table = np.array(rows, dtype=object).reshape(len(rows), 3)
    for label in pd.unique(table.ravel()):  # each distinct label once
        problem = label_problem(label) if isinstance(label, str) else "not a string"
        if problem:
            row = int(np.flatnonzero((table == label).any(1))[0])
            raise DataError(f"new triple {row}: label {label!r}: {problem}")
    return table


def new_labels(labels: np.ndarray, vocabulary: Vocabulary) -> np.ndarray:
    """The distinct ``labels`` ``vocabulary`` lacks, sorted (so the same triples always give the same ids)."""
    unknown = labels[vocabulary.lookup(labels) < 0]
    return np.sort(pd.unique(unknown)).astype(object)


def relation_rows(old: int, new: int, inverse: bool) -> torch.Tensor:
    """Where the ``old`` relations' rows (and their reciprocals' with ``inverse``) are in a table grown to ``new``
    relations: forward rows keep their ids, reciprocal row ``r + old`` moves to ``r + new``."""
    forward = torch.arange(old)
    return torch.cat([forward, forward + new]) if inverse else forward


def grow(model: Model, spec: Mapping[str, Any], num_entities: int, num_relations: int, *, seed: int = 0) -> Model:
    """``model`` rebuilt from ``spec`` for ``num_entities`` and ``num_relations`` (its own counts or more), in eval
    mode: its rows and every other tensor copied exactly, the new rows at the model's fresh initialisation (drawn
    from ``seed``, whatever the global random state)."""
    growable(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        grown = build_model(spec["name"], num_entities, num_relations, spec["dim"], inverse=spec["inverse"],
                            **spec["args"])
    weight = tables(model)[0]
    grown = grown.to(device=weight.device, dtype=weight.dtype)
    old, new = model.state_dict(), grown.state_dict()
    if set(old) != set(new):
        raise ConfigError(f"fold-in: the spec {dict(spec)!r} does not rebuild this model")
    rows = {"entity.weight": torch.arange(model.num_entities),
            "relation.weight": relation_rows(model.num_relations, num_relations, model.inverse)}
    with torch.no_grad():
        for key, value in new.items():
            if key in rows:
                value[rows[key].to(value.device)] = old[key]
            elif value.shape == old[key].shape:
                value.copy_(old[key])
            else:
                raise ConfigError(f"fold-in: {key} depends on the vocabularies ({tuple(old[key].shape)} for "
                                  f"{model.num_entities} entities), so this model cannot grow")
    return grown.eval()


@torch.no_grad()
def initialise(model: Model, hrt: torch.Tensor, old_entities: int, old_relations: int) -> dict[str, int]:
    """Copy into each new row (entity ids from ``old_entities``, relations from ``old_relations``) the row of its
    analogue, in rounds (see the module); returns how many entity and relation rows were initialised so."""
    device = model.device
    hrt = hrt.to(device)
    known_e = torch.arange(model.num_entities, device=device) < old_entities
    known_r = torch.arange(model.num_relations, device=device) < old_relations
    done = {"entities": 0, "relations": 0}
    while True:
        relations = _relation_analogues(model, hrt, known_e, known_r, old_relations)
        entities = _entity_analogues(model, hrt, known_e, known_r, old_entities)
        if not (len(relations[0]) or len(entities[0])):
            return done
        entity_table, relation_table = tables(model)
        entity_table[entities[0]] = entity_table[entities[1]]
        relation_table[relations[0]] = relation_table[relations[1]]
        if model.inverse:  # the reciprocal rows alike
            relation_table[relations[0] + model.num_relations] = relation_table[relations[1] + model.num_relations]
        known_r[relations[0]], known_e[entities[0]] = True, True
        done["relations"] += len(relations[0])
        done["entities"] += len(entities[0])


def tables(model: Model) -> tuple[torch.Tensor, torch.Tensor]:
    """The entity and relation tables (``growable`` models' representations are embedding tables)."""
    assert isinstance(model.entity, Embedding) and isinstance(model.relation, Embedding)
    return model.entity.weight, model.relation.weight


def _entity_analogues(model: Model, hrt: torch.Tensor, known_e: torch.Tensor, known_r: torch.Tensor,
                      old: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The new entities that triples with known other parts reach, and the old entity each takes its row from."""
    h, r, t = hrt.unbind(1)
    as_tail = ~known_e[t] & known_e[h] & known_r[r]
    as_head = ~known_e[h] & known_e[t] & known_r[r]
    owners = torch.cat([t[as_tail], h[as_head]])
    if not len(owners):
        return owners, owners
    candidates = torch.arange(old, device=hrt.device)
    distinct, local = torch.unique(owners, return_inverse=True)
    total = torch.zeros(len(distinct), old, dtype=torch.float64, device=hrt.device)
    tails, heads = hrt[as_tail], hrt[as_head]
    _accumulate(total, local[: len(tails)], tails, lambda x: model.score_t(x[:, 0], x[:, 1], candidates))
    _accumulate(total, local[len(tails) :], heads, lambda x: model.score_h(x[:, 1], x[:, 2], candidates))
    return distinct, total.argmax(1)


def _relation_analogues(model: Model, hrt: torch.Tensor, known_e: torch.Tensor, known_r: torch.Tensor,
                        old: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The new relations that triples between known entities reach, and the old relation each takes its row
    from (its reciprocal row too)."""
    h, r, t = hrt.unbind(1)
    reached = ~known_r[r] & known_e[h] & known_e[t]
    if not bool(reached.any()):
        empty = r[:0]
        return empty, empty
    distinct, local = torch.unique(r[reached], return_inverse=True)
    total = torch.zeros(len(distinct), old, dtype=torch.float64, device=hrt.device)
    _accumulate(total, local, hrt[reached], lambda x: model.score_r(x[:, 0], x[:, 2])[:, :old])
    return distinct, total.argmax(1)


def _accumulate(total: torch.Tensor, owners: torch.Tensor, queries: torch.Tensor,
                score: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """``total[owners[i]] += log_softmax(score(queries[i]))``, scored in blocks of about ``SCORE_BLOCK`` scores."""
    block = max(1, SCORE_BLOCK // max(total.shape[1], 1))
    for start in range(0, len(queries), block):
        scores = score(queries[start : start + block]).double()
        total.index_add_(0, owners[start : start + block], torch.log_softmax(scores, dim=1))


class NewRows(Representation):
    """An embedding table while its new rows are fitted: the rows outside ``free`` read from the table, detached
    (never a parameter, never written), the rows ``free`` from the parameter ``rows``; what a lookup returns is
    what the table's would (its kind and normalisation). ``write`` puts the fitted rows into the table."""

    def __init__(self, table: Embedding, free: torch.Tensor) -> None:
        super().__init__()
        self.num, self.dim, self.kind, self.normalize, self.sparse = table.num, table.dim, table.kind, \
            table.normalize, False
        device = table.weight.device
        self.free = free.to(device)
        self.fixed = table.weight.detach()
        self.rows = nn.Parameter(self.fixed[self.free].clone())
        self.slot = torch.full((table.num,), -1, dtype=torch.long, device=device)
        self.slot[self.free] = torch.arange(len(self.free), device=device)
        self._table = [table]  # in a list: not a submodule (constraining it would touch the old rows)

    def forward(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        if ids is None:
            ids = torch.arange(self.num, device=self.fixed.device)
        if not len(self.free):
            return self._table[0].transform(F.embedding(ids, self.fixed))
        slot = self.slot[ids]
        rows = torch.where((slot >= 0).unsqueeze(-1), F.embedding(slot.clamp_min(0), self.rows),
                           F.embedding(ids, self.fixed))
        return self._table[0].transform(rows)

    def constrain_(self) -> None:
        if self.normalize == "step":
            with torch.no_grad():
                self.rows.div_(torch.linalg.vector_norm(self.rows, dim=-1, keepdim=True).clamp_min_(EPS))

    def write(self) -> None:
        with torch.no_grad():
            self._table[0].weight[self.free] = self.rows.detach()


@contextmanager
def new_rows_only(model: Model, old_entities: int, old_relations: int) -> Iterator[list[nn.Parameter]]:
    """Within: ``model``'s lookups read its new rows from parameters (yielded) and every other tensor frozen; on
    leaving, the fitted rows are written into the tables and the model is as before otherwise."""
    assert isinstance(model.entity, Embedding) and isinstance(model.relation, Embedding)
    entity, relation = model.entity, model.relation
    kept = relation_rows(old_relations, model.num_relations, model.inverse)
    free_relations = torch.ones(relation.num, dtype=torch.bool)
    free_relations[kept] = False
    swapped = [NewRows(entity, torch.arange(old_entities, model.num_entities)),
               NewRows(relation, torch.nonzero(free_relations).squeeze(1))]
    trainable = {p: p.requires_grad for p in model.parameters()}
    for p in trainable:
        p.requires_grad_(False)
    model.entity, model.relation = swapped
    try:
        yield [table.rows for table in swapped if len(table.free)]
    finally:
        model.entity, model.relation = entity, relation
        for table in swapped:
            table.write()
        for p, flag in trainable.items():
            p.requires_grad_(flag)
        model.invalidate_cache()


@dataclass
class Fit:
    """A fit's record: every step's loss on the new triples, its ``intrusion`` on the old ones (none without them),
    and how many steps make one pass over the new triples."""

    losses: list[float] = field(default_factory=list)
    intrusions: list[float] = field(default_factory=list)
    per_pass: int = 1

    def report(self) -> dict[str, Any]:
        """Mean loss (and intrusion) over the first and over the last pass."""
        def mean(values: list[float]) -> float | None:
            return round(float(np.mean(values)), 6) if values else None

        size = max(1, min(len(self.losses), self.per_pass))
        found = {"first_loss": mean(self.losses[:size]), "final_loss": mean(self.losses[-size:])}
        if self.intrusions:
            found.update(first_intrusion=mean(self.intrusions[:size]), final_intrusion=mean(self.intrusions[-size:]))
        return found


def fit(model: Model, hrt: torch.Tensor, old_entities: int, old_relations: int, objective: Objective, *,
        steps: int, lr: float, old_triples: torch.Tensor | None = None, seed: int = 0) -> Fit:
    """Train only the new rows of ``model`` (entity ids from ``old_entities``, relations from ``old_relations``)
    on ``hrt`` for ``steps`` Adam steps of ``objective``'s approach, loss and regulariser, in batches of its
    batch size (the triples reshuffled each pass).

    With ``old_triples`` (the old training triples) each step also takes ``intrusion`` on as many of them,
    weighted by their count over ``hrt``'s: for 1vsAll with cross-entropy, exactly the objective of retraining on
    old and new triples with the old rows held fixed. Without them new rows learn where they belong but not where
    they do not, and may rise over the old answers of unrelated queries."""
    approach, loss, regularizer = objective.parts()
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    with new_rows_only(model, old_entities, old_relations) as parameters:
        rows = approach.prepare(hrt, model)
        record = Fit(per_pass=math.ceil(len(rows) / objective.batch_size))
        if not (parameters and len(rows) and steps):
            return record
        optimizer = torch.optim.Adam(parameters, lr=lr)
        batches = _cycle(rows, objective.batch_size, generator)
        old = old_triples if old_triples is not None and len(old_triples) and old_entities < model.num_entities \
            else None
        for step in range(steps):
            optimizer.zero_grad(set_to_none=True)
            value = local_step(model, approach, next(batches).to(model.device), slice(None), loss, regularizer,
                               generator)
            if old is not None:
                picked = old[torch.randint(len(old), (objective.batch_size,), generator=generator)]
                taken = intrusion(model, picked.to(model.device), old_entities, generator)
                (taken * (len(old) / len(hrt))).backward()
                record.intrusions.append(float(taken.detach()))
            if not math.isfinite(value) or not all(map(math.isfinite, record.intrusions[-1:])):
                raise TrainingError(f"fold-in: the loss became {value} at step {step}; try a lower lr")
            optimizer.step()
            model.constrain_()
            record.losses.append(value)
    return record


def intrusion(model: Model, hrt: torch.Tensor, old_entities: int, generator: torch.Generator) -> torch.Tensor:
    """The share of the old triples ``hrt``'s answers that the new entities take: for each triple its tail query
    or its head query (a coin toss from ``generator``), the mean of ``logsumexp(scores of every entity) -
    logsumexp(scores of the old ones)``. That is what the new rows add to a 1vsAll cross-entropy of the triples,
    whose true answers are old entities."""
    heads = (torch.rand(len(hrt), generator=generator) < 0.5).to(hrt.device)  # (?, r, t) rather than (h, r, ?)
    anchors, relations = torch.where(heads, hrt[:, 2], hrt[:, 0]), hrt[:, 1]
    if model.inverse:
        scores = model.score_t(anchors, torch.where(heads, relations + model.num_relations, relations))
    else:
        scores = torch.cat([model.score_t(anchors[~heads], relations[~heads]),
                            model.score_h(relations[heads], anchors[heads])])
    return (torch.logsumexp(scores, 1) - torch.logsumexp(scores[:, :old_entities], 1)).mean()


def _cycle(rows: torch.Tensor, size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Batches of ``rows`` pass after pass, each pass in a fresh random order."""
    while True:
        order = torch.randperm(len(rows), generator=generator)
        for start in range(0, len(rows), size):
            yield rows[order[start : start + size]]


def train_all(model: Model, hrt: torch.Tensor, objective: Objective, *, epochs: int, seed: int = 0) -> list[float]:
    """Train every parameter of ``model`` on ``hrt`` for ``epochs`` with ``objective`` (its optimizer, learning
    rate and batch size; sparseadam, which needs sparse lookups, as adam); returns the epochs' mean losses."""
    approach, loss, regularizer = objective.parts()
    name = "adam" if objective.optimizer.lower() == "sparseadam" else objective.optimizer
    optimizer = build_optimizer(name, model.parameters(), lr=objective.lr, **objective.optimizer_args)
    trainer = Trainer(model, approach, loss, optimizer, regularizer=regularizer, batch_size=objective.batch_size,
                      seed=seed, progress=False)
    history = trainer.fit(hrt, epochs)
    model.eval()
    return history.losses
