from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from kgem.config import apply_overrides, from_dict, help_field, load_config, save_config, to_dict
from kgem.errors import ConfigError


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
