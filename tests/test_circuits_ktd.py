"""Kernel Triple Distance against brute force: the features rebuild the ComplEx score, the blocked MMD² equals the
MMD² of the full kernel matrix for every batch size, and the distance tells two distributions apart."""

from __future__ import annotations

import pytest
import torch

from kgem.circuits import ktd
from kgem.circuits.ktd import kernel_triple_distance, triple_features, uniform_triples
from kgem.errors import ConfigError, EvaluationError
from kgem.models import build_model
from kgem.models.model import Model

E, R, DIM = 9, 3, 4


def complex_model(inverse: bool = False) -> Model:
    torch.manual_seed(0)
    return build_model("complex", E, R, DIM, inverse=inverse)


def brute_force(model: Model, x: torch.Tensor, y: torch.Tensor, unbiased: bool) -> float:
    """MMD² from the full kernel matrices, written out from the definition."""
    fx, fy = triple_features(model, x), triple_features(model, y)
    kxx, kyy, kxy = ((a @ b.T + 1) ** 3 for a, b in ((fx, fx), (fy, fy), (fx, fy)))
    n, m = len(x), len(y)
    if unbiased:
        xx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
        yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    else:
        xx, yy = kxx.mean(), kyy.mean()
    return float(xx + yy - 2 * kxy.mean())


def test_features_are_the_signed_terms_of_the_complex_score() -> None:
    model = complex_model()
    hrt = uniform_triples(E, R, 20, seed=1)
    raw = triple_features(model, hrt, normalize=False)
    assert raw.shape == (20, 4 * DIM) and raw.dtype == torch.float64
    blocks = raw.unflatten(-1, (4, DIM)).sum(-1)  # (n, 4): each product summed over coordinates
    signed = blocks[:, 0] - blocks[:, 1] + blocks[:, 2] + blocks[:, 3]
    torch.testing.assert_close(signed, model.score_hrt(hrt).double().detach(), rtol=1e-5, atol=1e-6)
    unit = triple_features(model, hrt)
    torch.testing.assert_close(unit.norm(dim=-1), torch.ones(20, dtype=torch.float64))
    torch.testing.assert_close(unit * raw.norm(dim=-1, keepdim=True), raw)


def test_a_set_against_itself() -> None:
    model = complex_model()
    x = uniform_triples(E, R, 30, seed=2)
    assert abs(kernel_triple_distance(model, x, x, unbiased=False)) < 1e-12
    # unbiased: the diagonal leaves the within-set terms only, -2 / (n - 1) * (mean k(x_i, x_i) - mean k(x_i, x_j)),
    # which vanishes as the set grows with its empirical distribution fixed (every triple repeated 10 times)
    features = triple_features(model, x)
    gram = (features @ features.T + 1) ** 3
    unbiased = kernel_triple_distance(model, x, x)
    assert unbiased == pytest.approx(float(-2 / 29 * (gram.diagonal().mean() - gram.mean())), rel=1e-10)
    assert unbiased < 0
    assert kernel_triple_distance(model, x.repeat(10, 1), x.repeat(10, 1)) == pytest.approx(unbiased * 29 / 299,
                                                                                            rel=1e-10)


@pytest.mark.parametrize("unbiased", [True, False])
def test_equals_brute_force_on_unequal_sets(unbiased: bool) -> None:
    model = complex_model()
    x, y = uniform_triples(E, R, 13, seed=3), uniform_triples(E, R, 9, seed=4)
    value = kernel_triple_distance(model, x, y, unbiased=unbiased, batch_size=5)
    assert value == pytest.approx(brute_force(model, x, y, unbiased), rel=1e-10, abs=1e-13)


@pytest.mark.parametrize("unbiased", [True, False])
def test_batch_size_does_not_change_the_value(unbiased: bool) -> None:
    model = complex_model()
    x, y = uniform_triples(E, R, 23, seed=5), uniform_triples(E, R, 17, seed=6)
    values = [kernel_triple_distance(model, x, y, batch_size=b, unbiased=unbiased) for b in (1, 7, 1000)]
    assert values == pytest.approx([values[0]] * 3, rel=1e-10, abs=1e-13)


