"""Exact ancestral sampling of triples from a generative circuit: ``h ~ p(h)``, then ``r ~ p(r | h)``, then
``t ~ p(t | h, r)``, each from the circuit's own exact marginal or conditional, so the triples follow ``p(h, r, t)``.

Each step is a categorical draw by inverse CDF: one uniform number per slot, located in the cumulative sum of that
slot's probabilities. The uniforms come from a CPU ``torch.Generator`` seeded with ``seed``, drawn in fixed chunks
of ``CHUNK`` triples whatever the batch size, so a seed gives the same triples for every ``batch_size`` (and every
device), up to a uniform landing within rounding error of a CDF step, an event of probability about 1e-16.

``batch_size`` bounds memory only: it is the number of queries whose ``(B, E)`` tail table and ``(B, R)`` relation
table exist at once (a squared circuit also builds ``(B, R, K)`` queries for ``p(r | h)``). By default it is as many
as fit ``TABLE_BUDGET`` entries. A squared circuit's Grams are computed once per call, not once per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from numbers import Integral
from typing import Any, NamedTuple, cast

import pandas as pd
import torch

from kgem.checks import positive_int
from kgem.circuits.base import Circuit
from kgem.data.vocab import Vocabulary

CHUNK = 1 << 16  # triples whose uniforms are drawn at once; the largest batch
TABLE_BUDGET = 1 << 22  # entries of the per-batch tables (32 MiB in float64) that the default batch size allows


class Steps(NamedTuple):
    """The three distributions of the ancestral order, all in log space."""

    head: Callable[[], torch.Tensor]  # () -> (E,) log p(h)
    relation: Callable[[torch.Tensor], torch.Tensor]  # h (B,) -> (B, R) log p(r | h)
    tail: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # h, r (B,) -> (B, E) log p(t | h, r)


def check_samplable(circuit: Any) -> Circuit:
    """``circuit``, or a one-line TypeError if it is no Circuit (every Circuit has the marginals sampling needs)."""
    if not isinstance(circuit, Circuit):
        raise TypeError(f"can only sample from a kgem Circuit, got {type(circuit).__name__}")
    return circuit


def steps(circuit: Circuit) -> Steps:
    """The circuit's ``p(h)``, ``p(r | h)`` and ``p(t | h, r)``; a circuit with Grams (squared, typed) computes them
    once for the whole draw."""
    model = cast(Any, circuit)
    if callable(getattr(model, "grams", None)):
        grams = model.grams()
        return Steps(partial(model.log_marginal_head, grams), partial(model.log_relation_given_head, grams=grams),
                     partial(model.log_tails, grams=grams))
    return Steps(model.log_marginal_head, model.log_relation_given_head, circuit.log_tails)


def cumulative(log_probs: torch.Tensor) -> torch.Tensor:
    """The CDF (unnormalised: its last entry is the total) along the last dimension, in float64."""
    cdf = torch.cumsum(log_probs.double().exp(), dim=-1)
    total = cdf[..., -1]
    if not (torch.isfinite(total).all() and (total > 0).all()):
        raise ValueError("the circuit gave probabilities that are not finite and positive (NaN or overflowing logits)")
    return cdf


def draw(cdf: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Categorical draws by inverse CDF: the first index whose CDF exceeds ``u`` times the total, for one CDF shared
    by every uniform (``(C,)``) or one CDF row per uniform (``(B, C)``). Scaling by the total, rather than trusting
    it to be 1, absorbs the rounding of the log-probabilities."""
    if cdf.dim() == 1:
        index = torch.searchsorted(cdf, u * cdf[-1], right=True)
    else:
        index = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True).squeeze(1)
    return index.clamp_(max=cdf.shape[-1] - 1)  # u * total can round up to the total itself


def draw_chunk(plan: Steps, head_cdf: torch.Tensor, u: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Triples for the uniforms ``u`` (``(M, 3)``: one per slot), ``batch_size`` queries at a time."""
    h = draw(head_cdf, u[:, 0])
    out = []
    for start in range(0, len(u), batch_size):
        hb, ub = h[start : start + batch_size], u[start : start + batch_size]
        r = draw(cumulative(plan.relation(hb)), ub[:, 1])
        t = draw(cumulative(plan.tail(hb, r)), ub[:, 2])
        out.append(torch.stack([hb, r, t], dim=1))
    return torch.cat(out)


def default_batch_size(circuit: Circuit) -> int:
    """As many queries as keep the tail table (``E`` per query) and the squared relation queries (``R * K``) within
    ``TABLE_BUDGET`` entries."""
    width = max(circuit.num_entities, circuit.num_relations * int(getattr(circuit, "dim", 1)))
    return max(1, min(CHUNK, TABLE_BUDGET // width))


def check_count(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
        raise ValueError(f"n (the number of samples) must be a non-negative integer, got {n!r}")
    return int(n)


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, Integral) or not 0 <= int(seed) < 1 << 64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    return int(seed)


def sample(circuit: Circuit, n: int, *, seed: int = 0, batch_size: int | None = None) -> torch.Tensor:
    """``n`` triples drawn exactly from ``p(h, r, t)``: a ``(n, 3)`` LongTensor of (h, r, t) ids, on the CPU.

    Runs under ``no_grad`` with the circuit in eval mode, and restores its mode. The same ``seed`` gives the same
    triples for any ``batch_size`` (see the module docstring); ``batch_size=None`` picks one within a memory budget.
    """
    circuit, count, seed = check_samplable(circuit), check_count(n), check_seed(seed)
    size = default_batch_size(circuit) if batch_size is None else min(CHUNK, positive_int("batch_size", batch_size))
    generator = torch.Generator().manual_seed(seed)
    was_training = circuit.training
    circuit.eval()
    try:
        with torch.no_grad():
            plan = steps(circuit)
            head_cdf = cumulative(plan.head())
            chunks = [draw_chunk(plan, head_cdf, torch.rand((min(CHUNK, count - start), 3), generator=generator,
                                                            dtype=torch.float64).to(head_cdf.device), size)
                      for start in range(0, count, CHUNK)]
    finally:
        circuit.train(was_training)
    return torch.cat(chunks).cpu() if chunks else torch.empty((0, 3), dtype=torch.long)


def sample_labels(circuit: Circuit, n: int, entities: Vocabulary, relations: Vocabulary, *, seed: int = 0,
                  batch_size: int | None = None) -> pd.DataFrame:
    """``sample``, as a DataFrame of ``head``, ``relation`` and ``tail`` labels from the two vocabularies."""
    check_samplable(circuit)
    for kind, vocab, size in (("entity", entities, circuit.num_entities), ("relation", relations,
                                                                           circuit.num_relations)):
        if not isinstance(vocab, Vocabulary):
            raise TypeError(f"{kind} vocabulary must be a kgem Vocabulary, got {type(vocab).__name__}")
        if len(vocab) != size:
            raise ValueError(f"{kind} vocabulary has {len(vocab)} labels but the circuit has {size} {kind} ids")
    hrt = sample(circuit, n, seed=seed, batch_size=batch_size).numpy()
    return pd.DataFrame({"head": entities.to_labels(hrt[:, 0]), "relation": relations.to_labels(hrt[:, 1]),
                         "tail": entities.to_labels(hrt[:, 2])})
