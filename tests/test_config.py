from __future__ import annotations

import dataclasses
import inspect
import json
import re
from dataclasses import dataclass, field
from typing import Literal

import pytest
import torch
import yaml

from kgem.config import apply_overrides, from_dict, help_field, load_config, save_config, to_commented_yaml, to_dict
from kgem.configs import DataConfig, EvaluationConfig, ModelConfig, PipelineConfig, TrainingConfig
from kgem.errors import ConfigError
from kgem.factory import checked, model_arguments, model_from_config
from kgem.models import INITIALIZERS, INTERACTIONS, build_model


@dataclass(frozen=True, kw_only=True)
class Inner:
    dim: int = help_field(50, "embedding dimension")
    lr: float = 0.01
    name: Literal["adam", "sgd"] = "adam"

    def __post_init__(self) -> None:
        if self.dim <= 0:
            raise ValueError(f"dim must be positive, got {self.dim}")


@dataclass(frozen=True, kw_only=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    ks: tuple[int, ...] = (1, 3, 10)
    path: str | None = None
    flag: bool = False


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip_through_files(tmp_path, suffix) -> None:
    cfg = Outer(inner=Inner(dim=8, lr=0.5, name="sgd"), ks=(1, 2), path="x", flag=True)
    assert from_dict(Outer, to_dict(cfg)) == cfg
    save_config(cfg, tmp_path / f"c{suffix}")
    assert load_config(Outer, tmp_path / f"c{suffix}") == cfg


def test_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) inner.dimm; known: dim, lr, name"):
        from_dict(Outer, {"inner": {"dimm": 3}})
    with pytest.raises(ConfigError, match="inner.dim: expected int, got 'big'"):
        from_dict(Outer, {"inner": {"dim": "big"}})
    with pytest.raises(ConfigError, match="inner.name: 'rmsprop' is not one of"):
        from_dict(Outer, {"inner": {"name": "rmsprop"}})
    with pytest.raises(ConfigError, match="dim must be positive"):
        from_dict(Outer, {"inner": {"dim": -1}})
    with pytest.raises(ConfigError, match="flag: expected bool"):
        from_dict(Outer, {"flag": 1})


def test_overrides_are_coerced() -> None:
    cfg = apply_overrides(Outer(), ["inner.dim=16", "inner.lr=1e-3", "ks=[1, 5]", "path=null", "flag=true"])
    assert cfg == Outer(inner=Inner(dim=16, lr=0.001), ks=(1, 5), path=None, flag=True)
    with pytest.raises(ConfigError, match="unknown key 'inner.size'"):
        apply_overrides(Outer(), ["inner.size=3"])
    with pytest.raises(ConfigError, match="not of the form"):
        apply_overrides(Outer(), ["dim"])


def test_bad_file(tmp_path) -> None:
    (tmp_path / "c.yaml").write_text("inner: [unclosed\n")
    with pytest.raises(ConfigError, match="c.yaml: cannot read config"):
        load_config(Outer, tmp_path / "c.yaml")


def test_commented_yaml_loads_back_as_the_same_config(tmp_path) -> None:
    cfg = Outer(inner=Inner(dim=8, lr=1e-5, name="sgd"), ks=(), path="null", flag=True)
    text = to_commented_yaml(cfg)
    assert "# embedding dimension" in text and "(one of: adam, sgd)" in text
    (tmp_path / "c.yaml").write_text(text)
    assert load_config(Outer, tmp_path / "c.yaml") == cfg


AWKWARD = {"nested": {"a": [1, {"b": None}], "c": {}}, "empty": {}, "none": None, "list": [1, "2", [3]],
           "number": "1", "float": "1e-3", "bool": "true", "yes": "yes", "null": "null", "colon": "a: b # c",
           "brace": "{x}", "lines": "one\ntwo", "unicode": "r⁻¹", "blank": "", "int": 3, "inf": float("inf")}


@pytest.mark.parametrize("cfg", [
    PipelineConfig(),
    PipelineConfig(data=DataConfig(dataset="1.5", path="0", files=["true", "null", "~"]),
                   model=ModelConfig(name="transe", dim=8, inverse=False, args=AWKWARD, init="normal",
                                     init_args={"std": 1e-3}),
                   training=TrainingConfig(loss_args={"margin": 1.0}, regularizer=None, regularizer_args={},
                                           optimizer_args={"betas": [0.9, 0.99]}, min_delta=1e-12),
                   evaluation=EvaluationConfig(filter=[], memory_budget_mb=1)),
], ids=["defaults", "awkward"])
def test_printed_pipeline_config_round_trips_exactly(cfg: PipelineConfig) -> None:
    text = to_commented_yaml(cfg)
    sections = dataclasses.fields(cfg)
    assert len(text.splitlines()) == len(sections) + sum(len(dataclasses.fields(getattr(cfg, s.name)))
                                                         for s in sections)  # one line per key
    assert from_dict(PipelineConfig, yaml.safe_load(text)) == cfg


@pytest.mark.parametrize(("text", "kind"), [("[]\n", "list"), ("false\n", "bool"), ("0\n", "int"),
                                            ("- model\n", "list"), ("just text\n", "str")])
