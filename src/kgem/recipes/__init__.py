"""Recipes: shipped training configs that follow a published model's settings, and fast ones for a CPU budget.

Each recipe is a normal config file (``configs/NAME.yaml``: ``kgem train --recipe NAME`` runs it, ``kgem recipes
NAME`` prints it, and any flag overrides it). ``catalog.yaml`` says what each one is: the work it follows, the
filtered test metrics that work published (none where it published none), and what a kgem run of it measured,
with the time it took and the hardware it ran on (none until it has been run to completion).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from kgem.errors import ConfigError

HERE = Path(__file__).parent
METRICS = ("mrr", "hits@1", "hits@3", "hits@10")


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str  # as the literature names it, e.g. "ComplEx-N3 + relation prediction"
    source: str  # the work (and its settings) the config follows
    published: dict[str, float] | None  # filtered test metrics the source reports
    published_by: str | None  # where those numbers are printed
    measured: dict[str, Any] | None  # a kgem run: metrics, minutes, epochs, hardware, command, and partial if cut short
    notes: str | None

    @property
    def path(self) -> Path:
        """The config file."""
        return HERE / "configs" / f"{self.name}.yaml"

    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    def config(self) -> dict[str, Any]:
        """The config as a dict (``kgem.pipeline(recipe.config())`` trains it)."""
        loaded = yaml.safe_load(self.text())
        assert isinstance(loaded, dict)
        return loaded

    @property
    def dataset(self) -> str:
        return str(self.config()["data"]["dataset"])


@cache
def catalog() -> dict[str, Recipe]:
    entries = yaml.safe_load((HERE / "catalog.yaml").read_text(encoding="utf-8"))
    return {name: Recipe(name=name, model=e["model"], source=e["source"], published=e.get("published"),
                         published_by=e.get("published_by"), measured=e.get("measured"), notes=e.get("notes"))
            for name, e in entries.items()}


def recipe(name: str) -> Recipe:
    """The recipe called ``name``; an unknown name is a ConfigError naming the closest ones."""
    known = catalog()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; 'kgem recipes' lists them"
        raise ConfigError(f"unknown recipe {name!r}{hint}")
    return known[name]


def recipes() -> list[Recipe]:
    return list(catalog().values())


def recipes_table(full: bool = False) -> pd.DataFrame:
    """One row per recipe: dataset, model, published and measured test MRR (``full``: every metric, the time, the
    hardware and the sources)."""
    rows = []
    for r in recipes():
        row: dict[str, Any] = {"recipe": r.name, "dataset": r.dataset, "model": r.model}
        measured = r.measured or {}
        for metric in METRICS if full else ("mrr", "hits@10"):
            row[f"published {metric}"] = (r.published or {}).get(metric)
            row[f"measured {metric}"] = measured.get(metric)
        row["minutes"] = measured.get("minutes")
        if full:
            row |= {"epochs": measured.get("epochs"), "complete": bool(measured) and not measured.get("partial"),
                    "hardware": measured.get("hardware"), "source": r.source,
                    "published by": r.published_by, "notes": r.notes}
        rows.append(row)
    table = pd.DataFrame(rows).set_index("recipe")
    numeric = [c for c in table.columns if c.startswith(("published ", "measured ")) and c != "published by"]
    return table.astype({c: float for c in [*numeric, "minutes"]})  # a missing number is NaN, not None


def _partial(r: Recipe, measured: dict[str, Any]) -> str:
    """', 160 of 400 epochs' for a run a time budget stopped before the recipe's end; '' for a complete one."""
    if not measured.get("partial"):
        return ""
    return f", {measured['epochs']} of {r.config()['training']['epochs']} epochs"


def markdown_table() -> str:
    """The README's table: each recipe's published and measured MRR / Hits@10, and how long the measured run took
    on what; '—' where there is no number."""
    def num(x: Any) -> str:
        return "—" if x is None else f"{x:.3f}"

    lines = ["| recipe | model | published MRR | H@10 | measured MRR | H@10 | time, hardware |",
             "|---|---|---|---|---|---|---|"]
    for r in recipes():
        p, m = r.published or {}, r.measured or {}
        run = f"{m['minutes']:g} min{_partial(r, m)}, {m['hardware']}" if m else "not run here yet"
        lines.append(f"| `{r.name}` | {r.model} | {num(p.get('mrr'))} | {num(p.get('hits@10'))} | "
                     f"{num(m.get('mrr'))} | {num(m.get('hits@10'))} | {run} |")
    return "\n".join(lines)
