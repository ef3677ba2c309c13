"""DGL-KE's ``dglke_predict`` in kgem: the best triples over lists of heads, relations and tails, scored in bounded
memory. ``kgem predict-lists`` is its command line; ``kgem.inference.emb_sim`` does the same for ``dglke_emb_sim``.

``format`` names the lists given, in order: ``h_r_t`` (three lists), ``h_r_*``, ``h_*_t``, ``*_r_t`` (two),
``h_*_*``, ``*_r_*``, ``*_*_t`` (one). ``*`` is every entity, or every (forward) relation, in id order.
``exec_mode`` says which triples compete for the top ``k``:

- ``triplet_wise``: the i-th items of the three lists form one triple; the k best of those triples. The lists must
  have one length; a ``*`` counts as the list of all its ids, as in DGL-KE, so in practice this is ``h_r_t``.
- ``all``: every combination ``(h, r, t)`` of the lists; the k best of them all.
- ``batch_head``, ``batch_rel``, ``batch_tail``: the k best combinations for each item of the head, relation or
  tail list, in list order (an item listed twice is answered twice).

Where DGL-KE leaves it open or differs:

- Ties: among equal scores the combination earlier in the lists' row-major order (head position, then relation,
  then tail; DGL-KE numbers them so) ranks first; DGL-KE's unstable argsort leaves that order unspecified.
- A group with fewer than k combinations gets them all (DGL-KE's batch modes truncate so too).
- ``score_func="logsigmoid"`` is ``log(sigmoid(score))`` of the model's own ``score_hrt``, applied before ranking.
  DGL-KE first adds its margin gamma to distance scores (TransE, RotatE); kgem's scores carry no such offset, so
  the values differ for those models but never the order.
- List items are labels by default (DGL-KE's ``--raw_data``) and ids with ``ids=True`` (DGL-KE's default); the
  result is in the space of the input, as DGL-KE's. ``remove_known`` (not in DGL-KE) leaves out known triples.
- A generative circuit's score is ``log p(h, r, t)``, its ``score_hrt``.

Memory: the ``(head, relation)`` rows are scored in batches against the tail candidates one block at a time
(``kgem.models.scan``, within ``memory_budget_bytes``); each block is cut to its best k per group and merged into a
running top-k per group (``GroupTopK``), so ``*`` over every entity never holds more than one block of scores and
k candidates per group.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from kgem.circuits.model import AnyModel, CircuitModel
from kgem.data.known import KnownSplits, KnownTriples
from kgem.data.vocab import Vocabulary
from kgem.errors import DataError
from kgem.inference._common import check_k, check_vocab, device_of, inference
from kgem.inference.predictor import LinkPredictor
from kgem.models.scan import block_topk, budget_elements, plan, scan

FORMATS = ("h_r_t", "h_r_*", "h_*_t", "*_r_t", "h_*_*", "*_r_*", "*_*_t")
EXEC_MODES = ("triplet_wise", "all", "batch_head", "batch_rel", "batch_tail")
SCORE_FUNCS = ("none", "logsigmoid")
PAD = torch.iinfo(torch.int64).max  # the position of an empty place of a GroupTopK: after every real candidate

ListSource = str | os.PathLike[str] | Sequence[str] | Sequence[int] | np.ndarray


@dataclass(frozen=True)
class Slot:
    """The items of one slot: the ``ids`` of a list given, or None for every row (``*``: position = id)."""

    ids: torch.Tensor | None
    size: int

    def at(self, positions: torch.Tensor) -> torch.Tensor:
        """The ids at ``positions`` of the list, on the positions' device."""
        return positions if self.ids is None else self.ids.to(positions.device)[positions]


