"""Registries by name: a dict and a decorator, one registry per kind; an unknown name lists
the known ones."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from kgem.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (usually classes) of one kind, e.g. interactions or losses."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name`` (lower-cased); a duplicate is an error."""
        key = name.lower()

        def decorate(obj: T) -> T:
            if key in self._items:
                raise ConfigError(f"{self.kind} {name!r} is already registered")
            self._items[key] = obj
            return obj

        return decorate

    def get(self, name: str) -> T:
        """Return the object registered as ``name``; an unknown name lists the known ones."""
        try:
            return self._items[name.lower()]
        except KeyError:
            raise unknown(self.kind, name, self._items) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def unknown(kind: str, name: str, known: Iterable[str]) -> ConfigError:
    """The error for an unknown ``name`` of ``kind``: the known names, and the closest ones as a hint."""
    names = sorted(known)
    close = difflib.get_close_matches(name.lower(), names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown {kind} {name!r}; known: {', '.join(names)}.{hint}")
