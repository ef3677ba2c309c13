"""References for kgem.models.bilinear and kgem.models.factorization, and the dot-product models of a file of
their own (kgem.models.autosf, distma, transf)."""

from __future__ import annotations

import math

import torch

from references import Formula, Recipes, References


def _rescal(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, _: object) -> float:
    d = len(h)  # r is the d x d matrix, row by row
    return sum(float(h[i] * r[i * d + j] * t[j]) for i in range(d) for j in range(d))


def _hole(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, _: object) -> float:
    d = len(h)
    return sum(float(r[k]) * sum(float(h[i] * t[(i + k) % d]) for i in range(d)) for k in range(d))


def _simple(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, _: object) -> float:
    d = len(r) // 2  # entity rows [head role, tail role]; relation rows [r, r inverse]
    forward = sum(float(h[i] * r[i] * t[d + i]) for i in range(d))
    backward = sum(float(t[i] * r[d + i] * h[d + i]) for i in range(d))
    return (forward + backward) / 2


def _cp(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, _: object) -> float:
    d = len(r)
    return sum(float(h[i] * r[i] * t[d + i]) for i in range(d))


def _quate(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, _: object) -> float:
    d = len(h) // 4  # parts [1 | i | j | k], each of d coordinates
    total = 0.0
    for n in range(d):
        a1, b1, c1, d1 = (float(h[p * d + n]) for p in range(4))
        a2, b2, c2, d2 = (float(r[p * d + n]) for p in range(4))
        norm = math.sqrt(a2 * a2 + b2 * b2 + c2 * c2 + d2 * d2)
        a2, b2, c2, d2 = a2 / norm, b2 / norm, c2 / norm, d2 / norm
        product = (a1 * a2 - b1 * b2 - c1 * c2 - d1 * d2,  # (a1 + b1 i + c1 j + d1 k)(a2 + b2 i + c2 j + d2 k)
                   a1 * b2 + b1 * a2 + c1 * d2 - d1 * c2,
                   a1 * c2 - b1 * d2 + c1 * a2 + d1 * b2,
                   a1 * d2 + b1 * c2 - c1 * b2 + d1 * a2)
        total += sum(product[p] * float(t[p * d + n]) for p in range(4))
    return total


def _batch_norm(bn: torch.nn.Module | None, x: list[float]) -> list[float]:
    """Batch norm with running statistics (eval mode), coordinate by coordinate."""
    if bn is None:
        return x
    return [(x[i] - float(bn.running_mean[i])) / math.sqrt(float(bn.running_var[i]) + bn.eps) * float(bn.weight[i])
            + float(bn.bias[i]) for i in range(len(x))]


def _tucker(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, interaction: torch.nn.Module) -> float:
    core = interaction.core  # (d, d_r, d): W[i, k, j] multiplies h_i r_k t_j
    d, d_r = len(h), len(r)
    hn = _batch_norm(interaction.bn0, [float(v) for v in h])
    x = [sum(float(core[i, k, j]) * hn[i] * float(r[k]) for i in range(d) for k in range(d_r)) for j in range(d)]
    return sum(v * float(t[j]) for j, v in enumerate(_batch_norm(interaction.bn1, x)))


def _distma(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, _: object) -> float:
    return sum(float(h[i] * r[i] + r[i] * t[i] + h[i] * t[i]) for i in range(len(h)))


def _transf(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, _: object) -> float:
    return sum(float((h[i] + r[i]) * t[i] + h[i] * (t[i] - r[i])) for i in range(len(h)))


# AutoSF's structure searched on YAGO3-10, the default: (head block, relation block, tail block, sign)
YAGO3_10 = [(0, 0, 0, 1), (1, 1, 1, 1), (2, 2, 2, 1), (3, 3, 3, 1), (1, 2, 3, -1), (3, 1, 1, -1)]
COMPLEX_BLOCKS = [(0, 0, 0, 1), (1, 0, 1, 1), (0, 1, 1, 1), (1, 1, 0, -1)]  # ComplEx: blocks [real, imaginary]


def _autosf(coefficients: list[tuple[int, int, int, int]], blocks: int) -> Formula:
    def score(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor, _: object) -> float:
        d = len(h) // blocks  # rows are blocks of d coordinates
        return sum(s * sum(float(h[i * d + x] * r[j * d + x] * t[k * d + x]) for x in range(d))
                   for i, j, k, s in coefficients)
    return score


REFERENCE: References = {
    "distmult": [({}, lambda h, r, t, _: sum(float(h[i] * r[i] * t[i]) for i in range(len(h))))],
    "complex": [({}, lambda h, r, t, _: sum((complex(h[i]) * complex(r[i]) * complex(t[i]).conjugate()).real
                                           for i in range(len(h))))],
    "rescal": [({}, _rescal)],
    "hole": [({}, _hole)],
    "simple": [({}, _simple)],
    "cp": [({}, _cp), ({"init_scale": 0.5}, _cp)],
    "quate": [({}, _quate)],
    "tucker": [({}, _tucker), ({"batch_norm": False, "relation_dim": 3}, _tucker),
               ({"relation_dim": 8, "input_dropout": 0.0, "hidden_dropout1": 0.0, "hidden_dropout2": 0.0}, _tucker)],
    "distma": [({}, _distma)],
    "transf": [({}, _transf)],
    "autosf": [({}, _autosf(YAGO3_10, 4)),
               ({"num_blocks": 2, "coefficients": COMPLEX_BLOCKS}, _autosf(COMPLEX_BLOCKS, 2)),
               ({"num_blocks": 3, "coefficients": [(2, 0, 1, -1), (0, 2, 2, 1)]},  # head block 1, tail block 0 unused
                _autosf([(2, 0, 1, -1), (0, 2, 2, 1)], 3))],
}

FAST = {"epochs": 5, "batch_size": 512}  # 1-N scoring is one matmul per batch: few, large batches suffice on UMLS

RECIPES: Recipes = {
    "distmult": ({}, "1vsall", "cross_entropy", {}),
    "complex": ({}, "1vsall", "cross_entropy", {}),
    "rescal": ({}, "1vsall", "cross_entropy", {}, FAST),
    "hole": ({}, "1vsall", "cross_entropy", {}, FAST),
    "simple": ({}, "slcwa", "softplus", {}, {"epochs": 10, "batch_size": 256}),  # the paper's negative log-likelihood
    "cp": ({}, "1vsall", "cross_entropy", {}, FAST),
    "quate": ({}, "1vsall", "cross_entropy", {}, FAST),
    # batch norm and two of the paper's dropouts on; hidden dropout 1 draws a mask of B * d^2 and dominates CPU time
    "tucker": ({"hidden_dropout1": 0.0}, "1vsall", "cross_entropy", {}, FAST),
    "distma": ({}, "1vsall", "cross_entropy", {}, FAST),
    "transf": ({}, "1vsall", "cross_entropy", {}, FAST),
    "autosf": ({}, "1vsall", "cross_entropy", {}, FAST),
}
