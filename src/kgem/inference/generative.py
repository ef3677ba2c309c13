"""What only a generative circuit can answer, with labels in and labels out: exact probabilities of triples, whole
conditional distributions, and samples.

- ``log_prob``: ``log p(h, r, t)`` and ``p(h, r, t)`` of label triples.
- ``conditional``: the distribution of one slot given the others, as a table sorted by probability. Two slots
  given: ``p(t | h, r)``, ``p(h | r, t)`` or ``p(r | h, t)``; the head alone: ``p(r | h)``; nothing: ``p(h)``.
  These are the exact conditionals and marginals of the ancestral order ``h -> r | h -> t | h, r``.
- ``sample``: ``n`` triples drawn exactly from ``p``, as labels.

An embedding model has no normalised distribution, so each of these refuses it in one line.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from kgem.circuits.model import AnyModel, CircuitModel
from kgem.circuits.sampling import sample_labels
from kgem.data.vocab import Vocabulary
from kgem.errors import DataError
from kgem.inference._common import Queries, check_k, check_vocab, device_of, inference, to_ids
from kgem.inference.predict import score_triples

SLOTS = ("head", "relation", "tail")


def circuit_of(model: AnyModel, what: str) -> CircuitModel:
    """``model`` if it is a generative circuit; otherwise a one-line DataError saying what needs one."""
    if not isinstance(model, CircuitModel):
        raise DataError(f"{what} needs a generative circuit (e.g. kgem train --model complex2); "
                        f"{type(model).__name__} scores are not normalised probabilities")
    return model


def log_prob(model: AnyModel, entities: Vocabulary, relations: Vocabulary, triples: Queries) -> pd.DataFrame:
    """``log p(h, r, t)`` of label triples (as ``score_triples`` takes them), in input order. Columns: head,
    relation, tail, log_prob, probability."""
    circuit_of(model, "log_prob")
    frame = score_triples(model, entities, relations, triples).rename(columns={"score": "log_prob"})
    return frame.drop(columns="probability").assign(probability=np.exp(frame["log_prob"].to_numpy(np.float64)))


def conditional(model: AnyModel, entities: Vocabulary, relations: Vocabulary, *, head: str | None = None,
                relation: str | None = None, tail: str | None = None, k: int | None = None) -> pd.DataFrame:
    """The exact distribution of the missing slot given the labels given (see the module docstring for the
    combinations), best first, ties by id; ``k`` keeps the ``k`` most probable. Columns: the slot's name (its
    labels), probability, log_prob."""
    circuit = circuit_of(model, "conditional").circuit
    check_vocab(model, entities, relations)
    if k is not None:
        check_k(k)
    given = {name for name, value in zip(SLOTS, (head, relation, tail), strict=True) if value is not None}
    device = device_of(model)

    def ids(vocab: Vocabulary, label: str | None) -> torch.Tensor:
        return to_ids(vocab, [str(label)], device)

    with inference(model):
        if given == {"head", "relation"}:
            slot, values = "tail", circuit.log_tails(ids(entities, head), ids(relations, relation))[0]
        elif given == {"relation", "tail"}:
            slot, values = "head", circuit.log_heads(ids(relations, relation), ids(entities, tail))[0]
        elif given == {"head", "tail"}:
            slot, values = "relation", circuit.log_relations(ids(entities, head), ids(entities, tail))[0]
        elif given == {"head"}:
            slot, values = "relation", circuit.log_relation_given_head(ids(entities, head))[0]
        elif not given:
            slot, values = "head", circuit.log_marginal_head()
        else:
            raise DataError(f"conditional takes head and relation, relation and tail, head and tail, the head "
                            f"alone, or nothing; got {' and '.join(sorted(given))}")
    values = values.detach().double().cpu()
    order = torch.sort(-values, stable=True).indices[:k]
    vocab = relations if slot == "relation" else entities
    chosen = values[order]
    return pd.DataFrame({slot: vocab.to_labels(order.numpy()), "probability": chosen.exp().numpy(),
                         "log_prob": chosen.numpy()})


def sample(model: AnyModel, entities: Vocabulary, relations: Vocabulary, n: int, *, seed: int = 0) -> pd.DataFrame:
    """``n`` triples drawn exactly from the circuit's ``p(h, r, t)``; the same ``seed`` gives the same triples.
    Columns: head, relation, tail."""
    circuit = circuit_of(model, "sample").circuit
    check_vocab(model, entities, relations)
    with inference(model):
        return sample_labels(circuit, n, entities, relations, seed=seed)
