"""Training approaches differ only in how a batch is built and which scoring call and loss they use (G9).

- ``SLCWA``: triples + K corrupted entities per positive (negative sampling).
- ``KvsAll``: distinct (h, r) queries (and (r, t) without reciprocal relations) against the multi-hot of all
  their true answers (LCWA, Dettmers et al. 2018).
- ``OneVsAll``: each triple against all entities, softmax over the true one (Lacroix et al. 2018).
- ``Generative``: a generative circuit's own objective on each batch of triples (pseudo- or exact log-likelihood).

With a model built with ``inverse=True`` the training triples get their reciprocals and only tails are predicted.

Edge weights (a number per training triple) travel with the rows: ``prepare`` appends each row's index as a 4th
column, which every way of batching (shuffles, HOGWILD workers, replicas, sharded buckets in local ids) carries
along untouched, and ``split`` turns it back into the batch's weights. The loss weighs each edge's terms by them
(``Loss.sampled`` / ``multi_label``), or FocusE modulates its scores (``kgem.training.focuse``).
"""

from __future__ import annotations

import torch

from kgem.checks import non_negative
from kgem.circuits.model import AnyModel, CircuitModel
from kgem.circuits.objectives import Objective
from kgem.data.known import KnownTriples
from kgem.data.triples import triple_keys, with_inverse
from kgem.errors import ConfigError
from kgem.models.model import Model
from kgem.training.focuse import FocusE
from kgem.training.losses import Loss
from kgem.training.negatives import score_sampled
from kgem.training.samplers import Negatives, NegativeSampler

Step = tuple[torch.Tensor, list[torch.Tensor]]  # (fit loss, factors for the regularizer)


