"""Out-of-range numeric arguments of models, losses, regularizers and optimizers fail at construction with a
one-line ValueError (on the command line: ``kgem: error: ...``, exit code 2), never as a traceback from inside a
training step, nor silently."""

from __future__ import annotations

import inspect
import math
import subprocess
import sys

import pytest
import torch

from kgem.cli import main
from kgem.errors import ConfigError
from kgem.models import INTERACTIONS, MODELS, build_model
from kgem.training import LOSSES, REGULARIZERS, build_optimizer

E, R, D = 7, 3, 8
NAN, INF = math.nan, math.inf

BAD_MODEL_ARGS = [
    ("transe", {"p": -1.0}, "p must be > 0"),
    ("transe", {"p": 0.0}, "p must be > 0"),
    ("transe", {"p": NAN}, "p must be > 0"),
    ("rotate", {"p": 3.0}, "p must be 1"),
    ("rotate", {"p": 0.0}, "p must be 1"),
    ("se", {"p": -1.0}, "p must be > 0"),
    ("se", {"p": 0.0}, "p must be > 0"),
    ("pairre", {"p": 0.0}, "p must be > 0"),
    ("pairre", {"p": -2.0}, "p must be > 0"),
    ("transh", {"p": 0.0}, "p must be > 0"),
    ("transh", {"p": INF}, "p must be finite with power_norm"),
    ("transr", {"p": -1.0}, "p must be > 0"),
    ("transr", {"relation_dim": 0}, "relation_dim must be a positive integer"),
    ("transr", {"relation_dim": -2}, "relation_dim must be a positive integer"),
    ("transd", {"p": 0.0}, "p must be > 0"),
    ("transd", {"relation_dim": 0}, "relation_dim must be a positive integer"),
    ("boxe", {"p": 0.0}, "p must be > 0"),
    ("boxe", {"p": -2.0}, "p must be > 0"),
    ("boxe", {"p": INF, "power_norm": True}, "p must be finite with power_norm"),
    ("toruse", {"distance": "l3"}, "distance must be"),
    ("cp", {"init_scale": 0.0}, "init_scale must be a positive finite number"),
    ("cp", {"init_scale": -1.0}, "init_scale must be a positive finite number"),
    ("cp", {"init_scale": INF}, "init_scale must be a positive finite number"),
    ("tucker", {"relation_dim": 0}, "relation_dim must be a positive integer"),
    ("tucker", {"input_dropout": 1.0}, "input_dropout must lie in [0, 1)"),
    ("tucker", {"hidden_dropout1": -0.1}, "hidden_dropout1 must lie in [0, 1)"),
    ("tucker", {"hidden_dropout2": NAN}, "hidden_dropout2 must lie in [0, 1)"),
    ("conve", {"height": 0}, "height must be a positive integer"),
    ("conve", {"height": -2}, "height must be a positive integer"),
    ("conve", {"height": 3}, "does not divide"),
    ("conve", {"num_filters": 0}, "num_filters must be a positive integer"),
    ("conve", {"kernel_size": 0}, "kernel_size must be a positive integer"),
    ("conve", {"input_dropout": 1.0}, "input_dropout must lie in [0, 1)"),
    ("conve", {"feature_dropout": -0.5}, "feature_dropout must lie in [0, 1)"),
    ("conve", {"hidden_dropout": 2.0}, "hidden_dropout must lie in [0, 1)"),
    ("convkb", {"num_filters": 0}, "num_filters must be a positive integer"),
    ("convkb", {"dropout": 1.0}, "dropout must lie in [0, 1)"),
    ("ermlp", {"hidden": 0}, "hidden must be a positive integer"),
    ("ermlp", {"hidden": -4}, "hidden must be a positive integer"),
    ("ermlpe", {"hidden": 0}, "hidden must be a positive integer"),
    ("ermlpe", {"input_dropout": 1.0}, "input_dropout must lie in [0, 1)"),
    ("ermlpe", {"hidden_dropout": -0.1}, "hidden_dropout must lie in [0, 1)"),
    ("ntn", {"slices": 0}, "slices must be a positive integer"),
    ("ntn", {"slices": -1}, "slices must be a positive integer"),
    ("proje", {"dropout": 1.0}, "dropout must lie in [0, 1)"),
    ("proje", {"dropout": -0.5}, "dropout must lie in [0, 1)"),
    ("kg2e", {"c_min": 0.0}, "c_min must be a positive finite number"),
    ("kg2e", {"c_min": 2.0, "c_max": 1.0}, "0 < c_min <= c_max"),
    ("kg2e", {"c_max": INF}, "c_max must be a positive finite number"),
    ("kg2e", {"similarity": "XX"}, "similarity must be"),
    ("autosf", {"num_blocks": 0}, "num_blocks must be a positive integer"),
    ("autosf", {"num_blocks": 2}, "coefficients must be distinct"),  # the default's blocks go up to 3
    ("autosf", {"coefficients": [(0, 0, 4, 1)]}, "coefficients must be distinct"),
    ("autosf", {"coefficients": [(0, 0, 0, 2)]}, "coefficients must be distinct"),
    ("autosf", {"coefficients": [(0, 1, 0, 1), (0, 1, 0, -1)]}, "coefficients must be distinct"),
    ("autosf", {"coefficients": []}, "coefficients must be distinct"),
    ("crosse", {"dropout": 1.0}, "dropout must lie in [0, 1)"),
    ("crosse", {"dropout": -0.1}, "dropout must lie in [0, 1)"),
    ("lineare", {"p": 0.0}, "p must be > 0"),
    ("lineare", {"p": INF, "power_norm": True}, "p must be finite with power_norm"),
    ("triplere", {"p": -1.0}, "p must be > 0"),
    ("triplere", {"u": NAN}, "u must be a finite number"),
    ("triplere", {"u": INF}, "u must be a finite number"),
]


