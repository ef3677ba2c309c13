"""Knowledge discovery with a trained model, as AmpliGraph's ``ampligraph.discovery``: the best completions of one
partial triple (``query_topn``) and likely missing facts of whole relations (``discover_facts``). Clusters and
near-duplicates of embeddings are in ``kgem.inference.clusters``.

Both answer through the existing machinery: ``query_topn`` is the prediction path (``kgem.inference.predict``, the
entity scan), ``discover_facts`` ranks its candidates with filtered link-prediction evaluation
(``kgem.evaluation.evaluator.evaluate``), so their scores and ranks are those of ``predict_*`` and ``evaluate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import pandas as pd
import torch

from kgem.data.dataset import Dataset
from kgem.data.known import LAZY_ROWS, KnownSplits, KnownTriples
from kgem.data.triples import Triples
from kgem.data.vocab import Vocabulary
from kgem.errors import DataError
from kgem.evaluation.evaluator import evaluate
from kgem.inference._common import check_k, device_of, inference, to_ids
from kgem.inference.predict import predict_heads, predict_relations, predict_tails, score_triples, with_probability
from kgem.inference.predictor import LinkPredictor
from kgem.models.scan import ScoringModel, budget_bytes, scan, topk

Strategy = Literal["random_uniform", "entity_frequency", "graph_degree", "cluster_coefficient", "exhaustive"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
SIDES = ("both", "head", "tail")
ROUNDS = 8  # draws of a sampling strategy before it settles for fewer candidates than asked
WEDGE_BLOCK = 1 << 22  # (edge, neighbour) pairs checked at a time when counting triangles
Known = KnownTriples | KnownSplits


def query_topn(model: LinkPredictor, head: str | None = None, relation: str | None = None, tail: str | None = None,
               n: int = 10, *, entities: Sequence[str] | None = None, relations: Sequence[str] | None = None,
               remove_known: bool = False, dataset: Dataset | Triples | None = None,
               memory_budget_bytes: int | None = None) -> pd.DataFrame:
    """The ``n`` best completions of a triple with exactly one of ``head``, ``relation``, ``tail`` left open
    (AmpliGraph's ``query_topn``), by the prediction path: the scores and order of ``predict_tails``,
    ``predict_heads`` or ``predict_relations`` (ties: the lower id first).

    ``entities`` (an open head or tail) or ``relations`` (an open relation) restrict the candidates to those labels.
    ``dataset`` (a ``Dataset``: all its splits, or ``Triples``) gives the facts to flag (a ``known`` column) and,
    with ``remove_known``, to leave out; without it, those the model was given (``model.known_triples()``).
    Columns: head, relation, tail, score, rank (1 = best), ``probability`` for a calibrated model or a generative
    circuit, ``known`` when there are known facts."""
    check_k(n)
    given = {"head": head, "relation": relation, "tail": tail}
    open_slots = [slot for slot, label in given.items() if label is None]
    if len(open_slots) != 1:
        raise DataError(f"a query needs exactly one open slot of head, relation, tail; {len(open_slots)} are open")
    side = open_slots[0]
    if (entities is not None and side == "relation") or (relations is not None and side != "relation"):
        raise DataError(f"the open slot is the {side}: restrict it with "
                        f"{'relations' if side == 'relation' else 'entities'}=..., not "
                        f"{'entities' if side == 'relation' else 'relations'}=...")
    known = known_index(model, dataset) if dataset is not None else model.known_triples()
    if remove_known and known is None:
        raise DataError("remove_known needs the known facts: give dataset=...")
    if side == "relation":
        found = _relations(model, given, n, relations, known, remove_known, memory_budget_bytes)
    elif entities is not None:
        found = _restricted(model, side, given, n, entities, known, remove_known, memory_budget_bytes)
    else:
        predict = predict_tails if side == "tail" else predict_heads
        found = predict(model.model, model.entities, model.relations, [_query(given, side)], k=n, known=known,
                        remove_known=remove_known, memory_budget_bytes=memory_budget_bytes)
    frame = found.rename(columns={f"query_{slot}": slot for slot in given})
    ordered = ["head", "relation", "tail", "score", "rank", "probability", "known"]
    return model._calibrated(frame[[c for c in ordered if c in frame.columns]])


def _query(given: dict[str, str | None], side: str) -> tuple[str, ...]:
    """The two given labels of a query in the order ``predict_*`` takes them."""
    return tuple(str(given[slot]) for slot in ("head", "relation", "tail") if slot != side)


def _relations(model: LinkPredictor, given: dict[str, str | None], n: int, allowed: Sequence[str] | None,
               known: Known | None, remove_known: bool, memory_budget_bytes: int | None) -> pd.DataFrame:
    """Top relations of ``(head, tail)``: ``predict_relations``, over every relation when restricted (few)."""
    k = model.model.num_relations if allowed is not None else n
    found = predict_relations(model.model, model.entities, model.relations, [_query(given, "relation")], k=k,
                              known=known, remove_known=remove_known, memory_budget_bytes=memory_budget_bytes)
    if allowed is None:
        return found
    model.relations.ids(allowed)  # an unknown label is an error, as everywhere
    found = found[found["relation"].isin(list(allowed))].head(n)
    return found.assign(rank=np.arange(1, len(found) + 1)).reset_index(drop=True)


def _restricted(model: LinkPredictor, side: str, given: dict[str, str | None], n: int, allowed: Sequence[str],
                known: Known | None, remove_known: bool, memory_budget_bytes: int | None) -> pd.DataFrame:
    """Top ``side`` entities among ``allowed``: the entity scan over those candidates only (``scan(...,
    candidates=...)``, the scores ``predict_*`` computes), in id order so that ties go to the lower id."""
    device = device_of(model.model)
    anchor = to_ids(model.entities, [str(given["head" if side == "tail" else "tail"])], device)
    r = to_ids(model.relations, [str(given["relation"])], device)
    candidates = torch.unique(to_ids(model.entities, list(allowed), torch.device("cpu")))
    index = known.for_queries(torch.stack([anchor, r, anchor], 1).cpu()) if known is not None else None
    if remove_known and index is not None:
        candidates = candidates[~index.contains(_triples(side, anchor.cpu(), r.cpu(), candidates))]
    with inference(model.model):
        values, ids = topk(scan(model.model, "tail" if side == "tail" else "head", anchor, r,
                                candidates=candidates.to(device), memory_budget_bytes=memory_budget_bytes),
                           1, n, device=device)
    cand, values = ids[0].cpu(), values[0].cpu()
    hrt = _triples(side, anchor.cpu(), r.cpu(), cand)
    frame = pd.DataFrame({"head": model.entities.to_labels(hrt[:, 0].numpy()), "relation": given["relation"],
                          "tail": model.entities.to_labels(hrt[:, 2].numpy()), "score": values.numpy(),
                          "rank": np.arange(1, len(cand) + 1)})
    frame = with_probability(frame, model.model)
    return frame.assign(known=index.contains(hrt).numpy()) if index is not None else frame


def _triples(side: str, anchor: torch.Tensor, r: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """``(C, 3)``: the query's triple completed by each candidate ``side`` entity."""
    given = [anchor.expand(len(candidates)), r.expand(len(candidates))]
    return torch.stack([*given, candidates] if side == "tail" else [candidates, given[1], given[0]], 1)


def encode(triples: Triples, entities: Vocabulary, relations: Vocabulary) -> torch.Tensor:
    """``triples`` (read with any vocabulary) as ids of ``entities``/``relations``, leaving out those whose labels
    they lack (as ``LoadedModel.encode``)."""
    if triples.entities == entities and triples.relations == relations:
        return triples.hrt
    entity_map = torch.from_numpy(entities.lookup(triples.entities.labels))
    relation_map = torch.from_numpy(relations.lookup(triples.relations.labels))
    hrt = torch.stack([entity_map[triples.hrt[:, 0]], relation_map[triples.hrt[:, 1]], entity_map[triples.hrt[:, 2]]],
                      1)
    return hrt[(hrt >= 0).all(1)]


def known_index(model: LinkPredictor, data: Dataset | Triples) -> Known:
    """The facts of ``data`` (every split of a dataset) in the model's ids; from ``LAZY_ROWS`` facts on left where
    they are and indexed per query (``KnownSplits``)."""
    parts = list(data.splits().values()) if isinstance(data, Dataset) else [data]
    encoded = [encode(part, model.entities, model.relations) for part in parts]
    num_entities, num_relations = model.model.num_entities, model.model.num_relations
    if sum(len(hrt) for hrt in encoded) >= LAZY_ROWS:
        return KnownSplits(encoded, num_entities, num_relations)
    return KnownTriples(torch.cat(encoded), num_entities, num_relations)


def discover_facts(model: LinkPredictor, data: Dataset | Triples, *, strategy: Strategy = "random_uniform",
                   relations: str | Sequence[str] | None = None, max_candidates: int = 1000, top_n: int = 10,
                   seed: int = 0, sides: str = "both", memory_budget_bytes: int | None = None) -> pd.DataFrame:
    """Likely true facts missing from ``data`` (AmpliGraph's ``discover_facts``): candidate triples of each target
    relation (``relations``; default every relation), drawn by ``strategy`` (``generate_candidates``), ranked
    against their corruptions, kept when their rank is at most ``top_n``.

    ``data`` is the graph the model learned: a ``Dataset`` (its train split draws the candidates; all its splits are
    the known facts) or ``Triples`` (both). A known fact is never a candidate. ``max_candidates`` bounds the
    candidates of each relation. Ranks are those of ``kgem evaluate``: filtered (the known facts are no competitors),
    realistic (ties count half), against every entity; with ``sides="both"`` a candidate's rank is the mean of its
    head and its tail rank, as AmpliGraph ranks them, ``"head"`` or ``"tail"`` ranks one side. The same ``seed``
    gives the same candidates.

    Columns: head, relation, tail, score, rank, and ``probability`` for a calibrated model or a generative circuit;
    sorted by rank, then score (highest first). ``frame.attrs["candidates"]`` says how many were ranked."""
    if strategy not in STRATEGIES:
        raise DataError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if sides not in SIDES:
        raise DataError(f"sides must be one of {', '.join(SIDES)}, got {sides!r}")
    if top_n < 1 or max_candidates < 1 or seed < 0:
        raise DataError(f"top_n and max_candidates must be at least 1 and seed at least 0, got {top_n}, "
                        f"{max_candidates} and {seed}")
    targets = [relations] if isinstance(relations, str) else relations
    rel_ids = model.relations.ids(pd.unique(np.asarray(targets, dtype=object))) if targets is not None else np.arange(
        model.model.num_relations)
    known = known_index(model, data)
    graph = encode(data.train if isinstance(data, Dataset) else data, model.entities, model.relations)
    hrt = generate_candidates(graph, known.for_relations(torch.as_tensor(rel_ids)), rel_ids.tolist(),
                              strategy=strategy, num_entities=model.model.num_entities,
                              max_candidates=max_candidates, seed=seed, names=model.relations.labels)
    ranks = rank_candidates(model.model, hrt, known, sides=sides, memory_budget_bytes=memory_budget_bytes)
    kept = hrt[torch.from_numpy(ranks <= top_n)]
    labels = pd.DataFrame({"head": model.entities.to_labels(kept[:, 0].numpy()),
                           "relation": model.relations.to_labels(kept[:, 1].numpy()),
                           "tail": model.entities.to_labels(kept[:, 2].numpy())})
    frame = score_triples(model.model, model.entities, model.relations, labels).assign(rank=ranks[ranks <= top_n])
    ordered = ["head", "relation", "tail", "score", "rank", "probability"]
    frame = model._calibrated(frame[[c for c in ordered if c in frame.columns]])
    frame = frame.sort_values(["rank", "score"], ascending=[True, False], kind="stable").reset_index(drop=True)
    frame.attrs["candidates"] = len(hrt)
    return frame


def rank_candidates(model: ScoringModel, hrt: torch.Tensor, known: Known, *, sides: str = "both",
                    memory_budget_bytes: int | None = None) -> np.ndarray:
    """The filtered, realistic rank of each triple against every entity (``evaluate``'s): of its head and/or tail,
    the mean of the two for ``sides="both"``. float64 ``(n,)``."""
    if not len(hrt):
        return np.zeros(0)
    result = evaluate(model, hrt, known=known, sides=sides, memory_budget_bytes=budget_bytes(memory_budget_bytes))
    return result.ranks.realistic.numpy().reshape(-1, len(hrt)).mean(0)  # head queries first, then tail queries


def generate_candidates(graph: torch.Tensor, known: KnownTriples, relations: Sequence[int], *,
                        strategy: Strategy = "random_uniform", num_entities: int, max_candidates: int, seed: int = 0,
                        names: Sequence[str] | np.ndarray | None = None) -> torch.Tensor:
    """Candidate triples ``(n, 3)`` of each relation of ``relations``: at most ``max_candidates`` distinct ``(h, r,
    t)`` per relation, never in ``known`` and never reflexive (``h == t``).

    Heads are entities that are a head of some triple of ``graph`` (any relation), tails the same for tails, as in
    AmpliGraph. The sampling strategies draw a head and a tail independently, again and again (``ROUNDS`` times at
    most, so fewer candidates come back when most draws are known or repeated pairs), with probability
    proportional to (``entity_weights``):

    - ``random_uniform``: 1 (every head, every tail alike);
    - ``entity_frequency``: how many triples of ``graph`` have the entity as head (for heads), as tail (for tails);
    - ``graph_degree``: the entity's degree in the undirected simple graph of ``graph``: its distinct neighbours;
    - ``cluster_coefficient``: its local clustering coefficient in that graph (the share of its pairs of neighbours
      that are neighbours): entities on no triangle are never drawn.

    These weigh frequent, well-connected entities up, as AmpliGraph's code does (its prose says the opposite).
    ``exhaustive`` takes every head-tail pair in id order, and refuses a relation with more than ``max_candidates``.
    Each relation draws from its own generator, seeded by ``(seed, relation)``: its candidates do not depend on
    which other relations are asked for. ``names`` name the relations in messages."""
    head_weights, tail_weights = entity_weights(strategy, graph, num_entities)
    parts = [torch.zeros(0, 3, dtype=torch.int64)]
    for r in relations:
        name = repr(str(names[r])) if names is not None else str(r)
        if strategy == "exhaustive":
            parts.append(_every_pair(head_weights, tail_weights, known, r, max_candidates, name))
        else:
            rng = np.random.default_rng([seed, r])
            parts.append(_draw(rng, head_weights, tail_weights, known, r, max_candidates, strategy))
    return torch.cat(parts)


def entity_weights(strategy: Strategy, graph: torch.Tensor, num_entities: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 ``(num_entities,)`` weights of each entity as a head and as a tail (see ``generate_candidates``);
    0 where it is never drawn."""
    heads = np.bincount(graph[:, 0].numpy(), minlength=num_entities).astype(np.float64)
    tails = np.bincount(graph[:, 2].numpy(), minlength=num_entities).astype(np.float64)
    if strategy == "entity_frequency":
        return heads, tails
    u, v = neighbour_pairs(graph, num_entities)
    if strategy == "graph_degree":
        node = np.bincount(u, minlength=num_entities).astype(np.float64)
    elif strategy == "cluster_coefficient":
        node = clustering_coefficients(u, v, num_entities)
    else:  # random_uniform, exhaustive
        node = np.ones(num_entities)
    return node * (heads > 0), node * (tails > 0)


def neighbour_pairs(graph: torch.Tensor, num_entities: int) -> tuple[np.ndarray, np.ndarray]:
    """The undirected simple graph of ``graph`` (relations and self-loops dropped) as sorted, distinct directed
    pairs ``(u, v)``, each edge both ways."""
    h, t = graph[:, 0].numpy(), graph[:, 2].numpy()
    keep = h != t
    keys = np.unique(np.concatenate([h[keep] * num_entities + t[keep], t[keep] * num_entities + h[keep]]))
    return keys // num_entities, keys % num_entities


def clustering_coefficients(u: np.ndarray, v: np.ndarray, num_entities: int) -> np.ndarray:
    """Each node's local clustering coefficient ``2 T / (d (d - 1))`` (``T`` triangles through it, ``d`` its
    degree; 0 for ``d < 2``) from the sorted directed pairs of ``neighbour_pairs``. Every pair ``(x, y)`` is checked
    against each neighbour ``w`` of ``x`` (is ``(y, w)`` an edge?), ``WEDGE_BLOCK`` checks at a time: work and
    memory grow with the sum of squared degrees."""
    degree = np.bincount(u, minlength=num_entities)
    offsets = np.concatenate([[0], np.cumsum(degree)])
    keys = u * num_entities + v
    wedges = degree[u]  # checks per pair
    ends = np.concatenate([[0], np.cumsum(wedges)])
    closed = np.zeros(num_entities)
    start = 0
    while start < len(u):
        stop = max(start + 1, int(np.searchsorted(ends, ends[start] + WEDGE_BLOCK, side="right")) - 1)
        x, y, count = u[start:stop], v[start:stop], wedges[start:stop]
        pair = np.repeat(np.arange(len(x)), count)
        w = v[offsets[x][pair] + np.arange(len(pair)) - np.repeat(np.cumsum(count) - count, count)]
        query = y[pair] * num_entities + w
        hit = keys[np.minimum(np.searchsorted(keys, query), len(keys) - 1)] == query
        closed += np.bincount(x[pair[hit]], minlength=num_entities)
        start = stop
    pairs = degree * (degree - 1.0)
    return np.divide(closed, pairs, out=np.zeros(num_entities), where=pairs > 0)  # closed = 2 T


def _draw(rng: np.random.Generator, head_weights: np.ndarray, tail_weights: np.ndarray, known: KnownTriples,
          r: int, want: int, strategy: str) -> torch.Tensor:
    """Up to ``want`` distinct unknown, non-reflexive ``(h, r, t)``, heads and tails drawn by their weights."""
    heads, tails = np.flatnonzero(head_weights), np.flatnonzero(tail_weights)
    if not (len(heads) and len(tails)):
        raise DataError(f"{strategy}: no entity of the graph has a positive weight as "
                        f"{'head' if not len(heads) else 'tail'}; choose another strategy")
    p_head, p_tail = head_weights[heads] / head_weights[heads].sum(), tail_weights[tails] / tail_weights[tails].sum()
    found = np.zeros((0, 2), dtype=np.int64)
    for _ in range(ROUNDS):
        need = want - len(found)
        if need <= 0:
            break
        pairs = np.stack([rng.choice(heads, 2 * need + 16, p=p_head), rng.choice(tails, 2 * need + 16, p=p_tail)], 1)
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        pairs = pairs[~known.contains(_with_relation(pairs, r)).numpy()]
        pairs = np.concatenate([found, pairs])
        _, first = np.unique(pairs, axis=0, return_index=True)
        found = pairs[np.sort(first)][:want]  # distinct, in draw order
    return _with_relation(found, r)


def _every_pair(head_weights: np.ndarray, tail_weights: np.ndarray, known: KnownTriples, r: int,
                max_candidates: int, name: str) -> torch.Tensor:
    """Every unknown, non-reflexive ``(h, r, t)`` of the heads and tails, by head then tail id; counted first, so a
    relation with more than ``max_candidates`` is refused before any is built."""
    heads, tails = torch.from_numpy(np.flatnonzero(head_weights)), torch.from_numpy(np.flatnonzero(tail_weights))
    rows, found = known.tail_pairs(heads, torch.full_like(heads, r))
    is_tail = torch.zeros(len(tail_weights), dtype=torch.bool)
    is_tail[tails] = True
    known_pairs = int((is_tail[found] & (found != heads[rows])).sum())
    reflexive = int(is_tail[heads].sum())
    count = len(heads) * len(tails) - reflexive - known_pairs
    if count > max_candidates:
        raise DataError(f"exhaustive: relation {name} has {count} unknown (head, tail) pairs, more than "
                        f"max_candidates={max_candidates}; raise max_candidates or choose a sampling strategy")
    pairs = torch.cartesian_prod(heads, tails).reshape(-1, 2)
    hrt = _with_relation(pairs[pairs[:, 0] != pairs[:, 1]].numpy(), r)
    return hrt[~known.contains(hrt)]


def _with_relation(pairs: np.ndarray, r: int) -> torch.Tensor:
    """``(n, 2)`` head-tail pairs -> ``(n, 3)`` triples of relation ``r``."""
    ht = torch.as_tensor(pairs, dtype=torch.int64).reshape(-1, 2)
    return torch.stack([ht[:, 0], torch.full((len(ht),), r, dtype=torch.int64), ht[:, 1]], 1)
