"""User-facing errors live in one module that imports nothing, so every layer raises them without import circles."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil

import kgem
from kgem.errors import KgemError


def all_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(kgem.__path__, "kgem.") if not m.name.endswith("__main__")]


def test_every_user_facing_error_is_defined_in_kgem_errors() -> None:
    elsewhere = set()
    for name in all_modules():
        for _, cls in inspect.getmembers(importlib.import_module(name), inspect.isclass):
            if issubclass(cls, KgemError) and cls.__module__ != "kgem.errors":
                elsewhere.add(f"{cls.__module__}.{cls.__qualname__}")
    assert not elsewhere


def test_errors_and_version_import_nothing() -> None:
    """So that any module can import them, and importing them closes no circle."""
    import kgem.errors
    import kgem.version

    for module in (kgem.errors, kgem.version):
        tree = ast.parse(inspect.getsource(module))
        imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
        assert all(isinstance(node, ast.ImportFrom) and node.module == "__future__" for node in imports), module


def test_the_version_is_the_installed_distributions() -> None:
    from importlib.metadata import version

    assert kgem.__version__ == version("kgem")
