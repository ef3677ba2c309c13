"""Kernel Triple Distance (KTD): how close a set of sampled triples is to a set of reference (test) triples.

KTD is the squared maximum mean discrepancy (MMD²) between the two sets under a cubic polynomial kernel
``k(x, y) = (x . y + 1) ** 3`` over a fixed feature map of triples taken from a trained ComplEx: the four elementwise
products that make up its score, before the final signed sum, concatenated and scaled to unit length
(``triple_features``). It plays for generated triples the part the Kernel Inception Distance plays for images: 0 when
the two sets come from one distribution, larger the further apart they are. The default estimator is the unbiased one
(it can dip below 0); ``uniform_triples`` draws the baseline every generative model should beat.

The kernel sums run over ``(batch_size, batch_size)`` blocks of triples whose features are recomputed per block
(a lookup and three products, cheap next to the block's matrix product), so memory stays bounded for any number of
triples; features, kernels and sums are float64.
"""

from __future__ import annotations

import torch

from kgem.checks import positive_int
from kgem.errors import ConfigError, EvaluationError
from kgem.models.bilinear import ComplEx
from kgem.models.model import Model

KTD_DEGREE = 3  # k(x, y) = (KTD_GAMMA * x . y + KTD_COEF) ** KTD_DEGREE
KTD_GAMMA = 1.0
KTD_COEF = 1.0
DEFAULT_KTD_BATCH = 2048  # triples per side of one kernel block


def check_complex(model: object) -> Model:
    """``model`` if it scores with ComplEx (the only model whose feature map is defined), else a ConfigError."""
    if not (isinstance(model, Model) and isinstance(model.interaction, ComplEx)):
        name = type(model.interaction).__name__ if isinstance(model, Model) else type(model).__name__
        raise ConfigError(f"KTD features are defined for a ComplEx model only, got {name}")
    return model


def check_triples(model: Model, hrt: torch.Tensor, name: str) -> torch.Tensor:
    """``hrt`` as an integer ``(n, 3)`` tensor on the model's device, every id within the model's vocabulary."""
    if not isinstance(hrt, torch.Tensor) or hrt.dim() != 2 or hrt.shape[1] != 3:
        shape = tuple(hrt.shape) if isinstance(hrt, torch.Tensor) else type(hrt).__name__
        raise EvaluationError(f"{name} must be a tensor of (h, r, t) rows shaped (n, 3), got {shape}")
    if hrt.dtype.is_floating_point or hrt.dtype.is_complex or hrt.dtype == torch.bool:
        raise EvaluationError(f"{name} must hold integer ids, got dtype {hrt.dtype}")
    hrt = hrt.long()
    if hrt.numel() and (hrt.min() < 0 or hrt[:, [0, 2]].max() >= model.num_entities
                        or hrt[:, 1].max() >= model.num_relations):
        raise EvaluationError(f"{name} has ids outside the model's {model.num_entities} entities and "
                              f"{model.num_relations} relations")
    return hrt.to(model.device)


def complex_rows(rows: torch.Tensor, what: str) -> torch.Tensor:
    """Rows as complex128; a ComplEx whose representation yields real rows (an encoder) has no defined features."""
    if not rows.is_complex():
        raise ConfigError(f"KTD features need complex {what} rows, got {rows.dtype}")
    return rows.to(torch.complex128)