def test_a_config_file_must_be_a_mapping(tmp_path, text, kind) -> None:
    for name in ("c.yaml", "c.json"):
        if name.endswith(".json") and kind == "str":
            continue
        path = tmp_path / name
        path.write_text(text if name.endswith(".yaml") else json.dumps(yaml.safe_load(text)))
        with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: a config must be a mapping, got {kind}$"):
            load_config(PipelineConfig, path)


def test_an_empty_config_file_is_all_defaults(tmp_path) -> None:
    (tmp_path / "c.yaml").write_text("# nothing here yet\n")
    assert load_config(PipelineConfig, tmp_path / "c.yaml") == PipelineConfig()


@pytest.mark.parametrize("mb", [0, -1])
def test_memory_budget_must_be_positive(mb) -> None:
    with pytest.raises(ConfigError, match=rf"evaluation.memory_budget_mb must be positive, got {mb}"):
        EvaluationConfig(memory_budget_mb=mb)
    with pytest.raises(ConfigError, match="evaluation.memory_budget_mb must be positive"):
        apply_overrides(PipelineConfig(), [f"evaluation.memory_budget_mb={mb}"])


def test_exponents_without_a_dot_are_floats(tmp_path) -> None:
    """YAML 1.1 (PyYAML) reads 1e-3 as a string; as an argument of a free-form dict nothing would convert it."""
    cfg = apply_overrides(PipelineConfig(), ["model.args.p=1e0", "model.init=normal", "model.init_args.std=-2.5E-3",
                                             "training.lr=1e-3"])
    assert cfg.model.args == {"p": 1.0} and cfg.model.init_args == {"std": -0.0025} and cfg.training.lr == 0.001
    (tmp_path / "c.yaml").write_text("training:\n  optimizer_args: {weight_decay: 1e-5, eps: 1E+2}\n")
    assert load_config(PipelineConfig, tmp_path / "c.yaml").training.optimizer_args == {"weight_decay": 1e-5,
                                                                                        "eps": 100.0}
    quoted = PipelineConfig(model=ModelConfig(args={"name": "1e-3"}))  # a string that looks like one stays one
    save_config(quoted, tmp_path / "q.yaml")
    assert load_config(PipelineConfig, tmp_path / "q.yaml") == quoted
    assert from_dict(PipelineConfig, yaml.safe_load(to_commented_yaml(quoted))) == quoted


def test_checking_the_initializer_leaves_the_seeded_draws_alone() -> None:
    """The factory tries ``model.init`` on a scratch tensor (torch checks some arguments only then)."""
    torch.manual_seed(0)
    built = model_from_config(ModelConfig(dim=4, init="normal", init_args={"std": 0.5}), 5, 2)
    torch.manual_seed(0)
    init = INITIALIZERS.get("normal")(std=0.5)
    direct = build_model("complex", 5, 2, 4, inverse=True, entity_initializer=init, relation_initializer=init)
    for (name, a), b in zip(built.state_dict().items(), direct.state_dict().values()):
        assert torch.equal(a, b), name


def test_probing_the_built_model_draws_nothing_and_keeps_its_mode() -> None:
    """The factory scores one triple of every model it builds (a bad argument can show only there): the next
    random draw and the training mode are those of a model built without it."""
    torch.manual_seed(0)
    built = model_from_config(ModelConfig(name="conve", dim=8), 5, 2)
    after_built = torch.rand(3)
    torch.manual_seed(0)
    build_model("conve", 5, 2, 8, inverse=True)
    assert built.training and torch.equal(after_built, torch.rand(3))


@pytest.mark.parametrize(("name", "args", "problem"), [
    ("transe", {"p": -1.0}, "model.args: transe: "),
    ("conve", {"num_filters": 0}, "model.args: conve: "),
])
def test_an_argument_that_fails_only_when_scoring_is_a_config_error_at_build(name, args, problem) -> None:
    with pytest.raises(ConfigError, match=problem):
        model_from_config(ModelConfig(name=name, dim=8, args=args), 5, 2)


@pytest.mark.parametrize("name", INTERACTIONS.names())
def test_every_models_own_defaults_pass_the_argument_check(name) -> None:
    params = inspect.signature(INTERACTIONS.get(name).__init__).parameters.values()
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    assert checked("model.args", name, {**defaults, "normalize": "step"}, model_arguments(name)) == \
        {**defaults, "normalize": "step"}


def test_rgcn_takes_its_encoder_and_decoder_arguments() -> None:
    args = {"decoder": "distmult", "decoder_args": {}, "num_layers": 1, "num_bases": 2, "edge_dropout": 0.0}
    assert checked("model.args", "rgcn", args, model_arguments("rgcn")) == args
    with pytest.raises(ConfigError, match="model.args.layers: rgcn takes no argument 'layers'; known: decoder, "):
        checked("model.args", "rgcn", {"layers": 1}, model_arguments("rgcn"))


def test_overrides_reach_new_keys_nested_inside_a_free_form_dict_but_not_new_sections() -> None:
    cfg = apply_overrides(PipelineConfig(), ["tracking.trackers=[mlflow]",
                                             "tracking.args.mlflow.tracking_uri=sqlite:///x.db", "model.args.p=1"])
    assert cfg.tracking.args == {"mlflow": {"tracking_uri": "sqlite:///x.db"}} and cfg.model.args == {"p": 1}
    for override in ("model.foo.bar=1", "model.dim.bar=1", "nosection.key=1"):
        with pytest.raises(ConfigError, match="is not a config section"):
            apply_overrides(PipelineConfig(), [override])