class GroupTopK:
    """The k best ``(value, position)`` of each of ``groups`` groups, over candidates added a batch at a time.

    Order as ``kgem.models.scan.RunningTopK``: highest value first (NaN above all), the lower position first among
    equal values, so the result does not depend on how the candidates were batched. Empty places hold ``-inf`` at
    position ``PAD``, after any real candidate, and are left out of ``result``."""

    def __init__(self, groups: int, k: int, device: torch.device) -> None:
        self.k, self.device = k, device
        self.values = torch.full((groups, k), float("-inf"), device=device)
        self.positions = torch.full((groups, k), PAD, dtype=torch.int64, device=device)

    def add(self, group: torch.Tensor, values: torch.Tensor, positions: torch.Tensor) -> None:
        """Merge candidates ``(n,)``: their group, value and position (distinct within a group, and from earlier
        candidates')."""
        if not len(group):
            return
        if values.dtype != self.values.dtype:  # e.g. a float64 circuit: keep its precision
            self.values = self.values.to(torch.promote_types(values.dtype, self.values.dtype))
        involved, local = torch.unique(group, return_inverse=True)
        g = torch.cat([torch.arange(len(involved), device=group.device).repeat_interleave(self.k), local])
        v = torch.cat([self.values[involved].reshape(-1), values.to(self.values.dtype)])
        p = torch.cat([self.positions[involved].reshape(-1), positions])
        order = p.argsort(stable=True)  # by position, then stably by value (descending), then stably by group
        order = order[v[order].sort(descending=True, stable=True).indices]
        order = order[g[order].sort(stable=True).indices]
        counts = torch.bincount(g, minlength=len(involved))  # at least k each: a group's k places come along
        first = (counts.cumsum(0) - counts)[:, None] + torch.arange(self.k, device=group.device)[None, :]
        keep = order[first]
        self.values[involved], self.positions[involved] = v[keep], p[keep]

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(group, value, position)`` on the CPU of every candidate kept, by group, best first."""
        filled = self.positions != PAD
        group = torch.arange(len(self.values), device=self.device)[:, None].expand_as(filled)
        return group[filled].cpu(), self.values[filled].cpu(), self.positions[filled].cpu()


def read_list(path: str | os.PathLike[str]) -> tuple[list[str], list[int]]:
    """The items of a list file (one per line, UTF-8, blank lines ignored, a byte order mark allowed) and the line
    number of each."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except IsADirectoryError as e:
        raise DataError(f"{path}: is a folder, not a list file") from e
    except FileNotFoundError as e:
        raise DataError(f"{path}: no such file") from e
    items, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            items.append(line)
            lines.append(number)
    return items, lines


def resolve(vocab: Vocabulary, source: ListSource, *, ids: bool, kind: str, name: str) -> Slot:
    """The ids of a list of labels (or, with ``ids``, of ids): a file's path, or a sequence. A label the vocabulary
    lacks, or an id out of range, is a DataError naming ``file:line`` (or ``name[index]``) and the item."""
    lines: list[int] | None = None
    items: list[Any]
    if isinstance(source, str | os.PathLike):
        items, lines = read_list(source)
    else:
        items = list(source)

    def where(i: int) -> str:
        return f"{source}:{lines[i]}" if lines is not None else f"{name}[{i}]"

    if not items:
        raise DataError(f"{source if lines is not None else name}: no {kind} in the list; expected one per line")
    found = _parse_ids(items, where, kind) if ids else vocab.lookup(np.asarray(items, dtype=object))
    bad = np.flatnonzero((found < 0) | (found >= len(vocab)))
    if len(bad):
        i = int(bad[0])
        if ids:
            raise DataError(f"{where(i)}: {kind} id {found[i]} out of range (the model has {len(vocab)} {kind} "
                            f"ids, 0..{len(vocab) - 1})")
        label = str(items[i])
        raise DataError(f"{where(i)}: unknown {kind} {label!r}{vocab.suggest(label) or _id_hint(label, len(vocab))}")
    return Slot(torch.as_tensor(found, dtype=torch.int64), len(found))


def _parse_ids(items: list, where: Callable[[int], str], kind: str) -> np.ndarray:
    """Integer ids of ``items`` (ints, or strings of digits): anything else is a DataError naming it."""
    found = np.empty(len(items), dtype=np.int64)
    for i, item in enumerate(items):
        if isinstance(item, int | np.integer) and not isinstance(item, bool):
            found[i] = int(item)
            continue
        try:
            found[i] = int(item.strip() if isinstance(item, str) else None)  # type: ignore[arg-type]
        except (ValueError, TypeError):
            raise DataError(f"{where(i)}: expected a {kind} id (an integer), got {item!r}") from None
    return found


def _id_hint(label: str, size: int) -> str:
    """A hint for a label that reads as an id: DGL-KE's lists hold ids unless --raw_data."""
    looks_like_id = label.strip().isascii() and label.strip().isdigit() and int(label) < size
    return " (it looks like an id: read ids with --ids, or ids=True)" if looks_like_id else ""