@torch.no_grad()
def triple_features(model: Model, hrt: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
    """The KTD features ``(n, 4 * dim)`` float64 of triples ``hrt (n, 3)`` under a ComplEx ``model``.

    With ``h = a_h + i b_h``, ``r = alpha + i beta`` and ``t = a_t + i b_t``, the score ``Re(<h, r, conj(t)>)`` is
    the sum over coordinates of ``a_h alpha a_t - b_h beta a_t + a_h beta b_t + b_h alpha b_t``; the features are
    those four products, unsigned and concatenated in that order, then scaled to unit L2 norm (``normalize=False``
    keeps the raw products; an all-zero row stays zero). Relation ids are the forward ones: a model trained with
    reciprocal relations contributes only its first ``num_relations`` rows."""
    model = check_complex(model)
    return block_features(model, check_triples(model, hrt, "hrt"), normalize=normalize)


def block_features(model: Model, hrt: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
    """``triple_features`` of triples already checked (the inner loops of the kernel sums skip the checks)."""
    h = complex_rows(model.entity(hrt[:, 0]), "entity")
    r = complex_rows(model.relation(hrt[:, 1]), "relation")
    t = complex_rows(model.entity(hrt[:, 2]), "entity")
    features = torch.cat([h.real * r.real * t.real, h.imag * r.imag * t.real,
                          h.real * r.imag * t.imag, h.imag * r.real * t.imag], dim=-1)
    return torch.nn.functional.normalize(features, dim=-1) if normalize else features


def kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The cubic polynomial kernel matrix ``(len(x), len(y))`` of two feature blocks."""
    return (KTD_GAMMA * (x @ y.T) + KTD_COEF) ** KTD_DEGREE


def cross_sum(model: Model, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``sum_{i, j} k(x_i, y_j)`` over every pair, one block at a time."""
    total = torch.zeros((), dtype=torch.float64, device=model.device)
    for i in range(0, len(x), batch_size):
        fx = block_features(model, x[i:i + batch_size])
        for j in range(0, len(y), batch_size):
            total += kernel(fx, block_features(model, y[j:j + batch_size])).sum()
    return total


def self_sums(model: Model, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum_{i, j} k(x_i, x_j), sum_i k(x_i, x_i))``: the kernel matrix is symmetric, so only the blocks on and
    above the diagonal are computed, those above it counted twice."""
    total = torch.zeros((), dtype=torch.float64, device=model.device)
    diagonal = torch.zeros((), dtype=torch.float64, device=model.device)
    for i in range(0, len(x), batch_size):
        fx = block_features(model, x[i:i + batch_size])
        diagonal += (KTD_GAMMA * (fx * fx).sum(-1) + KTD_COEF).pow(KTD_DEGREE).sum()
        total += kernel(fx, fx).sum()
        for j in range(i + batch_size, len(x), batch_size):
            total += 2 * kernel(fx, block_features(model, x[j:j + batch_size])).sum()
    return total, diagonal


@torch.no_grad()
def kernel_triple_distance(model: Model, samples: torch.Tensor, reference: torch.Tensor, *,
                           batch_size: int = DEFAULT_KTD_BATCH, unbiased: bool = True) -> float:
    """KTD between triples ``samples (n, 3)`` and ``reference (m, 3)``: MMD² under the cubic kernel over
    ``triple_features(model, ...)``.

    Unbiased (default): ``sum_{i != j} k(x_i, x_j) / (n (n - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
    - 2 sum_{i, j} k(x_i, y_j) / (n m)``, whose expectation is 0 for two samples of one distribution (so a value can
    be slightly negative); it needs n, m >= 2. ``unbiased=False``: every pair, ``i = j`` included, each sum divided
    by its number of pairs: the squared distance of the two mean embeddings, >= 0 and 0 for a set against itself.
    No kernel block is larger than ``(batch_size, batch_size)``."""
    model = check_complex(model)
    batch_size = positive_int("batch_size", batch_size)
    x, y = check_triples(model, samples, "samples"), check_triples(model, reference, "reference")
    least = 2 if unbiased else 1
    if len(x) < least or len(y) < least:
        raise EvaluationError(f"KTD needs at least {least} triples on each side, got {len(x)} samples and "
                              f"{len(y)} reference triples")
    n, m = len(x), len(y)
    xx, x_diagonal = self_sums(model, x, batch_size)
    yy, y_diagonal = self_sums(model, y, batch_size)
    xy = cross_sum(model, x, y, batch_size)
    if unbiased:
        distance = (xx - x_diagonal) / (n * (n - 1)) + (yy - y_diagonal) / (m * (m - 1)) - 2 * xy / (n * m)
    else:
        distance = xx / n ** 2 + yy / m ** 2 - 2 * xy / (n * m)
    return float(distance)


def uniform_triples(num_entities: int, num_relations: int, n: int, seed: int) -> torch.Tensor:
    """``n`` triples ``(n, 3)`` with head, relation and tail drawn independently and uniformly: the baseline sampler
    whose KTD a generative model should beat. The same seed gives the same triples."""
    num_entities = positive_int("num_entities", num_entities)
    num_relations = positive_int("num_relations", num_relations)
    n = positive_int("n", n)
    generator = torch.Generator().manual_seed(seed)
    h = torch.randint(num_entities, (n,), generator=generator)
    r = torch.randint(num_relations, (n,), generator=generator)
    t = torch.randint(num_entities, (n,), generator=generator)
    return torch.stack([h, r, t], dim=1)