class Approach:
    """Base: ``prepare`` the training rows once, then ``step`` on each batch of them.

    ``step`` draws what the whole batch needs (``draw``: negatives) and computes on the rows ``part`` of it
    (``compute``): a process of a replicated run (``training.distributed``) trains its part of the global batch
    with exactly the draws a single process would make."""

    weights: torch.Tensor | None = None  # per training row (reciprocals included): what a row's 4th column indexes

    def prepare(self, hrt: torch.Tensor, model: AnyModel, weights: torch.Tensor | None = None) -> torch.Tensor:
        """The training rows of the triples ``hrt`` (and their ``weights``, one per triple, or None)."""
        if weights is not None and len(weights) != len(hrt):
            raise ConfigError(f"{len(weights)} edge weights for {len(hrt)} training triples")
        if model.inverse:
            hrt = with_inverse(hrt, model.num_relations)
            weights = None if weights is None else torch.cat([weights, weights])
        self.weights = weights
        if weights is None:
            return hrt
        return torch.cat([hrt, torch.arange(len(hrt)).unsqueeze(1)], 1)

    def split(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A batch's triples ``(B, 3)`` and their weights ``(B,)`` (None without weights)."""
        if batch.shape[1] == 3 or self.weights is None:
            return batch[:, :3], None
        return batch[:, :3], self.weights[batch[:, 3].cpu()].to(batch.device)

    def start_epoch(self, epoch: int) -> None:
        """Called before each (1-based) epoch's batches: nothing by default."""

    def step(self, model: AnyModel, batch: torch.Tensor, loss: Loss, generator: torch.Generator,
             part: slice = slice(None)) -> Step:
        drawn = self.draw(batch, generator)
        local = batch[part]
        if not len(local):  # nothing to compute here, but the draws kept the generator in step with the others
            return torch.zeros((), device=batch.device), []
        return self.compute(model, local, loss, drawn, part)

    def draw(self, batch: torch.Tensor, generator: torch.Generator) -> object:
        """The randomness of the whole batch (nothing by default)."""
        return None

    def compute(self, model: AnyModel, batch: torch.Tensor, loss: Loss, drawn: object, part: slice) -> Step:
        raise NotImplementedError


def embedding_model(model: AnyModel, approach: str) -> Model:
    """``model``, which must be an embedding model: a circuit trains on its objective (``Generative``) alone."""
    if not isinstance(model, Model):
        raise TypeError(f"approach {approach} trains embedding models; a generative circuit trains with Generative")
    return model


class SLCWA(Approach):
    """Negative sampling: each positive against ``sampler.num_negatives`` corruptions of its head or tail."""

    def __init__(self, sampler: NegativeSampler, focuse: FocusE | None = None) -> None:
        """``focuse``: the edge weights modulate the scores (FocusE) instead of weighing the loss."""
        self.sampler, self.focuse = sampler, focuse

    def prepare(self, hrt: torch.Tensor, model: AnyModel, weights: torch.Tensor | None = None) -> torch.Tensor:
        model = embedding_model(model, "slcwa")
        if self.focuse is not None:
            if weights is None:
                raise ConfigError("FocusE modulates scores by the edges' numeric values: the training triples have "
                                  "none (data.edge_weights names their column)")
            weights = self.focuse.values(hrt, weights, model.num_relations)
        elif weights is not None:
            weights = loss_weights(weights)
        rows = super().prepare(hrt, model, weights)
        self.sampler.prepare(rows[:, :3], model.num_entities, model.relation.num, tails_only=model.inverse)
        return rows

    def start_epoch(self, epoch: int) -> None:
        if self.focuse is not None:
            self.focuse.epoch = epoch

    def draw(self, batch: torch.Tensor, generator: torch.Generator) -> Negatives:
        # drawn on the CPU: the same draws anywhere
        return self.sampler.sample(batch[:, :3].cpu(), generator).to(batch.device)

    def compute(self, model: AnyModel, batch: torch.Tensor, loss: Loss, drawn: object, part: slice) -> Step:
        model = embedding_model(model, "slcwa")
        assert isinstance(drawn, Negatives)
        neg = drawn.rows(part)
        hrt, weight = self.split(batch)
        pos, neg_scores, factors = score_sampled(model, hrt, neg.ids, neg.corrupt_head)
        if neg.known is not None:  # true triples the filter could not replace do not count as negatives
            neg_scores = neg_scores.masked_fill(neg.known, float("-inf"))
        if self.focuse is not None:
            assert weight is not None
            pos, neg_scores = self.focuse(pos, neg_scores, weight)
            return loss.sampled(pos, neg_scores), factors
        if weight is None:  # a loss of one's own need not take weights it is never given
            return loss.sampled(pos, neg_scores), factors
        return loss.sampled(pos, neg_scores, weight), factors


class KvsAll(Approach):
    """Each distinct query against the multi-hot of its known answers in the training graph."""

    def prepare(self, hrt: torch.Tensor, model: AnyModel, weights: torch.Tensor | None = None) -> torch.Tensor:
        model = embedding_model(model, "kvsall")
        rows = super().prepare(hrt, model, None if weights is None else loss_weights(weights))
        hrt = rows[:, :3]
        self.known = KnownTriples(hrt, model.num_entities, model.relation.num)
        self.lookup = None if self.weights is None else EdgeWeights(hrt, self.weights, model.num_entities,
                                                                    model.relation.num)
        side = torch.zeros(len(hrt), 1, dtype=torch.long)
        queries = [torch.cat([side, hrt[:, :2]], 1)]  # (0, h, r): predict tails
        if not model.inverse:
            queries.append(torch.cat([side + 1, hrt[:, [2, 1]]], 1))  # (1, t, r): predict heads
        return torch.unique(torch.cat(queries), dim=0)

    def compute(self, model: AnyModel, batch: torch.Tensor, loss: Loss, drawn: object, part: slice) -> Step:
        model = embedding_model(model, "kvsall")
        tails = batch[batch[:, 0] == 0]
        heads = batch[batch[:, 0] == 1]
        scores, rows, cols = [], [], []
        if len(tails):
            scores.append(model.score_t(tails[:, 1], tails[:, 2]))
            row, col = self.known.tail_pairs(tails[:, 1].cpu(), tails[:, 2].cpu())  # the index lives on the CPU
            rows.append(row)
            cols.append(col)
        if len(heads):
            scores.append(model.score_h(heads[:, 2], heads[:, 1]))
            row, col = self.known.head_pairs(heads[:, 2].cpu(), heads[:, 1].cpu())
            rows.append(row + len(tails))
            cols.append(col)
        block = scores[0] if len(scores) == 1 else torch.cat(scores)  # no copy of the (B, E) block when one side
        factors = [model.entity(batch[:, 1]), model.relation(batch[:, 2])]
        row, col = torch.cat(rows), torch.cat(cols)
        pairs = (block, row.to(block.device), col.to(block.device))
        if self.lookup is None:
            return loss.multi_label(*pairs), factors
        weight = self.pair_weights(torch.cat([tails, heads]).cpu(), row, col, self.lookup)
        return loss.multi_label(*pairs, weight.to(block.device)), factors

    @staticmethod
    def pair_weights(queries: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                     lookup: EdgeWeights) -> torch.Tensor:
        """The weight of each true pair's triple: ``(h, r, answer)`` of a tail query ``(0, h, r)``, ``(answer, r,
        t)`` of a head query ``(1, t, r)``."""
        query = queries[rows]
        tail = query[:, 0] == 0
        return lookup(torch.stack([torch.where(tail, query[:, 1], cols), query[:, 2],
                                   torch.where(tail, cols, query[:, 1])], 1))


class OneVsAll(Approach):
    """Each triple scores all tails (and all heads without reciprocal relations); its true entity is the label.

    ``relation_weight > 0`` adds relation prediction (Chen et al. 2021): each triple also scores every relation for
    its ``(h, t)`` (every relation row, the reciprocal ones included), its true relation the label, the term weighed
    by ``relation_weight`` (the tail term's weight is 1)."""

    def __init__(self, relation_weight: float = 0.0) -> None:
        self.relation_weight = non_negative("training.relation_prediction", relation_weight)

    def compute(self, model: AnyModel, batch: torch.Tensor, loss: Loss, drawn: object, part: slice) -> Step:
        model = embedding_model(model, "1vsall")
        hrt, weight = self.split(batch)
        h, r, t = hrt.unbind(1)
        scores, targets = [model.score_t(h, r)], [t]
        if not model.inverse:
            scores.append(model.score_h(r, t))
            targets.append(h)
        fit = labelled(loss, torch.cat(scores) if len(scores) > 1 else scores[0], torch.cat(targets),
                       None if weight is None else weight.repeat(len(scores)))
        if self.relation_weight:
            fit = fit + self.relation_weight * labelled(loss, model.score_r(h, t, reciprocal=True), r, weight)
        return fit, model.factors(hrt)

    def prepare(self, hrt: torch.Tensor, model: AnyModel, weights: torch.Tensor | None = None) -> torch.Tensor:
        return super().prepare(hrt, model, None if weights is None else loss_weights(weights))


def labelled(loss: Loss, block: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """The loss of score rows ``block (B, C)`` whose true column is ``labels (B,)``, weighed by ``weight``."""
    pairs = (block, torch.arange(len(block), device=block.device), labels)
    return loss.multi_label(*pairs) if weight is None else loss.multi_label(*pairs, weight)


def loss_weights(weights: torch.Tensor) -> torch.Tensor:
    """Edge weights as the loss takes them: not negative (FocusE takes any values)."""
    if len(weights) and float(weights.min()) < 0:
        raise ConfigError(f"edge weights weigh the loss, so they must not be negative (the smallest is "
                          f"{float(weights.min())}); rescale them, or train with FocusE (training.edge_weights: "
                          f"focuse), which normalises them per relation")
    return weights


class EdgeWeights:
    """The weight of any training triple, looked up by its key (a triple given more than once: their mean)."""

    def __init__(self, hrt: torch.Tensor, weights: torch.Tensor, num_entities: int, num_relations: int) -> None:
        if num_entities * num_entities * max(num_relations, 1) >= 2**62:
            raise ConfigError("edge weights in KvsAll training need num_entities² × num_relations below 2**62; "
                              "train with slcwa or 1vsall")
        self.num_entities, self.num_relations = num_entities, num_relations
        self.keys, inverse = torch.unique(triple_keys(hrt, num_entities, num_relations), return_inverse=True)
        total = torch.zeros(len(self.keys), dtype=torch.float64).index_add_(0, inverse, weights.double())
        self.mean = (total / torch.bincount(inverse, minlength=len(self.keys))).to(torch.float32)

    def __call__(self, hrt: torch.Tensor) -> torch.Tensor:
        """The weights ``(n,)`` of training triples ``hrt (n, 3)``."""
        return self.mean[torch.searchsorted(self.keys, triple_keys(hrt, self.num_entities, self.num_relations))]


class Generative(Approach):
    """A generative circuit (``CircuitModel``) trained on ``objective(circuit, batch)`` (``kgem.circuits.objectives``:
    the pseudo-log-likelihood or the exact log-likelihood, normalised per triple): no negatives, no loss function,
    no regularizer factors, and no reciprocal relations, as a circuit models the triples as given. The loss the
    trainer passes is not used."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective

    def prepare(self, hrt: torch.Tensor, model: AnyModel, weights: torch.Tensor | None = None) -> torch.Tensor:
        circuit_model(model)
        if weights is not None:
            raise ConfigError("generative circuits model the triples' probability: they do not train on edge "
                              "weights (training.edge_weights: ignore)")
        return hrt

    def compute(self, model: AnyModel, batch: torch.Tensor, loss: Loss, drawn: object, part: slice) -> Step:
        return self.objective(circuit_model(model).circuit, batch), []


def circuit_model(model: AnyModel) -> CircuitModel:
    if not isinstance(model, CircuitModel):
        raise TypeError(f"the generative approach trains circuits (CircuitModel), got {type(model).__name__}")
    return model