@pytest.mark.parametrize(("name", "args", "problem"), BAD_MODEL_ARGS)
def test_bad_model_arguments_fail_at_construction(name, args, problem) -> None:
    with pytest.raises(ValueError, match=problem.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")) as e:
        build_model(name, E, R, D, **args)
    assert len(str(e.value).splitlines()) == 1


@pytest.mark.parametrize("name", sorted(INTERACTIONS.names()))
def test_every_numeric_argument_has_a_bad_value_case(name) -> None:
    """A new numeric argument of an interaction needs a row above: the table covers the whole registry."""
    params = inspect.signature(INTERACTIONS.get(name).__init__).parameters.values()
    def is_numeric(default: object) -> bool:
        return default is None or (isinstance(default, int | float) and not isinstance(default, bool))

    numeric = {p.name for p in params if p.name not in ("self", "dim") and p.default is not inspect.Parameter.empty
               and is_numeric(p.default)}
    covered = {key for model, args, _ in BAD_MODEL_ARGS if model == name for key in args}
    assert numeric <= covered, f"{name}: no bad-value case for {sorted(numeric - covered)}"


@pytest.mark.parametrize("dim", [0, -3])
def test_a_non_positive_dim_fails_at_construction(dim) -> None:
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        build_model("distmult", E, R, dim)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_builds_and_scores_with_its_defaults(name) -> None:
    torch.manual_seed(0)
    model = build_model(name, E, R, D).eval()
    with torch.no_grad():
        scores = model.score_t(torch.arange(3), torch.arange(3) % R)
    assert scores.shape == (3, E) and torch.isfinite(scores).all()


@pytest.mark.parametrize(("name", "args"), [("transe", {"p": INF}), ("se", {"p": 0.5}), ("pairre", {"p": 3.0}),
                                            ("boxe", {"p": INF}), ("transh", {"p": INF, "power_norm": False})])
def test_valid_unusual_norm_orders_are_accepted(name, args) -> None:
    torch.manual_seed(0)
    model = build_model(name, E, R, D, **args).eval()
    with torch.no_grad():
        assert torch.isfinite(model.score_t(torch.arange(3), torch.arange(3) % R)).all()


BAD_LOSS_ARGS = [
    ("margin_ranking", {"margin": NAN}, "margin must be a finite number"),
    ("margin_ranking", {"margin": INF}, "margin must be a finite number"),
    ("absolute_margin", {"margin": -INF}, "margin must be a finite number"),
    ("self_adversarial", {"margin": NAN}, "margin must be a finite number"),
    ("self_adversarial", {"temperature": -1.0}, "temperature must be a finite number >= 0"),
    ("self_adversarial", {"temperature": INF}, "temperature must be a finite number >= 0"),
    ("self_adversarial", {"temperature": NAN}, "temperature must be a finite number >= 0"),
    ("bce", {"label_smoothing": 1.0}, "label_smoothing must lie in"),
    ("cross_entropy", {"label_smoothing": -0.1}, "label_smoothing must lie in"),
]


@pytest.mark.parametrize(("name", "args", "problem"), BAD_LOSS_ARGS)
def test_bad_loss_arguments_fail_at_construction(name, args, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        LOSSES.get(name)(**args)


@pytest.mark.parametrize(("name", "args", "problem"), [
    ("lp", {"weight": -1.0}, "weight must be a finite number >= 0"),
    ("lp", {"weight": NAN}, "weight must be a finite number >= 0"),
    ("lp", {"weight": INF}, "weight must be a finite number >= 0"),
    ("lp", {"p": 4}, "p must be 1, 2 or 3"),
    ("n3", {"weight": -0.5}, "weight must be a finite number >= 0"),
])
def test_bad_regularizer_arguments_fail_at_construction(name, args, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        REGULARIZERS.get(name)(**args)


def test_a_temperature_of_zero_still_weights_negatives_uniformly() -> None:
    loss = LOSSES.get("self_adversarial")(margin=1.0, temperature=0.0)
    assert torch.isfinite(loss.sampled(torch.tensor([0.5]), torch.tensor([[-1.0, float("-inf")]])))


@pytest.mark.parametrize("name", ["sgd", "adam", "adagrad", "rowadagrad", "sparseadam"])
@pytest.mark.parametrize("lr", [1e39, INF, NAN, 0.0, -0.1])
def test_a_learning_rate_the_parameters_cannot_hold_is_refused(name, lr) -> None:
    with pytest.raises(ConfigError, match="lr must be a positive number"):
        build_optimizer(name, [torch.nn.Parameter(torch.ones(2, 2))], lr=lr)


def test_a_large_float64_learning_rate_is_checked_against_float64() -> None:
    p = torch.nn.Parameter(torch.ones(2, 2, dtype=torch.float64))
    build_optimizer("sgd", [p], lr=1e39)  # finite in the parameters' type: a step would not overflow the scalar


def test_an_optimizer_step_that_overflows_is_a_training_error() -> None:
    """Adam's first step is ``lr / (1 - beta1)``: 10 lr, past float32 for an lr that float32 still holds."""
    from kgem.data import load_dataset
    from kgem.training import SLCWA, NegativeSampler, Trainer, TrainingError

    ds = load_dataset("nations")
    model = build_model("distmult", ds.num_entities, ds.num_relations, 4)
    optimizer = build_optimizer("adam", model.parameters(), lr=1e38, foreach=False)
    trainer = Trainer(model, SLCWA(NegativeSampler(2)), LOSSES.get("softplus")(), optimizer, batch_size=512,
                      progress=False)
    with pytest.raises(TrainingError, match="overflow.*lower learning rate"):
        trainer.fit(ds.train.hrt, 1)


TRAIN = ["train", "--dataset", "nations", "--dim", "8", "--epochs", "1", "-q"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "transe", "--set", "model.args.p=-1"], "model.args: transe: p must be > 0"),
    (["--model", "pairre", "--set", "model.args.p=0"], "model.args: pairre: p must be > 0"),
    (["--model", "conve", "--set", "model.args.num_filters=0"], "num_filters must be a positive integer"),
    (["--model", "ntn", "--set", "model.args.slices=0"], "slices must be a positive integer"),
    (["--model", "ermlpe", "--set", "model.args.hidden=0"], "hidden must be a positive integer"),
    (["--model", "transe", "--loss", "margin_ranking", "--approach", "slcwa", "--margin", "nan"],
     "training.loss_args: margin_ranking: margin must be a finite number"),
    (["--set", "training.regularizer_args.weight=-1"], "training.regularizer_args: n3: weight must be"),
    (["--optimizer", "sgd", "--lr", "1e39"], "lr must be"),  # the config or the optimizer refuses it
])
def test_cli_bad_values_are_one_line_exit_2(argv, message, tmp_path, capsys) -> None:
    assert main([*TRAIN, *argv, "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("kgem: error: ") and message in err


def test_cli_bad_model_argument_has_no_traceback(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "kgem.cli", *TRAIN, "--model", "transe", "--set",
                           "model.args.p=-1", "--output", str(tmp_path / "run")], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["kgem: error: model.args: transe: p must be > 0 (the order of an Lp "
                                                "norm), got -1.0"]
