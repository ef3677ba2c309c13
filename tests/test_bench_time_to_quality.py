"""bench/time_to_quality.py: a real kgem side on Nations for a few seconds (the PyKEEN side needs its own
environment, which compare_pykeen's tests cover), failures reported as failures, and the summary."""

from __future__ import annotations

import json

import kgem
from bench_script import load_bench

ttq = load_bench("time_to_quality.py", "bench_time_to_quality")


def test_budget_text() -> None:
    assert [ttq.seconds(t) for t in ("90", "90s", "20m", "1.5h")] == [90.0, 90.0, 1200.0, 5400.0]


def test_the_default_recipe_is_the_fast_one_for_the_budget() -> None:
    chosen = {budget: ttq.parse_args(["--budget", budget]).recipe for budget in ("5m", "20m", "59m", "60m", "2h")}
    assert chosen == {"5m": "fb15k237-complex-cpu20m", "20m": "fb15k237-complex-cpu20m",
                      "59m": "fb15k237-complex-cpu20m", "60m": "fb15k237-complex-cpu60m",
                      "2h": "fb15k237-complex-cpu60m"}
    assert ttq.parse_args(["--budget", "1h", "--recipe", "fb15k237-transe"]).recipe == "fb15k237-transe"
    for recipes, _ in ttq.DEFAULTS.values():  # each names a shipped recipe whose budget ends within its minutes
        assert all(ttq.seconds(kgem.recipe(name).config()["training"]["time_budget"]) < minutes * 60
                   for minutes, name in recipes.items())


def test_pykeen_experiment_is_a_file_a_mirror_or_one_of_pykeens(tmp_path) -> None:
    python = tmp_path / "env" / "bin" / "python"
    experiments = tmp_path / "env" / "lib" / "python3.12" / "site-packages" / "pykeen" / "experiments"
    experiments.mkdir(parents=True)
    own = tmp_path / "mine.json"
    own.write_text("{}")
    assert ttq.experiment_file(str(own), python) == own.resolve()
    for dataset, (_, name) in ttq.DEFAULTS.items():  # every default is a shipped mirror of kgem's recipe
        found = ttq.experiment_file(name, python)
        assert found == (ttq.MIRRORS / name).resolve(), dataset
        assert json.loads(found.read_text())["pipeline"]["model"] == "ComplEx"
    assert ttq.experiment_file("tucker/x.json", python) == experiments / "tucker" / "x.json"


def test_kgem_side_runs_the_recipe_for_the_budget(tmp_path, capsys) -> None:
    result = ttq.main(["--quick", "--budget", "0.3s", "--sides", "kgem", "--threads", "1", "--out", str(tmp_path)])
    assert result["budget_seconds"] == 0.3
    (record,) = result["records"]
    assert record["status"] == "ok", record
    assert record["recipe"] == "fb15k237-complex-cpu20m" and record["epochs"] >= 1
    assert 0 < record["test"]["mrr"] <= 1 and record["curve"]
    times = [point["seconds"] for point in record["curve"]]
    assert times == sorted(times) and len(times) == record["epochs"]
    if times[-1] >= 0.3:  # stopped by the budget (not by early stopping): at the first epoch boundary past it
        assert len(times) == 1 or times[-2] < 0.3
    summary = result["summary"]["kgem"]
    assert summary["runs"] == 1 and summary["median test mrr"] == record["test"]["mrr"]
    saved = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert saved["records"][0]["test"] == record["test"]
    assert next(tmp_path.glob("*.png")).stat().st_size > 1000
    assert json.loads(capsys.readouterr().out)["dataset"] == "nations"


def test_a_failing_side_is_reported_as_failed(tmp_path) -> None:
    result = ttq.main(["--quick", "--budget", "2s", "--sides", "kgem", "--recipe", "no-such-recipe", "--out",
                       str(tmp_path)])
    (record,) = result["records"]
    assert record["status"] == "failed" and "unknown recipe" in record["error"] and "test" not in record
    assert result["summary"]["kgem"] == {"runs": 0, "failed": 1}


def test_each_mirror_carries_its_recipes_hyper_parameters() -> None:
    for dataset in ("fb15k237", "wn18rr"):
        recipes, name = ttq.DEFAULTS[dataset]
        config = kgem.recipe(recipes[20]).config()
        training, model = config["training"], config["model"]
        pipeline = json.loads((ttq.MIRRORS / name).read_text())["pipeline"]
        assert pipeline["dataset"] == dataset and pipeline["model"].lower() == model["name"]
        assert pipeline["model_kwargs"]["embedding_dim"] == model["dim"]
        assert pipeline["dataset_kwargs"]["create_inverse_triples"] == model["inverse"]
        assert pipeline["optimizer"].lower() == training["optimizer"] and pipeline["optimizer_kwargs"]["lr"] == \
            training["lr"]
        assert pipeline["training_kwargs"]["batch_size"] == training["batch_size"]
        regularizer = pipeline["model_kwargs"]["regularizer_kwargs"]
        assert training["regularizer"] == "n3" and regularizer["p"] == 3
        assert regularizer["weight"] == training["regularizer_args"]["weight"]
