"""The six one-file models (AutoSF, CrossE, DistMA, TransF, LineaRE, TripleRE) beyond the registry harness: the
query form each factorisable one declares (``tail_query``, ``head_query``, ``keys``, ``query_bias``, ``comparison``)
equals its ``forward``; CrossE's bias and dropout sit where the paper puts them; AutoSF's coefficients travel
through a config and a saved model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kgem.data import Vocabulary
from kgem.factory import checked, model_arguments
from kgem.models import build_model
from kgem.saving import load_model, save_model
from references import neural

E, R, D, B = 6, 3, 5, 7
SPARSE = {"num_blocks": 3, "coefficients": [(2, 0, 1, -1), (0, 2, 2, 1), (1, 1, 1, 1)]}  # tail block 0 unused
FACTORISED = [("autosf", {}), ("autosf", SPARSE), ("crosse", {}), ("distma", {}),
              ("transf", {})]  # LineaRE and TripleRE scale both sides per relation: no query form


def compare(kind: str, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The comparison a model names, written out: ``<q, k>``, ``-||q - k||^2`` or ``-||q - k||``."""
    if kind == "dot":
        return (q * k).sum(-1)
    square = (q - k).pow(2).sum(-1)
    return -square if kind == "squared_l2" else -square.sqrt()


def rows(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random float64 rows of the widths the interaction asks for: ``h, r, t (B, w)``."""
    g = torch.Generator().manual_seed(0)
    inter = model.interaction
    h, t = (torch.randn(B, inter.entity_width(), generator=g, dtype=torch.float64) for _ in range(2))
    return h, torch.randn(B, inter.relation_width(), generator=g, dtype=torch.float64), t


def built(name: str, args: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(name, E, R, D, **args).double().eval()
    if name == "crosse":  # a bias away from its zero start, so that a misplaced bias shows
        with torch.no_grad():
            model.interaction.bias.normal_()
    return model


@pytest.mark.parametrize(("name", "args"), FACTORISED)
def test_tail_query_form_equals_forward(name, args) -> None:
    model = built(name, args)
    inter, (h, r, t) = model.interaction, rows(model)
    bias = inter.query_bias(h, r, "tail")
    score = compare(inter.comparison, inter.tail_query(h, r), inter.keys(t, "tail")) + (0 if bias is None else bias)
    assert torch.allclose(score, inter(h, r, t))


@pytest.mark.parametrize(("name", "args"), [(n, a) for n, a in FACTORISED if n != "crosse"])  # CrossE: h in a tanh
def test_head_query_form_equals_forward(name, args) -> None:
    model = built(name, args)
    inter, (h, r, t) = model.interaction, rows(model)
    bias = inter.query_bias(t, r, "head")
    score = compare(inter.comparison, inter.head_query(r, t), inter.keys(h, "head")) + (0 if bias is None else bias)
    assert torch.allclose(score, inter(h, r, t))


def test_crosse_adds_its_bias_inside_the_tanh() -> None:
    model = built("crosse", {})
    inter, (h, r, t) = model.interaction, rows(model)
    expected = [neural.REFERENCE["crosse"][0][1](h[i], r[i], t[i], inter) for i in range(B)]
    assert torch.allclose(inter(h, r, t), torch.tensor(expected, dtype=torch.float64))


def test_crosse_drops_out_the_combination_in_training_only() -> None:
    """In training, each coordinate of the query is 0 or the eval-mode one scaled by 1 / (1 - 0.5): dropout acts on
    ``tanh(...)``, before the dot product with the tail."""
    model = built("crosse", {})
    inter, (h, r, _) = model.interaction, rows(model)
    plain = inter.tail_query(h, r)
    torch.manual_seed(1)
    dropped = inter.train().tail_query(h, r)
    kept = dropped != 0
    assert 0 < kept.sum() < kept.numel()
    assert torch.allclose(dropped[kept], 2 * plain[kept])


def test_autosf_coefficients_come_from_a_config_and_survive_a_saved_model(tmp_path: Path) -> None:
    """A YAML config gives lists of lists; a saved model stores them as JSON lists: both rebuild the same model."""
    args = checked("model.args", "autosf", {"num_blocks": 2, "coefficients": [[0, 0, 0, 1], [1, 1, 0, -1]]},
                   model_arguments("autosf"))
    torch.manual_seed(0)
    model = build_model("autosf", E, R, D, **args).eval()
    assert model.interaction.coefficients == ((0, 0, 0, 1), (1, 1, 0, -1))
    spec = {"name": "autosf", "dim": D, "inverse": False, "args": args}
    path = save_model(model, tmp_path / "model", entities=Vocabulary([f"e{i}" for i in range(E)], kind="entity"),
                      relations=Vocabulary([f"r{i}" for i in range(R)], kind="relation"), spec=spec)
    loaded = load_model(path).model
    hrt = torch.tensor([[0, 1, 2], [3, 0, 5]])
    with torch.no_grad():
        assert torch.allclose(loaded.score_hrt(hrt), model.score_hrt(hrt), atol=1e-6)
    assert loaded.interaction.coefficients == model.interaction.coefficients
