"""Sem@k (Hubert et al., "Sem@K: Is my KGE model semantic-aware?"): how many of a model's top-k predictions respect
the relation's domain constraints, for any scoring model.

Each test triple gives two queries, ``(?, r, t)`` ("head") and ``(h, r, ?)`` ("tail"). Every entity is scored, with no
filtering: the true answer and other known answers stay among the candidates, since the metric asks whether the
predictions have the right type, not whether they are right. For a query, Sem@k is the fraction of its k best
entities allowed in the hidden slot (``DomainConstraints.allowed_heads[r]`` for a head query, ``allowed_tails[r]`` for
a tail query). It is averaged over the queries of each side, and the sides' averages are averaged.

Ties are broken by entity id (the lower id first, as ``kgem.models.scan.topk`` orders them), so a model that scores
many entities alike is measured on a fixed choice among them. Memory: queries are scanned in batches within
``memory_budget_bytes`` (``kgem.models.scan``), keeping only each query's k best entities.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from kgem.data.types import DomainConstraints
from kgem.evaluation.evaluator import eval_mode, model_device
from kgem.evaluation.ranks import EvaluationError
from kgem.models.scan import DEFAULT_MEMORY_BUDGET, ScoringModel, Side, plan, scan, topk

SEM_AT = (1, 3, 10)


def _sides(sides: str | Sequence[str]) -> tuple[Side, ...]:
    chosen = ("head", "tail") if sides == "both" else (sides,) if isinstance(sides, str) else tuple(sides)
    if not chosen or any(s not in ("head", "tail") for s in chosen):
        raise EvaluationError(f"sides must be 'both', 'head', 'tail' or a list of 'head'/'tail', got {sides!r}")
    return tuple(s for s in ("head", "tail") if s in chosen)


def _check(model: ScoringModel, triples: torch.Tensor, constraints: DomainConstraints, ks: Sequence[int]) -> None:
    if triples.ndim != 2 or triples.shape[1] != 3 or not len(triples):
        raise EvaluationError(f"expected a non-empty tensor of triples of shape (n, 3), got {tuple(triples.shape)}")
    if constraints.num_entities != model.num_entities:
        raise EvaluationError(f"the constraints cover {constraints.num_entities} entities, the model "
                              f"{model.num_entities}")
    entities, relations = triples[:, [0, 2]], triples[:, 1]
    if entities.min() < 0 or entities.max() >= model.num_entities:
        raise EvaluationError(f"entity ids must lie in [0, {model.num_entities}), got {int(entities.min())}.."
                              f"{int(entities.max())}")
    if relations.min() < 0 or relations.max() >= constraints.num_relations:
        raise EvaluationError(f"relation ids must lie in [0, {constraints.num_relations}), got "
                              f"{int(relations.min())}..{int(relations.max())}")
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= model.num_entities for k in ks):
        raise EvaluationError(f"ks must be whole numbers in [1, {model.num_entities}], got {list(ks)}")


def top_allowed(model: ScoringModel, side: Side, anchor: torch.Tensor, r: torch.Tensor,
                constraints: DomainConstraints, k: int, *, batch_size: int | None = None,
                memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET) -> torch.Tensor:
    """Whether each query's k best entities (best first) are allowed in its hidden ``side``: bool ``(n, k)`` on the
    CPU. ``side`` "tail" asks ``(anchor, r, ?)``, "head" asks ``(?, r, anchor)``; ids are checked by the caller."""
    device = model_device(model)
    mask = constraints.allowed(side)
    size, _ = plan(len(anchor), model.num_entities, memory_budget_bytes, batch_size)
    parts = []
    with eval_mode(model):
        for start in range(0, len(anchor), size):
            a, rb = anchor[start : start + size].to(device), r[start : start + size].to(device)
            blocks = scan(model, side, a, rb, memory_budget_bytes=memory_budget_bytes)
            values, ids = topk(blocks, len(a), k, device=device)
            if values.isnan().any():  # a NaN sorts above every score, so any NaN of a row is among its best
                raise EvaluationError(f"the model scored NaN for {side} queries {start}..{start + len(a) - 1}")
            parts.append(mask[rb.to(mask.device).unsqueeze(1), ids.to(mask.device)].cpu())
    return torch.cat(parts)


def semantic_at_k(model: ScoringModel, triples: torch.Tensor, constraints: DomainConstraints, *,
                  ks: Sequence[int] = SEM_AT, sides: str | Sequence[str] = "both", batch_size: int | None = None,
                  memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET) -> dict[str, float]:
    """Sem@k of ``model`` on ``triples (n, 3)`` for each k of ``ks``: ``{"sem@k": mean of the sides,
    "head.sem@k": ..., "tail.sem@k": ...}`` (the sides chosen by ``sides``).

    ``batch_size`` queries are scored together (default: as many as fit ``memory_budget_bytes``). Runs under
    ``model.eval()`` and ``torch.no_grad()``; the model's train/eval mode is restored afterwards."""
    chosen = _sides(sides)
    ks = list(ks)
    _check(model, triples, constraints, ks)
    triples = triples.long().cpu()
    h, r, t = triples.T
    per_side = {}
    for side in chosen:
        allowed = top_allowed(model, side, t if side == "head" else h, r, constraints, max(ks), batch_size=batch_size,
                              memory_budget_bytes=memory_budget_bytes).double()
        per_side[side] = {k: float(allowed[:, :k].mean(1).mean()) for k in ks}
    result = {}
    for k in ks:
        result[f"sem@{k}"] = sum(per_side[s][k] for s in chosen) / len(chosen)
        result.update({f"{s}.sem@{k}": per_side[s][k] for s in chosen})
    return result
