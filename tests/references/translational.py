"""References for kgem.models.translational and kgem.models.geometric, and the distance models of a file of their
own (kgem.models.lineare, triplere): plain Python over coordinates."""

from __future__ import annotations

import cmath
import math
from typing import Any

import torch

from references import Formula, Recipes, References

Vector = list[float]


def _vec(x: torch.Tensor) -> Vector:
    return [float(v) for v in x]


def _dot(a: Vector, b: Vector) -> float:
    return sum(x * y for x, y in zip(a, b))


def _unit(a: Vector) -> Vector:
    n = math.sqrt(_dot(a, a))
    return [x / n for x in a]


def _clip(a: Vector) -> Vector:
    """Scale a vector longer than 1 back to length 1."""
    n = math.sqrt(_dot(a, a))
    return [x / n for x in a] if n > 1 else a


def _apply(m: list[Vector], a: Vector) -> Vector:
    return [_dot(row, a) for row in m]


def _matrix(flat: Vector, rows: int, cols: int) -> list[Vector]:
    return [[flat[i * cols + j] for j in range(cols)] for i in range(rows)]


def _dist(x: Vector, p: float, power: bool) -> float:
    total = sum(abs(v) ** p for v in x)
    return total if power else total ** (1 / p)


def _transe(p: float, unit: bool = True) -> Formula:
    def score(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, _: object) -> float:
        if unit:  # TransE's entity rows are unit vectors
            h, t = h / h.norm(), t / t.norm()
        return -sum(abs(float(h[i] + r[i] - t[i])) ** p for i in range(len(h))) ** (1 / p)
    return score


def _rotate(p: float) -> Formula:
    def score(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, _: object) -> float:
        moduli = [abs(complex(h[i]) * complex(r[i]) - complex(t[i])) for i in range(len(h))]
        return -sum(m**p for m in moduli) ** (1 / p)
    return score


def _transh(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, inter: Any) -> float:
    d = inter.dim
    w = _unit(_vec(r[:d]))
    dr = _vec(r[d:])
    dr = [dr[i] - _dot(w, dr) * w[i] for i in range(d)]  # translation on the hyperplane
    hv, tv = _clip(_vec(h)), _clip(_vec(t))
    hp = [hv[i] - _dot(w, hv) * w[i] for i in range(d)]
    tp = [tv[i] - _dot(w, tv) * w[i] for i in range(d)]
    return -_dist([hp[i] + dr[i] - tp[i] for i in range(d)], inter.p, inter.power_norm)


def _transr(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, inter: Any) -> float:
    d, k = inter.dim, inter.relation_dim
    rv = _clip(_vec(r[:k]))
    m = _matrix(_vec(r[k:]), k, d)
    hp, tp = _clip(_apply(m, _clip(_vec(h)))), _clip(_apply(m, _clip(_vec(t))))
    return -_dist([hp[i] + rv[i] - tp[i] for i in range(k)], inter.p, inter.power_norm)


def _transd(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, inter: Any) -> float:
    d, k = inter.dim, inter.relation_dim
    rv, rp = _clip(_vec(r[:k])), _vec(r[k:])

    def mapped(e: torch.Tensor) -> Vector:
        ev, ep = _clip(_vec(e[:d])), _vec(e[d:])
        # M = r_p e_p^T + I (k×d identity), built entry by entry
        m = [[rp[i] * ep[j] + (1.0 if i == j else 0.0) for j in range(d)] for i in range(k)]
        return _clip(_apply(m, ev))

    hp, tp = mapped(h), mapped(t)
    return -_dist([hp[i] + rv[i] - tp[i] for i in range(k)], inter.p, inter.power_norm)


def _pairre(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, inter: Any) -> float:
    d = inter.dim
    hv, tv, rv = _unit(_vec(h)), _unit(_vec(t)), _vec(r)
    return -_dist([hv[i] * rv[i] - tv[i] * rv[d + i] for i in range(d)], inter.p, False)


def _mure(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, inter: Any) -> float:
    d = inter.dim
    hv, tv, rv = _vec(h), _vec(t), _vec(r)
    square = sum((rv[i] * hv[i] - (tv[i] + rv[d + i])) ** 2 for i in range(d))
    return -square + hv[d] + tv[d + 1]  # the head's subject bias, the tail's object bias


def _um(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, inter: Any) -> float:
    hv, tv = _unit(_vec(h)), _unit(_vec(t))
    return -sum((a - b) ** 2 for a, b in zip(hv, tv))


def _se(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, inter: Any) -> float:
    d = inter.dim
    rv = _vec(r)
    m_h, m_t = _matrix(rv[: d * d], d, d), _matrix(rv[d * d :], d, d)
    hp, tp = _apply(m_h, _unit(_vec(h))), _apply(m_t, _unit(_vec(t)))
    return -_dist([hp[i] - tp[i] for i in range(d)], inter.p, False)


def _toruse(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, inter: Any) -> float:
    hv, rv, tv = _vec(h), _vec(r), _vec(t)
    if inter.distance == "el2":  # embed each circle in the complex plane: x -> exp(2 pi i x)
        return -sum(abs(cmath.exp(2j * math.pi * (a + b)) - cmath.exp(2j * math.pi * c)) ** 2
                    for a, b, c in zip(hv, rv, tv)) / 4
    gaps = []
    for a, b, c in zip(hv, rv, tv):
        x = (a + b - c) % 1.0
        gaps.append(min(x, 1.0 - x))
    return -2 * sum(gaps) if inter.distance == "l1" else -4 * sum(g * g for g in gaps)


