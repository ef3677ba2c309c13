"""The synthetic relation-pattern graphs: seeded, leak-free, and their held-out triples follow from the pattern."""

from __future__ import annotations

import pytest
import torch

from kgem.data.synthetic import PATTERNS, implied
from kgem.evaluation import evaluate
from kgem.models import build_model
from kgem.training import LOSSES, OneVsAll, Trainer, build_optimizer


def rows(hrt: torch.Tensor) -> set[tuple[int, int, int]]:
    return {(h, r, t) for h, r, t in hrt.tolist()}


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_seeded(pattern: str) -> None:
    a, b, c = PATTERNS[pattern](3), PATTERNS[pattern](3), PATTERNS[pattern](4)
    for split in ("train", "valid", "test"):
        assert torch.equal(getattr(a, split).hrt, getattr(b, split).hrt)
    assert not torch.equal(a.train.hrt, c.train.hrt)


@pytest.mark.parametrize("pattern", list(PATTERNS))
@pytest.mark.parametrize("seed", [0, 1])
def test_held_out_is_new_seen_and_implied(pattern: str, seed: int) -> None:
    ds = PATTERNS[pattern](seed)
    assert ds.valid is not None and ds.test is not None
    train, held_out = rows(ds.train.hrt), rows(ds.valid.hrt) | rows(ds.test.hrt)
    assert len(ds.test) >= 10 and len(train) == len(ds.train)  # no duplicate training triples
    assert not held_out & train
    seen = set(ds.train.hrt[:, [0, 2]].flatten().tolist())
    assert {e for h, _, t in held_out for e in (h, t)} <= seen
    assert held_out <= implied(pattern, ds.train.hrt, ds.relations) - train


def test_traps_exist() -> None:
    """The antisymmetric and inverse test queries keep the reverse edge's entity among the filtered candidates."""
    for pattern, relation in (("antisymmetric", "before"), ("inverse", "prev")):
        ds = PATTERNS[pattern](0)
        assert ds.test is not None
        r = int(ds.relations.ids([relation])[0])
        known = rows(torch.cat([split.hrt for split in ds.splits().values()]))
        for h, _, _ in ds.test.hrt.tolist():  # some entity x with (x, r, h) true but (h, r, x) false
            assert any((x, r, h) in known and (h, r, x) not in known for x in range(ds.num_entities))


def hits1(pattern: str) -> float:
    torch.manual_seed(0)
    ds = PATTERNS[pattern](0)
    model = build_model("distmult", ds.num_entities, ds.num_relations, 32)
    optimizer = build_optimizer("adam", model.parameters(), lr=0.02)
    Trainer(model, OneVsAll(), LOSSES.get("cross_entropy")(), optimizer, batch_size=256,
            progress=False).fit(ds.train.hrt, 40)
    assert ds.test is not None
    return evaluate(model, ds.test.hrt, known=ds.known()).hits_at(1)


def test_distmult_learns_symmetry_but_not_antisymmetry() -> None:
    assert hits1("symmetric") > 0.8
    assert hits1("antisymmetric") < 0.3


def collapsed(hrt: torch.Tensor) -> list[int]:
    """Union-find roots under an exact ``h ∘ r = t`` model: the tails of one (h, r) are one point, and so are the
    heads of one (r, t)."""
    parent = list(range(int(hrt[:, [0, 2]].max()) + 1))

    def find(e: int) -> int:
        while parent[e] != e:
            parent[e] = parent[parent[e]]
            e = parent[e]
        return e

    first: dict[tuple[str, int, int], int] = {}
    for h, r, t in hrt.tolist():
        for key, e in ((("t", h, r), t), (("h", r, t), h)):
            parent[find(e)] = find(first.setdefault(key, e))
    return [find(e) for e in range(len(parent))]


@pytest.mark.parametrize("seed", [0, 1])
def test_one_to_n_punishes_exact_collapse(seed: int) -> None:
    """Under an exact translation / rotation, every held-out tail ties with an unfiltered non-answer."""
    ds = PATTERNS["one_to_n"](seed)
    assert ds.test is not None
    root = collapsed(ds.train.hrt)
    known = rows(torch.cat([split.hrt for split in ds.splits().values()]))
    for h, r, x in ds.test.hrt.tolist():
        assert any(root[y] == root[x] and (h, r, y) not in known for y in range(len(root)) if y != x)


@pytest.mark.parametrize("pattern", ["antisymmetric", "inverse"])
def test_chains_are_short(pattern: str) -> None:
    """The fewest layers / chain links that keep a trap on both sides (TransE's unit vectors bend long lines)."""
    ds = PATTERNS[pattern](0)
    relation = {"antisymmetric": "before", "inverse": "next"}[pattern]
    r = int(ds.relations.ids([relation])[0])
    edges = ds.train.hrt[ds.train.hrt[:, 1] == r]
    heads, tails = set(edges[:, 0].tolist()), set(edges[:, 2].tolist())
    starts = heads - tails
    succ: dict[int, set[int]] = {}
    for h, _, t in edges.tolist():
        succ.setdefault(h, set()).add(t)
    longest, frontier = 0, starts
    while frontier:
        frontier = {t for h in frontier for t in succ.get(h, ())}
        longest += bool(frontier)
    assert longest == 3  # four layers / four chain entities


@pytest.mark.parametrize("pattern", ["symmetric", "antisymmetric", "inverse", "composition"])
def test_distractors_are_sparse(pattern: str) -> None:
    ds = PATTERNS[pattern](0)
    for label in ds.relations.labels:
        if str(label).startswith("random"):
            count = int((ds.train.hrt[:, 1] == int(ds.relations.ids([str(label)])[0])).sum())
            assert 0 < count <= ds.num_entities // 3
