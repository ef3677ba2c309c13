"""The package's layers (README, Layout): a module imports only from its own layer or the layers above it."""

from __future__ import annotations

import ast
from pathlib import Path

import kgem

ROOT = Path(kgem.__file__).parent
LAYERS = [
    {"errors", "version", "registry", "atomic", "lock", "checks", "ops"},
    {"data"},
    {"models", "circuits"},
    {"training"},
    {"evaluation"},
    {"inference"},
    {"configs", "config", "factory", "pretrained", "pipeline", "saving", "cli", "tracking", "hpo", "plots", "demo",
     "serve", "recipes", "__init__", "__main__"},
]


def layer(top: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if top in names)


def imported_tops(path: Path) -> set[str]:
    """The top-level kgem modules ``path`` imports, lazily inside functions included."""
    tops = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "kgem":
            parts = node.module.split(".")
            tops |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            tops |= {a.name.split(".")[1] for a in node.names if a.name.startswith("kgem.")}
    return tops


def test_no_module_imports_from_a_lower_layer() -> None:
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        top = path.relative_to(ROOT).parts[0].removesuffix(".py")
        for name in imported_tops(path):
            if name in {n for names in LAYERS for n in names} and layer(name) > layer(top):
                upward.append(f"{path.relative_to(ROOT)} imports kgem.{name}")
    assert not upward


def test_every_module_has_a_layer() -> None:
    tops = {p.relative_to(ROOT).parts[0].removesuffix(".py") for p in ROOT.glob("*") if p.suffix == ".py" or
            (p.is_dir() and (p / "__init__.py").exists())}
    assert tops <= {n for names in LAYERS for n in names}


def test_kgem_imports_are_hoisted() -> None:
    """The package imports all of itself anyway (``import kgem``), so an import inside a function saves nothing and
    only hides a dependency (or a circle) from the top of the file."""
    inside = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside += [f"{path.relative_to(ROOT)}:{n.lineno}" for n in ast.walk(node)
                           if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("kgem")]
    assert not inside


def test_nothing_cites_the_design_notes_outside_the_repo() -> None:
    """Users never see the team's notes beside the checkout: code and docs say what they mean instead."""
    repo = ROOT.parents[1]
    files = [*ROOT.rglob("*.py"), *(repo / "tests").rglob("*.py"), *(repo / "bench").rglob("*.py"),
             *repo.glob("*.md"), *(repo / "bench").glob("*.md")]
    files = [p for p in files if not any(part.startswith(".") or part == "out" for part in p.relative_to(repo).parts)]
    cited = [str(p.relative_to(repo)) for p in files if any(
        note in p.read_text(encoding="utf-8") for note in ("STYLE" + ".md", "DESIGN" + ".md", "GEKC" + ".md"))]
    assert not cited


def module_imports() -> dict[str, set[str]]:
    """Each kgem module's top-level kgem imports, as module names (``from kgem.models import x`` names the
    submodule ``kgem.models.x`` if there is one, else the package)."""
    files = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kgem"):
                deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else str(node.module)
                         for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("kgem")}
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def test_no_import_circles() -> None:
    """No module reaches itself through the imports of others (a circle breaks as soon as its first module is
    imported from another entry point)."""
    graph = module_imports()

    def reaches(start: str) -> set[str]:
        seen, todo = set(), list(graph[start])
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(graph[name])
        return seen

    assert not [name for name in sorted(graph) if name in reaches(name)]