def _boxe(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, inter: Any) -> float:
    d = inter.dim
    hv, tv, rv = _vec(h), _vec(t), _vec(r)

    def corners(part: Vector) -> tuple[Vector, Vector]:
        centre, shape, s = part[:d], [abs(x) for x in part[d : 2 * d]], part[2 * d]
        size = s + 1 if s > 0 else math.exp(s)  # elu(s) + 1
        mean = math.exp(sum(math.log(x) for x in shape) / d)
        low = [centre[i] - size * shape[i] / mean / 2 for i in range(d)]
        high = [centre[i] + size * shape[i] / mean / 2 for i in range(d)]
        return low, high

    def distance(point: Vector, box: tuple[Vector, Vector]) -> float:
        low, high = box
        if inter.tanh_map:
            point, low, high = [math.tanh(x) for x in point], [math.tanh(x) for x in low], [math.tanh(x) for x in high]
        out = []
        for p, lo, hi in zip(point, low, high):
            w, c = hi - lo + 1, (lo + hi) / 2
            kappa = 0.5 * (w - 1) * (w - 1 / w)
            out.append(abs(p - c) / w if lo <= p <= hi else abs(p - c) * w - kappa)
        return _dist(out, inter.p, inter.power_norm)

    head_point = [hv[i] + tv[d + i] for i in range(d)]  # bumped by the other entity
    tail_point = [tv[i] + hv[d + i] for i in range(d)]
    return -distance(head_point, corners(rv[: 2 * d + 1])) - distance(tail_point, corners(rv[2 * d + 1 :]))


def _lineare(u: float = 0.0, unit: bool = False) -> Formula:
    """LineaRE; with ``u`` and unit entities, TripleRE."""
    def score(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, inter: Any) -> float:
        d = inter.dim
        hv, tv, rv = _vec(h), _vec(t), _vec(r)  # relation rows [r_h, r, r_t]
        if unit:
            hv, tv = _unit(hv), _unit(tv)
        x = [hv[i] * (rv[i] + u) - tv[i] * (rv[2 * d + i] + u) + rv[d + i] for i in range(d)]
        return -_dist(x, inter.p, inter.power_norm)
    return score


REFERENCE: References = {
    # normalize "step" keeps the stored rows unit (projected at construction), "none" leaves them free
    "transe": [({"p": 2.0}, _transe(2.0)), ({"p": 1.0}, _transe(1.0)), ({"normalize": "step"}, _transe(2.0)),
               ({"normalize": "none"}, _transe(2.0, unit=False))],
    "rotate": [({}, _rotate(1.0)), ({"p": 2}, _rotate(2.0))],
    "transh": [({}, _transh), ({"p": 1.0, "power_norm": False}, _transh), ({"power_norm": False}, _transh)],
    "transr": [({}, _transr), ({"relation_dim": 3}, _transr), ({"relation_dim": 7, "p": 1.0, "power_norm": False},
                                                                _transr)],
    "transd": [({}, _transd), ({"relation_dim": 3}, _transd), ({"relation_dim": 7, "power_norm": False}, _transd),
               ({"p": 1.0}, _transd)],
    "pairre": [({}, _pairre), ({"p": 2.0}, _pairre)],
    "mure": [({}, _mure)],
    "um": [({}, _um)],
    "se": [({}, _se), ({"p": 2.0}, _se)],
    "toruse": [({}, _toruse), ({"distance": "l1"}, _toruse), ({"distance": "l2"}, _toruse)],
    "boxe": [({}, _boxe), ({"p": 1.0, "tanh_map": False}, _boxe), ({"power_norm": True}, _boxe)],
    "lineare": [({}, _lineare()), ({"p": 2.0}, _lineare()), ({"p": 2.0, "power_norm": True}, _lineare())],
    "triplere": [({}, _lineare(1.0, unit=True)), ({"u": 0.0}, _lineare(0.0, unit=True)),
                 ({"u": -0.5, "p": 2.0}, _lineare(-0.5, unit=True)),
                 ({"normalize": "none"}, _lineare(1.0))],
}

FAST = {"batch_size": 512, "lr": 0.05, "epochs": 10}  # a few seconds each on two cores

RECIPES: Recipes = {
    "transe": ({"p": 1.0}, "slcwa", "margin_ranking", {"margin": 1.0}),
    "rotate": ({}, "slcwa", "self_adversarial", {"margin": 6.0}),
    "transh": ({}, "slcwa", "margin_ranking", {"margin": 1.0}, FAST),
    "transr": ({}, "slcwa", "margin_ranking", {"margin": 1.0}, FAST),
    "transd": ({}, "slcwa", "margin_ranking", {"margin": 1.0}, FAST),
    "pairre": ({}, "slcwa", "self_adversarial", {"margin": 6.0}, FAST),
    "mure": ({}, "slcwa", "bce", {}, FAST),
    # UM ignores the relation and always ranks the query entity itself first: about 0.16 on UMLS is its ceiling
    "um": ({}, "slcwa", "margin_ranking", {"margin": 1.0}, {**FAST, "min_mrr": 0.12, "min_ratio": 2.0}),
    "se": ({}, "slcwa", "margin_ranking", {"margin": 1.0}, FAST),
    "toruse": ({}, "slcwa", "margin_ranking", {"margin": 1.0}, FAST),
    "boxe": ({}, "slcwa", "self_adversarial", {"margin": 3.0, "temperature": 2.0}, FAST),
    "lineare": ({}, "slcwa", "self_adversarial", {"margin": 6.0}, FAST),
    "triplere": ({}, "slcwa", "self_adversarial", {"margin": 6.0}, FAST),
}
