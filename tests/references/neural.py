"""References for kgem.models.neural, kgem.models.probabilistic and kgem.models.crosse.

The formulas read the interaction's layer weights and apply them by hand, one triple at a time, in Python floats.
Models are in eval mode in the harness: dropout is the identity and batch norm uses its running statistics.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from references import Formula, Recipes, References


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _bn(bn: Any) -> list[tuple[float, float, float, float]]:
    """Eval-mode batch norm per channel: (running mean, running std, weight, bias)."""
    return [(m, math.sqrt(v + bn.eps), w, b) for m, v, w, b in zip(
        bn.running_mean.tolist(), bn.running_var.tolist(), bn.weight.tolist(), bn.bias.tolist(), strict=True)]


def _norm(x: float, channel: tuple[float, float, float, float]) -> float:
    mean, std, weight, bias = channel
    return (x - mean) / std * weight + bias


def _relu(x: float) -> float:
    return max(0.0, x)


def _conve(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, inter: Any) -> float:
    d, height = len(r), inter.height
    width = d // height
    hv, rv, tv = h.tolist(), r.tolist(), t.tolist()
    image = [[hv[i * width + j] for j in range(width)] for i in range(height)]
    image += [[rv[i * width + j] for j in range(width)] for i in range(height)]  # r stacked below h
    bn0, bn1, bn2 = _bn(inter.bn0), _bn(inter.bn1), _bn(inter.bn2)
    image = [[_norm(v, bn0[0]) for v in row] for row in image]
    kernel, bias = inter.conv.weight.tolist(), inter.conv.bias.tolist()
    k = len(kernel[0][0])
    pad_rows, pad_cols = max(0, math.ceil((k - 2 * height) / 2)), max(0, math.ceil((k - width) / 2))
    rows, cols = 2 * height + 2 * pad_rows, width + 2 * pad_cols
    padded = [[0.0] * cols for _ in range(rows)]
    for i in range(2 * height):
        for j in range(width):
            padded[i + pad_rows][j + pad_cols] = image[i][j]
    features = []  # filter-major, then row, then column: the flattening order of (filters, rows, cols)
    for f in range(len(kernel)):
        for i in range(rows - k + 1):
            for j in range(cols - k + 1):
                x = bias[f] + sum(padded[i + a][j + b] * kernel[f][0][a][b] for a in range(k) for b in range(k))
                features.append(_relu(_norm(x, bn1[f])))
    fc_w, fc_b = inter.fc.weight.tolist(), inter.fc.bias.tolist()
    q = [_relu(_norm(fc_b[o] + _dot(fc_w[o], features), bn2[o])) for o in range(d)]
    return _dot(q, tv[:d]) + tv[d]  # the tail row is [embedding, bias]


def _convkb(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, inter: Any) -> float:
    hv, rv, tv, d = h.tolist(), r.tolist(), t.tolist(), len(h)
    omega, bias, w = inter.filters.weight.tolist(), inter.filters.bias.tolist(), inter.out.weight[0].tolist()
    score = 0.0
    for j in range(len(omega)):  # feature map j is the j-th block of d entries of the concatenation
        for i in range(d):
            score += w[j * d + i] * _relu(omega[j][0] * hv[i] + omega[j][1] * rv[i] + omega[j][2] * tv[i] + bias[j])
    return score


def _ermlp(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, inter: Any) -> float:
    x = h.tolist() + r.tolist() + t.tolist()
    a, w = inter.hidden.weight.tolist(), inter.out.weight[0].tolist()
    return sum(w[k] * math.tanh(_dot(a[k], x)) for k in range(len(a)))


def _ermlpe(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, inter: Any) -> float:
    x = h.tolist() + r.tolist()
    w1, b1, w2, b2 = (p.tolist() for p in (inter.linear1.weight, inter.linear1.bias, inter.linear2.weight,
                                           inter.linear2.bias))
    bn1, bn2 = _bn(inter.bn1), _bn(inter.bn2)
    hidden = [_relu(_norm(b1[k] + _dot(w1[k], x), bn1[k])) for k in range(len(w1))]
    q = [_relu(_norm(b2[o] + _dot(w2[o], hidden), bn2[o])) for o in range(len(w2))]
    return _dot(q, t.tolist())


def _ntn(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, inter: Any) -> float:
    hv, rv, tv, d, k = h.tolist(), r.tolist(), t.tolist(), len(h), inter.slices
    w, v = rv[: k * d * d], rv[k * d * d : k * d * d + 2 * k * d]  # W_r (k, d, d) and V_r (k, 2d), row-major
    b, u = rv[k * d * d + 2 * k * d : k * d * d + 2 * k * d + k], rv[-k:]
    score = 0.0
    for s in range(k):
        bilinear = sum(hv[i] * w[s * d * d + i * d + j] * tv[j] for i in range(d) for j in range(d))
        linear = _dot(v[s * 2 * d : (s + 1) * 2 * d], hv + tv)
        score += u[s] * math.tanh(bilinear + linear + b[s])
    return score


def _proje(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, inter: Any) -> float:
    d_e, d_r, b_c = inter.d_e.tolist(), inter.d_r.tolist(), inter.b_c.tolist()
    combined = [math.tanh(d_e[i] * float(h[i]) + d_r[i] * float(r[i]) + b_c[i]) for i in range(len(h))]
    return _dot(combined, t.tolist()) + float(inter.b_p)


def _kg2e(similarity: str, c_min: float = 0.05, c_max: float = 5.0) -> Formula:
    def gaussian(x: torch.Tensor) -> tuple[list[float], list[float]]:
        d = len(x) // 2
        mean = x[:d].tolist()
        norm = math.sqrt(sum(m * m for m in mean))
        mean = [m / max(norm, 1.0) for m in mean]  # ||mu|| <= 1
        return mean, [min(max(c, c_min), c_max) for c in x[d:].tolist()]  # c_min <= S_ii <= c_max

    def score(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, _: object) -> float:
        (mh, sh), (mr, sr), (mt, st) = gaussian(h), gaussian(r), gaussian(t)
        total = 0.0
        for i in range(len(mh)):
            me, se = mh[i] - mt[i], sh[i] + st[i]
            if similarity == "KL":  # KL(N_e || N_r), one diagonal coordinate at a time
                total -= 0.5 * (se / sr[i] + (mr[i] - me) ** 2 / sr[i] - math.log(se / sr[i]) - 1)
            else:  # log of the Gaussian density of mu_e - mu_r under covariance S_e + S_r
                total += -0.5 * (me - mr[i]) ** 2 / (se + sr[i]) - 0.5 * math.log(2 * math.pi * (se + sr[i]))
        return total
    return score


def _crosse(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, inter: Any) -> float:
    d, b = len(h), inter.bias.tolist()
    hv, rv, tv = h.tolist(), r.tolist(), t.tolist()  # relation rows [r, c_r]
    crossed = [rv[d + i] * hv[i] for i in range(d)]
    return sum(math.tanh(crossed[i] + crossed[i] * rv[i] + b[i]) * tv[i] for i in range(d))


REFERENCE: References = {
    "conve": [({}, _conve), ({"height": 1, "num_filters": 4, "kernel_size": 3}, _conve),
              ({"num_filters": 3, "kernel_size": 2, "input_dropout": 0.5}, _conve)],
    "convkb": [({"num_filters": 3}, _convkb), ({"num_filters": 5, "dropout": 0.5}, _convkb)],
    "ermlp": [({}, _ermlp), ({"hidden": 7}, _ermlp)],
    "ermlpe": [({"hidden": 6}, _ermlpe), ({}, _ermlpe)],
    "ntn": [({"slices": 3}, _ntn), ({}, _ntn)],
    "proje": [({}, _proje), ({"dropout": 0.0}, _proje)],
    "kg2e": [({}, _kg2e("KL")), ({"similarity": "EL"}, _kg2e("EL")),
             ({"similarity": "KL", "c_min": 0.3, "c_max": 0.5}, _kg2e("KL", 0.3, 0.5))],
    "crosse": [({}, _crosse), ({"dropout": 0.0}, _crosse)],
}

RECIPES: Recipes = {
    "conve": ({}, "1vsall", "cross_entropy", {}, {"epochs": 4, "batch_size": 256}),
    "convkb": ({"num_filters": 8}, "slcwa", "softplus", {}, {"epochs": 5}),
    "ermlp": ({}, "1vsall", "cross_entropy", {}, {"epochs": 6}),
    "ermlpe": ({}, "1vsall", "cross_entropy", {}, {"epochs": 5}),
    "ntn": ({}, "1vsall", "cross_entropy", {}, {"epochs": 4, "dim": 16}),
    "proje": ({}, "1vsall", "cross_entropy", {}, {"epochs": 6}),
    "kg2e": ({}, "slcwa", "softplus", {}, {"epochs": 6, "lr": 0.05}),
    "crosse": ({}, "1vsall", "cross_entropy", {}, {"epochs": 6}),
}
