"""Training approaches differ only in how a batch is built and which scoring call and loss they use (G9).

- ``SLCWA``: triples + K corrupted entities per positive (negative sampling).
- ``KvsAll``: distinct (h, r) queries (and (r, t) without reciprocal relations) against the multi-hot of all
  their true answers (LCWA, Dettmers et al. 2018).
- ``OneVsAll``: each triple against all entities, softmax over the true one (Lacroix et al. 2018).
- ``Generative``: a generative circuit's own objective on each batch of triples (pseudo- or exact log-likelihood).

With a model built with ``inverse=True`` the training triples get their reciprocals and only tails are predicted.
"""

from __future__ import annotations

import torch

from kgem.circuits.model import AnyModel, CircuitModel
from kgem.circuits.objectives import Objective
from kgem.data.known import KnownTriples
from kgem.data.triples import with_inverse
from kgem.models.model import Model
from kgem.training.losses import Loss
from kgem.training.negatives import score_sampled
from kgem.training.samplers import Negatives, NegativeSampler

Step = tuple[torch.Tensor, list[torch.Tensor]]  # (fit loss, factors for the regularizer)


class Approach:
    """Base: ``prepare`` the training rows once, then ``step`` on each batch of them.

    ``step`` draws what the whole batch needs (``draw``: negatives) and computes on the rows ``part`` of it
    (``compute``): a process of a replicated run (``training.distributed``) trains its part of the global batch
    with exactly the draws a single process would make."""

    def prepare(self, hrt: torch.Tensor, model: AnyModel) -> torch.Tensor:
        return with_inverse(hrt, model.num_relations) if model.inverse else hrt

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

    def __init__(self, sampler: NegativeSampler) -> None:
        self.sampler = sampler

    def prepare(self, hrt: torch.Tensor, model: AnyModel) -> torch.Tensor:
        model = embedding_model(model, "slcwa")
        hrt = super().prepare(hrt, model)
        self.sampler.prepare(hrt, model.num_entities, model.relation.num, tails_only=model.inverse)
        return hrt

    def draw(self, batch: torch.Tensor, generator: torch.Generator) -> Negatives:
        return self.sampler.sample(batch.cpu(), generator).to(batch.device)  # drawn on the CPU: same draws anywhere

    def compute(self, model: AnyModel, batch: torch.Tensor, loss: Loss, drawn: object, part: slice) -> Step:
        model = embedding_model(model, "slcwa")
        assert isinstance(drawn, Negatives)
        neg = drawn.rows(part)
        pos, neg_scores, factors = score_sampled(model, batch, neg.ids, neg.corrupt_head)
        if neg.known is not None:  # true triples the filter could not replace do not count as negatives
            neg_scores = neg_scores.masked_fill(neg.known, float("-inf"))
        return loss.sampled(pos, neg_scores), factors


class KvsAll(Approach):
    """Each distinct query against the multi-hot of its known answers in the training graph."""

    def prepare(self, hrt: torch.Tensor, model: AnyModel) -> torch.Tensor:
        model = embedding_model(model, "kvsall")
        hrt = super().prepare(hrt, model)
        self.known = KnownTriples(hrt, model.num_entities, model.relation.num)
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
        return loss.multi_label(block, torch.cat(rows).to(block.device), torch.cat(cols).to(block.device)), factors


class OneVsAll(Approach):
    """Each triple scores all tails (and all heads without reciprocal relations); its true entity is the label."""

    def compute(self, model: AnyModel, batch: torch.Tensor, loss: Loss, drawn: object, part: slice) -> Step:
        model = embedding_model(model, "1vsall")
        h, r, t = batch.unbind(1)
        scores, targets = [model.score_t(h, r)], [t]
        if not model.inverse:
            scores.append(model.score_h(r, t))
            targets.append(h)
        block = scores[0] if len(scores) == 1 else torch.cat(scores)
        return (loss.multi_label(block, torch.arange(len(block), device=block.device), torch.cat(targets)),
                model.factors(batch))


class Generative(Approach):
    """A generative circuit (``CircuitModel``) trained on ``objective(circuit, batch)`` (``kgem.circuits.objectives``:
    the pseudo-log-likelihood or the exact log-likelihood, normalised per triple): no negatives, no loss function,
    no regularizer factors, and no reciprocal relations, as a circuit models the triples as given. The loss the
    trainer passes is not used."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective

    def prepare(self, hrt: torch.Tensor, model: AnyModel) -> torch.Tensor:
        circuit_model(model)
        return hrt

    def compute(self, model: AnyModel, batch: torch.Tensor, loss: Loss, drawn: object, part: slice) -> Step:
        return self.objective(circuit_model(model).circuit, batch), []


def circuit_model(model: AnyModel) -> CircuitModel:
    if not isinstance(model, CircuitModel):
        raise TypeError(f"the generative approach trains circuits (CircuitModel), got {type(model).__name__}")
    return model