def slots(model: LinkPredictor, format: str, lists: Sequence[ListSource], *,  # noqa: A002 - DGL-KE's name
          ids: bool) -> tuple[Slot, Slot, Slot]:
    """The head, relation and tail slots of ``format`` from ``lists``, one per slot it gives."""
    if format not in FORMATS:
        raise DataError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    parts = format.split("_")
    given = [part != "*" for part in parts]
    if len(lists) != sum(given):
        names = [n for n, g in zip(("heads", "relations", "tails"), given, strict=True) if g]
        raise DataError(f"format {format} takes {len(names)} list(s) ({', '.join(names)}), got {len(lists)}")
    sources = iter(lists)
    out = []
    for part, name in zip(parts, ("heads", "relations", "tails"), strict=True):
        vocab, kind = (model.relations, "relation") if name == "relations" else (model.entities, "entity")
        out.append(resolve(vocab, next(sources), ids=ids, kind=kind, name=name) if part != "*"
                   else Slot(None, len(vocab)))
    return out[0], out[1], out[2]


def predict_lists(model: LinkPredictor, format: str, *lists: ListSource,  # noqa: A002 - DGL-KE's name
                  exec_mode: str = "all",
                  k: int = 10, score_func: str = "none", ids: bool = False, remove_known: bool = False,
                  memory_budget_bytes: int | None = None) -> pd.DataFrame:
    """The top ``k`` triples over the lists of ``format`` (one list per slot it gives: a file's path, or a sequence
    of labels, or of ids with ``ids``), as ``exec_mode`` groups them; see the module docstring for the formats,
    modes and where this reads DGL-KE.

    ``model``: a loaded model or pipeline result (it holds the vocabularies; with ``remove_known``, the known
    triples too: ``load_model(dir).with_known(dataset)``). Columns: head, relation, tail, score; by group (the
    list order of the batch modes' items), best first. DataFrame columns use kgem's names; ``kgem predict-lists``
    writes DGL-KE's (head, rel, tail, score)."""
    check_k(k)
    if exec_mode not in EXEC_MODES:
        raise DataError(f"unknown exec_mode {exec_mode!r}; choose one of {', '.join(EXEC_MODES)}")
    if score_func not in SCORE_FUNCS:
        raise DataError(f"unknown score_func {score_func!r}; choose none or logsigmoid")
    net = model.model
    check_vocab(net, model.entities, model.relations)
    h, r, t = slots(model, format, lists, ids=ids)
    known = _known(model, r, remove_known)
    with inference(net):
        if exec_mode == "triplet_wise":
            group, score, position = _triplet_wise(net, h, r, t, k, score_func, known, memory_budget_bytes)
            hp = rp = tp = position
        else:
            group, score, position = _combinations(net, h, r, t, exec_mode, k, score_func, known,
                                                   memory_budget_bytes)
            hp, rp, tp = _decode(exec_mode, group, position, r.size, t.size)
    hrt = torch.stack([h.at(hp), r.at(rp), t.at(tp)], 1)
    if known is not None:  # masked ones rank last: only there when a group has fewer than k others
        keep = ~known.contains(hrt)
        hrt, score = hrt[keep], score[keep]
    return pd.DataFrame({"head": _out(model.entities, hrt[:, 0], ids),
                         "relation": _out(model.relations, hrt[:, 1], ids),
                         "tail": _out(model.entities, hrt[:, 2], ids), "score": score.numpy()})


def _out(vocab: Vocabulary, found: torch.Tensor, ids: bool) -> np.ndarray:
    """Result items in the space of the input: ids, or their labels."""
    return found.numpy() if ids else vocab.to_labels(found.numpy())


def _known(model: LinkPredictor, r: Slot, remove_known: bool) -> KnownTriples | None:
    if not remove_known:
        return None
    known: KnownTriples | KnownSplits | None = model.known_triples()
    if known is None:
        raise DataError("remove_known needs the known triples: load the model with its dataset "
                        "(e.g. kgem.load(dir).with_known(dataset))")
    return known.for_relations(r.ids if r.ids is not None else torch.arange(r.size))


