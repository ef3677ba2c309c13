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
