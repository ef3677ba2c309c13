"""Shipped recipes: every catalogue entry has a config that builds and trains, the numbers are well-formed, and the
command line lists, shows and runs them."""

from __future__ import annotations

import dataclasses
import importlib
import math

import pytest

import kgem
from kgem.cli import main
from kgem.errors import ConfigError
from kgem.pipeline import resolve_config
from kgem.recipes import HERE, METRICS, markdown_table, recipe, recipes, recipes_table

NAMES = [r.name for r in recipes()]
DATASETS = {"fb15k237", "wn18rr", "yago3-10", "codex-l"}
MODELS = {"ComplEx-N3", "ComplEx-N3 + relation prediction", "RotatE", "TuckER", "TransE"}


def test_every_config_file_is_in_the_catalogue_and_back() -> None:
    files = {p.stem for p in (HERE / "configs").glob("*.yaml")}
    assert files == set(NAMES)


def test_the_published_recipes_cover_every_dataset_and_model() -> None:
    pairs = {(r.dataset, r.model) for r in recipes()}
    assert {(d, m) for d in DATASETS for m in MODELS} <= pairs


@pytest.mark.parametrize("name", NAMES)
def test_numbers_are_well_formed(name) -> None:
    r = recipe(name)
    for numbers in (r.published, r.measured):
        if numbers:
            assert all(0 < numbers[m] <= 1 for m in METRICS if m in numbers), numbers
            assert numbers.get("hits@1", 0) <= numbers.get("hits@10", 1)
    if r.published:
        assert r.published_by and "mrr" in r.published
    if r.measured:  # a measurement says what it took and where
        assert {"mrr", "hits@10", "minutes", "epochs", "hardware", "command"} <= set(r.measured)
        assert r.measured["command"].startswith("kgem train --recipe " + name)
        epochs = r.config()["training"]["epochs"]  # a partial run stopped short of them; a complete one did not overrun
        assert r.measured["epochs"] < epochs if r.measured.get("partial") else r.measured["epochs"] <= epochs


@pytest.mark.parametrize("name", NAMES)
def test_every_recipe_builds_and_trains_an_epoch(name) -> None:
    """The recipe's own settings (model arguments, loss, sampler, optimizer, scheduler, regularizer) on a small
    graph at a small dimension and with few negatives: a config that only fails when built would fail here."""
    # retain_memory changes glibc's settings for the rest of this process (other tests measure its memory): off here
    small = ["data.dataset=umls", "model.dim=8", "training.epochs=1", "training.batch_size=512",
             "training.retain_memory=false"]
    cfg = resolve_config(recipe(name).config(), small)
    if cfg.training.approach == "slcwa":
        cfg = resolve_config(cfg, ["training.num_negatives=8"])
    assert cfg.data.dataset == "umls" and recipe(name).dataset in DATASETS | {"fb15k237", "wn18rr"}
    result = kgem.pipeline(cfg, progress=False)
    assert result.evaluation is not None and math.isfinite(result.evaluation.mrr)
    assert len(result.history.losses) == 1 and math.isfinite(result.history.losses[0])


def test_tables() -> None:
    table = recipes_table()
    assert list(table.index) == NAMES
    assert table.loc["fb15k237-complex-rp", "published mrr"] == pytest.approx(0.388)
    assert math.isnan(table.loc["yago3-10-transe", "published mrr"])
    full = recipes_table(full=True)
    assert {"published hits@3", "measured hits@1", "hardware", "source"} <= set(full.columns)
    lines = markdown_table().splitlines()
    assert len(lines) == 2 + len(NAMES)
    assert all(line.count("|") == 8 for line in lines)


def test_unknown_recipe_names_the_close_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown recipe 'fb15k237-complx'; did you mean fb15k237-complex"):
        recipe("fb15k237-complx")


def test_cli_lists_shows_and_trains(tmp_path, capsys) -> None:
    main(["recipes"])
    out = capsys.readouterr().out
    assert all(name in out for name in NAMES)
    main(["recipes", "wn18rr-complex-rp"])
    out = capsys.readouterr().out
    assert "Chen et al. 2021" in out and "relation_prediction: 0.05" in out and "published: mrr 0.488" in out
    main(["recipes", "--markdown"])
    assert capsys.readouterr().out.startswith("| recipe |")
    run = tmp_path / "run"
    main(["train", "--recipe", "fb15k237-complex-rp", "--dataset", "nations", "--dim", "8", "--epochs", "2",
          "--output", str(run), "-q"])
    saved = resolve_config(str(run / "config.yaml"))
    assert saved.training.relation_prediction == 4.0 and saved.training.batch_size == 1000
    assert saved.data.dataset == "nations" and saved.model.dim == 8


def test_cli_refuses_recipe_and_config_together(tmp_path, capsys) -> None:
    assert main(["train", "--recipe", "fb15k237-complex", "--config", str(tmp_path / "x.yaml")]) == 2
    assert "--recipe and --config" in capsys.readouterr().err


def test_the_readme_shows_the_current_table() -> None:
    """The README's table is ``kgem recipes --markdown`` as it is now: a recipe measured or added updates both."""
    readme = (HERE.parents[2] / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme


def test_a_partial_run_says_how_far_it_got(monkeypatch) -> None:
    """A paper recipe stopped by a time budget is a measured row that says so: its epochs out of the recipe's."""
    module = importlib.import_module("kgem.recipes")  # the module: kgem.recipes is also the function kgem exports
    measured = {"mrr": 0.3, "hits@10": 0.5, "minutes": 85.0, "epochs": 160, "hardware": "a CPU", "partial": True,
                "command": "kgem train --recipe fb15k237-transe --time-budget 85m"}
    entries = dict(module.catalog())
    entries["fb15k237-transe"] = dataclasses.replace(entries["fb15k237-transe"], measured=measured)
    monkeypatch.setattr(module, "catalog", lambda: entries)
    row = next(line for line in markdown_table().splitlines() if "`fb15k237-transe`" in line)
    assert row.endswith("| 0.300 | 0.500 | 85 min, 160 of 400 epochs, a CPU |")
    assert not recipes_table(full=True).loc["fb15k237-transe", "complete"]
    assert recipes_table(full=True).loc["fb15k237-complex-cpu20m", "complete"]
