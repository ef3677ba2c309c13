"""A harness over the REGULARIZERS registry, as over interactions and losses: every regularizer has a plain-Python
reference, and its value and gradients (at zero entries too, real and complex) match it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from kgem.training import REGULARIZERS


def lp_reference(p: int) -> Callable[[list[list[complex]], float], float]:
    def penalty(factors: list[list[complex]], weight: float) -> float:
        return weight * sum(abs(v) ** p for f in factors for v in f) / 2  # a batch of 2 rows

    return penalty


# name -> (constructor arguments, reference(factors as flat lists, weight))
REFERENCES: dict[str, tuple[dict[str, float], Callable[[list[list[complex]], float], float]]] = {
    "lp": ({"p": 1}, lp_reference(1)),
    "n3": ({}, lp_reference(3)),
}


def test_every_registered_regularizer_has_a_reference() -> None:
    assert set(REGULARIZERS.names()) == set(REFERENCES)


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("complex_factors", [False, True])
def test_value_and_finite_gradients_match_the_reference(name: str, complex_factors: bool) -> None:
    torch.manual_seed(0)
    args, reference = REFERENCES[name]
    dtype = torch.complex128 if complex_factors else torch.float64
    factors = [torch.randn(2, 3, dtype=dtype), torch.randn(2, 3, dtype=dtype)]
    factors[0][1, 2] = 0  # a zero entry: |x| has a kink there, its gradient must still be finite
    leaves = [f.clone().requires_grad_() for f in factors]
    value = REGULARIZERS.get(name)(weight=0.5, **args)(leaves)
    flat = [[complex(v) for v in f.flatten().tolist()] for f in factors]
    assert value.item() == pytest.approx(reference(flat, 0.5), rel=1e-12)
    value.backward()
    assert all(leaf.grad is not None and bool(torch.isfinite(torch.view_as_real(leaf.grad) if complex_factors
                                                             else leaf.grad).all()) for leaf in leaves)
    assert REGULARIZERS.get(name)(weight=0.0, **args)(factors).item() == 0.0


@pytest.mark.parametrize("p", [1, 2, 3])
def test_lp_of_every_order_matches_the_reference(p: int) -> None:
    x = torch.tensor([[1.0, -2.0], [0.0, 3.0]], dtype=torch.float64)
    expected = lp_reference(p)([[1.0, -2.0, 0.0, 3.0]], 2.0)
    assert REGULARIZERS.get("lp")(weight=2.0, p=p)([x]).item() == pytest.approx(expected, rel=1e-12)
