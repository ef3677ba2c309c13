"""Typed, frozen config dataclasses: to/from dict, YAML/JSON files and ``a.b=c`` overrides.

Config stops at the factories: modules receive plain arguments, never a config object.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from kgem.atomic import atomic_write
from kgem.errors import ConfigError

C = TypeVar("C")


def help_field(default: Any, help: str, **kwargs: Any) -> Any:  # noqa: A002 - 'help' is the metadata key
    """A dataclass field with a default and a help string (shown by the CLI)."""
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict (nested for nested configs, tuples as lists) ready for YAML or JSON."""
    return typing.cast(dict[str, Any], _plain(cfg))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def to_commented_yaml(cfg: Any) -> str:
    """The config as YAML with each field's help (and a Literal's choices) as a comment: a config file to start
    from, which ``load_config`` reads back as exactly ``cfg``."""
    return "\n".join(_commented_lines(cfg, "")) + "\n"


def _commented_lines(cfg: Any, indent: str) -> Iterator[str]:
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        comment = _comment(f, hints[f.name])
        if dataclasses.is_dataclass(value):
            yield f"{indent}{f.name}:{comment}"
            yield from _commented_lines(value, indent + "  ")
        else:
            yield f"{indent}{f.name}: {yaml_value(_plain(value))}{comment}"


def _comment(f: dataclasses.Field[Any], tp: Any) -> str:
    members = typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)
    choices = [c for m in members if typing.get_origin(m) is Literal for c in typing.get_args(m)]
    if choices and type(None) in members:
        choices.append("null")
    text = " ".join(str(f.metadata.get("help", "")).split())
    if choices:
        text += f" (one of: {', '.join(map(str, choices))})"
    return f"  # {text.strip()}" if text.strip() else ""


# YAML 1.2 and JSON read 1e-3 as a float, PyYAML (YAML 1.1) as a string unless written 1.0e-3: config files and
# overrides read it as a float, and a string that looks like one is written quoted.
EXPONENT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-3`` as a float."""


class Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting strings that ``Loader`` reads as floats, and double-quoting strings with line
    breaks (escaped) so that a flow-style value stays on one line."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = '"' if any(c in text for c in "\n\r\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


for _cls in (Loader, Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT, list("-+0123456789."))
Dumper.add_representer(str, _represent_str)


def yaml_value(value: Any) -> str:
    """``value`` as YAML on one line that ``Loader`` reads back as the same value: flow style for collections
    (``{}``, ``[]`` when empty), no line folding, a string that would read as something else quoted, nan and inf
    as ``.nan`` and ``.inf``."""
    text = yaml.dump(value, Dumper=Dumper, default_flow_style=True, width=math.inf, allow_unicode=True)
    text = text.rstrip("\n").removesuffix("\n...")  # a top-level plain scalar ends its document with "..."
    assert "\n" not in text, text
    return text


def from_dict(cls: type[C], data: Mapping[str, Any], where: str = "") -> C:
    """Build ``cls`` from a dict; unknown keys and values of the wrong type raise ConfigError naming the key."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(where + k for k in unknown)}; "
                          f"known: {', '.join(sorted(fields))}")
    values = {k: coerce(v, hints[k], f"{where}{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{where or cls.__name__}: {e}") from e


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert where lossless (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for arg in args:
            try:
                return coerce(value, arg, key)
            except ConfigError as e:
                errors.append(e)
        others = [i for i, arg in enumerate(args) if arg is not type(None)]
        if len(others) == 1 and value is not None:  # X | None: X's own complaint
            raise errors[others[0]]
        raise ConfigError(f"{key}: {value!r} matches none of {' | '.join(map(_type_name, args))}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else from_dict(tp, value, f"{key}.")  # type: ignore[arg-type]
    if origin in (tuple, list, Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
            items = [coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            items = [coerce(v, args[0] if args else Any, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is not list else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {k: coerce(v, args[1] if args else Any, f"{key}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        hint = " (YAML writes infinity and not-a-number as .inf and .nan)" if str(value).lower().lstrip(
            "+-") in ("inf", "infinity", "nan") and tp is float else ""
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}{hint}")
    return value


def _type_name(tp: Any) -> str:
    return "null" if tp is type(None) else getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def save_config(cfg: Any, path: str | os.PathLike[str]) -> None:
    """Write a config as JSON (``.json``) or YAML (anything else), atomically."""
    path = Path(path)
    data = to_dict(cfg)
    text = json.dumps(data, indent=2) + "\n" if path.suffix == ".json" else \
        yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True)
    with atomic_write(path) as f:
        f.write(text)


def load_config(cls: type[C], path: str | os.PathLike[str]) -> C:
    """Read a config written by ``save_config`` (or by hand) from YAML or JSON."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=Loader)  # Loader: a SafeLoader
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from e
    if data is None:  # an empty file (or only comments): all defaults
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: a config must be a mapping, got {type(data).__name__}")
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e


def apply_overrides(cfg: C, overrides: Sequence[str]) -> C:
    """Apply ``a.b=c`` overrides; ``c`` is parsed as YAML and checked against the field's type. Keys inside a
    free-form dict field (``model.args.p=1``, ``tracking.args.mlflow.tracking_uri=...``) may be new, nested too; keys of
    config sections must exist."""
    data = to_dict(cfg)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        node, obj = data, typing.cast(Any, cfg)
        *parents, leaf = key.split(".")
        for part in parents:
            if part not in node and not dataclasses.is_dataclass(obj):  # a new key inside a free-form dict
                node[part] = {}
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a config section")
            node = node[part]
            obj = getattr(obj, part) if dataclasses.is_dataclass(obj) else None
        if leaf not in node and dataclasses.is_dataclass(obj):
            raise ConfigError(f"override {item!r}: unknown key {key!r}; known here: {', '.join(sorted(node))}")
        try:
            node[leaf] = yaml.load(raw, Loader=Loader) if raw else ""  # Loader: a SafeLoader
        except yaml.YAMLError:
            node[leaf] = raw
    return from_dict(type(cfg), data)
