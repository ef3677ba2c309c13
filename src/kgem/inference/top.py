"""The top-k scoring triples of one relation or of the whole graph, found by a bounded-memory scan."""

from __future__ import annotations

import pandas as pd
import torch

from kgem.data.known import KnownTriples
from kgem.data.vocab import Vocabulary
from kgem.errors import DataError
from kgem.inference._common import SCORE_BUDGET, check_k, check_vocab, device_of, inference, merge_topk, to_ids
from kgem.models.model import Model


def top_triples(model: Model, entities: Vocabulary, relations: Vocabulary, *, k: int = 100,
                relation: str | None = None, known: KnownTriples | None = None, remove_known: bool = False,
                batch_size: int | None = None) -> pd.DataFrame:
    """The ``k`` highest-scoring triples ``(h, r, t)`` over all heads and tails, of ``relation`` or of every relation.

    Scans ``(head, relation)`` rows in batches of ``batch_size`` (default: as many as fit ``SCORE_BUDGET`` scores),
    scoring each against all tails with ``score_t`` and merging into a running top-k, so memory is bounded by
    ``batch_size * num_entities`` scores. ``remove_known`` masks the triples in ``known`` out of the scan.
    Columns: head, relation, tail, score (best first), and ``known`` when ``known`` is given.
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
    with inference(model):
        values, flat = _scan(model, rel_ids, known if remove_known else None, k,
                             batch_size or max(1, SCORE_BUDGET // max(model.num_entities, 1)))
    num, per_head = model.num_entities, len(rel_ids)
    row, t = flat // num, flat % num  # row = head * per_head + relation position
    hrt = torch.stack([row // per_head, rel_ids.cpu()[row % per_head], t], 1)
    frame = pd.DataFrame({"head": entities.to_labels(hrt[:, 0].numpy()),
                          "relation": relations.to_labels(hrt[:, 1].numpy()),
                          "tail": entities.to_labels(hrt[:, 2].numpy()), "score": values.numpy()})
    if known is not None:
        flags = known.contains(hrt).numpy()
        frame["known"] = flags
        if remove_known:
            frame = frame[~flags].reset_index(drop=True)
    return frame


def _scan(model: Model, rel_ids: torch.Tensor, mask_known: KnownTriples | None, k: int,
          batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Running top-k over rows ``head * len(rel_ids) + j`` x all tails: ``(scores, row * num_entities + tail)``."""
    device, num = rel_ids.device, model.num_entities
    rows = num * len(rel_ids)
    best: tuple[torch.Tensor, torch.Tensor] | None = None
    for start in range(0, rows, batch_size):
        row = torch.arange(start, min(start + batch_size, rows), device=device)
        h, r = row // len(rel_ids), rel_ids[row % len(rel_ids)]
        scores = model.score_t(h, r)  # (b, E)
        if mask_known is not None:
            scores = scores.masked_fill(mask_known.tail_mask(h.cpu(), r.cpu()).to(device), float("-inf"))
        scores = scores.reshape(-1)
        local = scores.topk(min(k, len(scores)))  # shrink the block before the merge
        best = merge_topk(best, local.values, start * num + local.indices, k)
    if best is None:
        return torch.zeros(0), torch.zeros(0, dtype=torch.int64)
    return best[0].cpu(), best[1].cpu()