def test_no_kernel_block_exceeds_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    shapes: list[tuple[int, ...]] = []
    kernel = ktd.kernel

    def recording(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        block = kernel(x, y)
        shapes.append(tuple(block.shape))
        return block

    monkeypatch.setattr(ktd, "kernel", recording)
    model = complex_model()
    kernel_triple_distance(model, uniform_triples(E, R, 40, seed=7), uniform_triples(E, R, 25, seed=8), batch_size=6)
    assert shapes and max(max(shape) for shape in shapes) == 6


def test_symmetric() -> None:
    model = complex_model()
    x, y = uniform_triples(E, R, 15, seed=9), uniform_triples(E, R, 11, seed=10)
    for unbiased in (True, False):
        forward = kernel_triple_distance(model, x, y, unbiased=unbiased, batch_size=4)
        assert kernel_triple_distance(model, y, x, unbiased=unbiased, batch_size=4) == pytest.approx(forward,
                                                                                                    rel=1e-12)


def test_a_different_distribution_is_farther() -> None:
    model = complex_model()
    reference = uniform_triples(E, R, 200, seed=11)
    same = uniform_triples(E, R, 200, seed=12)
    one_relation = uniform_triples(E, R, 200, seed=13)
    one_relation[:, 1] = 0
    near, far = (kernel_triple_distance(model, s, reference) for s in (same, one_relation))
    assert far > 0 and far > 10 * abs(near)


def test_unbiased_expectation_is_zero_where_the_biased_one_is_not() -> None:
    """Independent pairs of small samples of one distribution: the unbiased estimates average to 0 within three
    standard errors, the biased ones stay clearly above it (each is >= 0 and misses its diagonal correction)."""
    model = complex_model()
    unbiased, biased = [], []
    for seed in range(0, 200, 2):
        x, y = uniform_triples(E, R, 8, seed=seed), uniform_triples(E, R, 8, seed=seed + 1)
        unbiased.append(kernel_triple_distance(model, x, y))
        biased.append(kernel_triple_distance(model, x, y, unbiased=False))
    u, b = torch.tensor(unbiased, dtype=torch.float64), torch.tensor(biased, dtype=torch.float64)
    standard_error = u.std() / len(u) ** 0.5
    assert abs(u.mean()) < 3 * standard_error
    assert b.mean() > 10 * standard_error and bool((b >= 0).all())


def test_inverse_model_uses_forward_relations_only() -> None:
    model = complex_model(inverse=True)
    x = uniform_triples(E, R, 10, seed=14)
    assert triple_features(model, x).shape == (10, 4 * DIM)
    with pytest.raises(EvaluationError, match="outside"):
        triple_features(model, torch.tensor([[0, R, 1]]))


def test_refuses_a_model_without_complex_features() -> None:
    distmult = build_model("distmult", E, R, DIM)
    x = uniform_triples(E, R, 4, seed=15)
    with pytest.raises(ConfigError, match="ComplEx model only, got DistMult"):
        kernel_triple_distance(distmult, x, x)
    with pytest.raises(ConfigError, match="ComplEx model only"):
        triple_features(torch.nn.Linear(2, 2), x)


def test_bad_triples_and_sizes_are_refused() -> None:
    model = complex_model()
    x = uniform_triples(E, R, 4, seed=16)
    with pytest.raises(EvaluationError, match=r"shaped \(n, 3\)"):
        kernel_triple_distance(model, x[:, :2], x)
    with pytest.raises(EvaluationError, match="integer ids"):
        kernel_triple_distance(model, x.double(), x)
    with pytest.raises(EvaluationError, match="outside"):
        kernel_triple_distance(model, x, torch.tensor([[E, 0, 0], [0, 0, 0]]))
    with pytest.raises(EvaluationError, match="at least 2 triples"):
        kernel_triple_distance(model, x[:1], x)
    assert kernel_triple_distance(model, x[:1], x[:1], unbiased=False) == pytest.approx(0, abs=1e-12)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        kernel_triple_distance(model, x, x, batch_size=0)


def test_uniform_triples() -> None:
    triples = uniform_triples(E, R, 5000, seed=17)
    assert triples.shape == (5000, 3) and triples.dtype == torch.long
    assert torch.equal(triples, uniform_triples(E, R, 5000, seed=17))
    assert not torch.equal(triples, uniform_triples(E, R, 5000, seed=18))
    for column, size in ((0, E), (1, R), (2, E)):
        counts = torch.bincount(triples[:, column], minlength=size)
        assert len(counts) == size and bool((counts > 0.8 * 5000 / size).all())
    with pytest.raises(ValueError, match="num_entities must be a positive integer"):
        uniform_triples(0, R, 5, seed=0)
