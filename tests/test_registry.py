from __future__ import annotations

import pytest

from kgem.errors import ConfigError
from kgem.registry import Registry


def test_register_get_and_errors() -> None:
    reg: Registry[type] = Registry("loss")

    @reg.register("Margin")
    class Margin:
        pass

    assert reg.get("margin") is Margin and "MARGIN" in reg and reg.names() == ["margin"] and len(reg) == 1
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("margin")(int)
    with pytest.raises(ConfigError, match="unknown loss 'margn'; known: margin. Did you mean margin"):
        reg.get("margn")


def test_an_unknown_model_gets_the_registries_message_with_builders_and_interactions() -> None:
    """Models come from two places (interactions and builders); the hint looks at both."""
    from kgem.models import model_info

    with pytest.raises(ConfigError, match=r"unknown model 'rgcm'; known: .*distmult.*rgcn.*\. Did you mean rgcn\?"):
        model_info("rgcm")
    with pytest.raises(ConfigError, match=r"Did you mean transe"):
        model_info("TransEE")


def test_every_interaction_a_models_file_defines_is_registered() -> None:
    """Adding a model is one file: a class that is neither registered nor a base of registered ones is a mistake
    (it would never reach `kgem models`, the config or the test harness)."""
    import importlib
    import inspect
    import pkgutil

    import kgem.models
    from kgem.models.interaction import INTERACTIONS, Interaction

    registered = {INTERACTIONS.get(name) for name in INTERACTIONS.names()}
    lost = []
    for module in pkgutil.iter_modules(kgem.models.__path__, "kgem.models."):
        for name, cls in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if (issubclass(cls, Interaction) and cls.__module__ == module.name and cls not in registered
                    and not any(issubclass(other, cls) for other in registered)):
                lost.append(f"{module.name}.{name}")
    assert not lost


def test_a_model_with_a_builder_of_its_own_registers_like_any_model(monkeypatch) -> None:
    """The door R-GCN and the random baseline use: no string case anywhere else knows their names."""
    from kgem.cli.info import models_table
    from kgem.factory import model_arguments
    from kgem.models import model_names
    from kgem.models.builders import BUILDERS, ModelInfo
    from kgem.models.model import interaction_model
    from kgem.pipeline import pipeline

    def tiny(num_entities: int, num_relations: int, dim: int, *, width: int = 4, **common: object) -> object:
        return interaction_model("distmult", num_entities, num_relations, width, inverse=bool(common["inverse"]))

    monkeypatch.setitem(BUILDERS, "tiny", ModelInfo(build=tiny, entities="real", relations="real", normalize="none",
                                                    reference="a test", arguments=((tiny, ()),)))
    assert "tiny" in model_names() and models_table().loc["tiny", "arguments"] == "width=4"
    assert set(model_arguments("tiny")) == {"width", "normalize"}
    result = pipeline(overrides=["model.name=tiny", "model.args.width=6", "training.epochs=1"], progress=False)
    assert result.model.entity.weight.shape[1] == 6 and result.evaluation is not None  # its own argument, trained
