"""The top-k scoring triples of one relation or of the whole graph, found by the bounded-memory entity scan."""

from __future__ import annotations

import pandas as pd
import torch

from kgem.circuits.model import AnyModel, CircuitModel
from kgem.data.known import KnownSplits, KnownTriples
from kgem.data.vocab import Vocabulary
from kgem.errors import DataError
from kgem.inference._common import check_k, check_vocab, device_of, inference, to_ids
from kgem.inference.predict import with_probability
from kgem.models.scan import RunningTopK, block_topk, plan, scan, within


def top_triples(model: AnyModel, entities: Vocabulary, relations: Vocabulary, *, k: int = 100,
                relation: str | None = None, known: KnownTriples | KnownSplits | None = None,
                remove_known: bool = False, batch_size: int | None = None,
                memory_budget_bytes: int | None = None) -> pd.DataFrame:
    """The ``k`` highest-scoring triples ``(h, r, t)`` over all heads and tails, of ``relation`` or of every relation.

    Scans ``(head, relation)`` rows in batches of ``batch_size`` (default: as many as fit ``memory_budget_bytes``
    against every tail, ``kgem.models.scan.plan``), scoring each batch against the tails with the entity scan and
    merging into a running top-k, so one score block stays within the budget. Among tied scores the triple with the
    lower head id, then relation, then tail id ranks first. ``remove_known`` masks the triples in ``known`` out of
    the scan. Columns: head, relation, tail, score (best first), and ``known`` when ``known`` is given.

    A generative circuit's triples are ranked by their joint probability: its score is ``log p(h, r, t) = log p(h)
    + log p(r | h) + log p(t | h, r)``, the tail conditional of the scan plus each row's exact prior.
    """
    check_k(k)
    check_vocab(model, entities, relations)
    if remove_known and known is None:
        raise DataError("remove_known=True needs the known triples (known=...)")
    if batch_size is not None and batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    device = device_of(model)
    rel_ids = (to_ids(relations, [relation], device) if relation is not None
               else torch.arange(model.num_relations, device=device))
    if known is not None:
        known = known.for_relations(rel_ids)
    with inference(model):
        values, flat = _scan(model, rel_ids, known if remove_known else None, k, batch_size, memory_budget_bytes)
    num, per_head = model.num_entities, len(rel_ids)
    row, t = flat // num, flat % num  # row = head * per_head + relation position
    hrt = torch.stack([row // per_head, rel_ids.cpu()[row % per_head], t], 1)
    frame = pd.DataFrame({"head": entities.to_labels(hrt[:, 0].numpy()),
                          "relation": relations.to_labels(hrt[:, 1].numpy()),
                          "tail": entities.to_labels(hrt[:, 2].numpy()), "score": values.numpy()})
    frame = with_probability(frame, model)
    if known is not None:
        flags = known.contains(hrt).numpy()
        frame["known"] = flags
        if remove_known:
            frame = frame[~flags].reset_index(drop=True)
    return frame


def _scan(model: AnyModel, rel_ids: torch.Tensor, mask_known: KnownTriples | None, k: int, batch_size: int | None,
          memory_budget_bytes: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Running top-k over rows ``head * len(rel_ids) + j`` x all tails: ``(scores, row * num_entities + tail)``.
    Each block is first cut to each row's top-k, then the rows' survivors merge into the one running top-k."""
    device, num = rel_ids.device, model.num_entities
    rows = num * len(rel_ids)
    batch, _ = plan(rows, num, memory_budget_bytes, batch_size)
    best = RunningTopK(1, k, device)
    head_prior = model.circuit.log_marginal_head() if isinstance(model, CircuitModel) else None
    for start in range(0, rows, batch):
        row = torch.arange(start, min(start + batch, rows), device=device)
        h, r = row // len(rel_ids), rel_ids[row % len(rel_ids)]
        prior = None
        if isinstance(model, CircuitModel) and head_prior is not None:  # log p(h, r) of each row
            prior = head_prior[h] + model.circuit.log_relation_given_head(h).gather(1, r[:, None]).squeeze(1)
        known = None
        if mask_known is not None:
            local, tails = mask_known.tail_pairs(h.cpu(), r.cpu())
            known = local.to(device), tails.to(device)
        for block in scan(model, "tail", h, r, memory_budget_bytes=memory_budget_bytes):
            scores = block.scores  # (b, C)
            if prior is not None:
                scores = scores + prior[:, None]
            if known is not None:
                scores[within(known, block.start, block.stop)] = float("-inf")
            values, cols = block_topk(scores, k)  # each row's best, by score, then column
            flat = (row[:, None] * num + block.start + cols).reshape(1, -1)
            values, pick = block_topk(values.reshape(1, -1), k)  # row-major: among ties, the lower position
            best.add(values, positions=flat.gather(1, pick))
            del block, scores  # one block alive at a time
    values, flat = best.result()
    return values[0].cpu(), flat[0].cpu()