def _decode(exec_mode: str, group: torch.Tensor, position: torch.Tensor, nr: int,
            nt: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (head, relation, tail) list positions of a result's positions, as ``_add_block`` numbered them."""
    if exec_mode == "all":
        return position // (nr * nt), position // nt % nr, position % nt
    if exec_mode == "batch_head":
        return group, position // nt, position % nt
    if exec_mode == "batch_rel":
        return position // nt, group, position % nt
    return position // nr, position % nr, group  # batch_tail


def _triplet_wise(model: AnyModel, h: Slot, r: Slot, t: Slot, k: int, score_func: str, known: KnownTriples | None,
                  memory_budget_bytes: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k best of the triples ``(h[i], r[i], t[i])``: position = i."""
    if not h.size == r.size == t.size:
        raise DataError(f"triplet_wise pairs the i-th items of the lists, which must have one length: {h.size} "
                        f"heads, {r.size} relations, {t.size} tails ('*' counts as all of them)")
    device = device_of(model)
    best = GroupTopK(1, k, device)
    batch = budget_elements(memory_budget_bytes)
    for start in range(0, h.size, batch):
        pos = torch.arange(start, min(start + batch, h.size), device=device)
        hrt = torch.stack([h.at(pos), r.at(pos), t.at(pos)], 1)
        scores = _transform(model.score_hrt(hrt), score_func)
        if known is not None:
            scores = scores.masked_fill(known.contains(hrt.cpu()).to(device), float("-inf"))
        values, cols = block_topk(scores[None, :], k)
        best.add(torch.zeros_like(cols[0]), values[0], start + cols[0])
    return best.result()


def _combinations(model: AnyModel, h: Slot, r: Slot, t: Slot, exec_mode: str, k: int, score_func: str,
                  known: KnownTriples | None,
                  memory_budget_bytes: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k best combinations of each group: rows ``h_pos * len(r) + r_pos`` scanned in batches against the tail
    candidates, a block at a time."""
    device = device_of(model)
    groups = {"all": 1, "batch_head": h.size, "batch_rel": r.size, "batch_tail": t.size}[exec_mode]
    best = GroupTopK(groups, k, device)
    total = h.size * r.size
    batch, _ = plan(total, t.size, memory_budget_bytes)
    candidates = None if t.ids is None else t.ids.to(device)
    head_prior = model.circuit.log_marginal_head() if isinstance(model, CircuitModel) else None
    for start in range(0, total, batch):
        row = torch.arange(start, min(start + batch, total), device=device)
        hp, rp = row // r.size, row % r.size
        hb, rb = h.at(hp), r.at(rp)
        prior = None
        if isinstance(model, CircuitModel) and head_prior is not None:  # log p(h, r): the scan scores log p(t | h, r)
            prior = head_prior[hb] + model.circuit.log_relation_given_head(hb).gather(1, rb[:, None]).squeeze(1)
        pairs = known.tail_pairs(hb.cpu(), rb.cpu()) if known is not None else None
        for block in scan(model, "tail", hb, rb, candidates=candidates, memory_budget_bytes=memory_budget_bytes):
            scores = block.scores if prior is None else block.scores + prior[:, None]
            scores = _transform(scores, score_func)
            if pairs is not None:
                rows, cols = _cells(pairs, block.ids)
                scores[rows.to(device), cols] = float("-inf")
            _add_block(best, exec_mode, scores, row, hp, rp, block.start, t.size, k)
            del block, scores  # one block alive at a time
    return best.result()


def _add_block(best: GroupTopK, exec_mode: str, scores: torch.Tensor, row: torch.Tensor, hp: torch.Tensor,
               rp: torch.Tensor, start: int, nt: int, k: int) -> None:
    """Cut a block ``(rows, tails [start, start + C))`` to the k best of each group it touches and merge them:
    a tail's group is a column (cut per column), any other a row's (cut per row)."""
    if exec_mode == "batch_tail":
        values, cols = block_topk(scores.T, k)  # (C, k') rows of the batch, the position h_pos * nr + r_pos
        group = torch.arange(start, start + len(values), device=values.device)[:, None].expand_as(cols)
        best.add(group.reshape(-1), values.reshape(-1), row[cols].reshape(-1))
        return
    values, cols = block_topk(scores, k)  # (B, k'): tail positions start + cols
    group, base = {"all": (torch.zeros_like(row), row), "batch_head": (hp, rp), "batch_rel": (rp, hp)}[exec_mode]
    best.add(group[:, None].expand_as(cols).reshape(-1), values.reshape(-1),
             (base[:, None] * nt + start + cols).reshape(-1))


def _transform(scores: torch.Tensor, score_func: str) -> torch.Tensor:
    return F.logsigmoid(scores) if score_func == "logsigmoid" else scores


def _cells(pairs: tuple[torch.Tensor, torch.Tensor], ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(row, column)`` cells of a block whose candidate ``ids (C,)`` (any order, repeats allowed) hold the
    ``(row, entity)`` pairs."""
    rows, entities = pairs
    order = ids.argsort()
    ordered = ids[order].cpu()
    low = torch.searchsorted(ordered, entities)
    count = torch.searchsorted(ordered, entities, right=True) - low
    offset = torch.arange(int(count.sum())) - (count.cumsum(0) - count).repeat_interleave(count)
    return rows.repeat_interleave(count), order[(low.repeat_interleave(count) + offset).to(order.device)]
