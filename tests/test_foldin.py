"""Fold-in (``LoadedModel.extend``, ``kgem extend``): new entities and relations get rows, initialised from their
analogues (checked against brute force) and fitted while every old row is frozen, so old scores stay bit-identical;
the fitted rows rank their triples far above random rows; unfreeze trains everything; what cannot grow is refused."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bench_script import load_bench
from kgem.circuits.model import CircuitModel
from kgem.circuits.registry import build_circuit
from kgem.cli import main
from kgem.configs import TrainingConfig
from kgem.data import Dataset, Triples, Vocabulary, load_dataset
from kgem.errors import ConfigError, DataError
from kgem.evaluation import evaluate
from kgem.models import build_model
from kgem.pipeline import pipeline
from kgem.saving import LoadedModel, load_model, save_model
from kgem.training import foldin

E, R, D = 12, 3, 8
ENTITIES = Vocabulary([f"e{i:02d}" for i in range(E)], kind="entity")
RELATIONS = Vocabulary([f"r{i}" for i in range(R)], kind="relation")
# x and y are new entities, q a new relation; z, w and s only meet each other and new relations (never reached)
NEW = [("x", "r0", "e01"), ("e02", "r1", "x"), ("y", "r2", "x"), ("e03", "q", "e04"), ("e05", "q", "e06"),
       ("z", "s", "w"), ("e07", "r0", "e08")]


def saved(tmp_path: Path, name: str = "distmult", inverse: bool = True, **args: Any) -> LoadedModel:
    torch.manual_seed(0)
    model = build_model(name, E, R, D, inverse=inverse, **args)
    spec = {"name": name, "dim": D, "inverse": inverse, "args": args}
    return load_model(save_model(model, tmp_path / f"{name}-{inverse}", entities=ENTITIES, relations=RELATIONS,
                                 spec=spec))


def all_scores(model: torch.nn.Module) -> list[torch.Tensor]:
    """Every old triple's score, and every old query's scores of the old entities (tails and heads)."""
    h, r, t = torch.meshgrid(torch.arange(E), torch.arange(R), torch.arange(E), indexing="ij")
    hrt = torch.stack([h.flatten(), r.flatten(), t.flatten()], 1)
    queries = hrt[::E]
    with torch.no_grad():
        return [model.score_hrt(hrt), model.score_t(queries[:, 0], queries[:, 1])[:, :E],
                model.score_h(queries[:, 1], queries[:, 0])[:, :E]]


def relation_scores(model: torch.nn.Module) -> torch.Tensor:
    """Every old pair's scores of the old relations."""
    h, t = torch.meshgrid(torch.arange(E), torch.arange(E), indexing="ij")
    with torch.no_grad():
        return model.score_r(h.flatten(), t.flatten())[:, :R]


@pytest.mark.parametrize(("name", "inverse", "args"), [("distmult", True, {}), ("complex", False, {}),
                                                       ("transe", True, {}), ("transe", False, {"normalize": "step"}),
                                                       ("rotate", False, {}),
                                                       ("tucker", True, {"relation_dim": 4}), ("conve", True, {})])
def test_old_scores_are_bit_identical_and_the_source_is_untouched(tmp_path, name, inverse, args) -> None:
    loaded = saved(tmp_path, name, inverse, **args)
    before = all_scores(loaded.model)
    weights = {key: value.clone() for key, value in loaded.model.state_dict().items()}
    grown = loaded.extend(NEW, steps=20)
    assert (grown.model.num_entities, grown.model.num_relations) == (E + 4, R + 2)
    assert list(grown.entities.labels[:E]) == list(ENTITIES.labels)
    assert list(grown.entities.labels[E:]) == ["w", "x", "y", "z"] and list(grown.relations.labels[R:]) == ["q", "s"]
    for old, new in zip(before, all_scores(grown.model), strict=True):
        assert torch.equal(old, new)
    # all relations are scored in one product, whose shape (so its summation order) grows with the relations
    torch.testing.assert_close(relation_scores(grown.model), relation_scores(loaded.model), rtol=1e-6, atol=1e-7)
    assert all(torch.equal(value, weights[key]) for key, value in loaded.model.state_dict().items())
    assert loaded.model.num_entities == E and grown.model.training is False
    if args.get("normalize") == "step":  # the constraint holds on the fitted rows too
        norms = torch.linalg.vector_norm(grown.model.entity.weight[E:].detach(), dim=1)
        torch.testing.assert_close(norms, torch.ones(4))


@pytest.mark.parametrize("approach", ["slcwa", "kvsall", "1vsall"])
def test_each_approach_fits_the_new_rows(tmp_path, approach) -> None:
    loaded = saved(tmp_path)
    objective = foldin.Objective(approach=approach, loss="softplus" if approach == "slcwa" else "bce",
                                 num_negatives=4, batch_size=4)
    grown = foldin.extend(loaded.model, loaded.spec, loaded.entities, loaded.relations, NEW, objective=objective,
                          steps=100, lr=0.05)
    assert grown.report["final_loss"] < grown.report["first_loss"]
    assert grown.report["triples_touching_new"] == 6 and grown.model.num_relations == R + 2


def test_new_rows_start_as_their_analogues_found_by_brute_force(tmp_path) -> None:
    loaded = saved(tmp_path, inverse=False)
    model = loaded.model
    start = loaded.extend(NEW, steps=0).model
    rows, relation_rows = start.entity.weight, start.relation.weight
    fresh = loaded.extend(NEW, steps=0, init="random").model
    ids = {label: i for i, label in enumerate(["w", "x", "y", "z"], start=E)}

    def log_softmax(triples: list[tuple[int, int, int]]) -> torch.Tensor:
        with torch.no_grad():
            return torch.log_softmax(model.score_hrt(torch.tensor(triples)), 0)

    old = range(E)
    # x: (x, r0, e01) and (e02, r1, x): the old entity c maximising log p(c | r0, e01) + log p(c | e02, r1)
    x = int(torch.argmax(log_softmax([(c, 0, 1) for c in old]) + log_softmax([(2, 1, c) for c in old])))
    assert torch.equal(rows[ids["x"]], model.entity.weight[x])
    # y: (y, r2, x) reaches y in the second round, x's row being its analogue's by then
    with torch.no_grad():
        y_scores = model.interaction(model.entity.weight, model.relation.weight[2].expand(E, -1),
                                     model.entity.weight[x].expand(E, -1))
    assert torch.equal(rows[ids["y"]], model.entity.weight[int(torch.argmax(y_scores))])
    # q: the old relation that best explains (e03, ?, e04) and (e05, ?, e06)
    q = int(torch.argmax(log_softmax([(3, r, 4) for r in range(R)]) + log_softmax([(5, r, 6) for r in range(R)])))
    assert torch.equal(relation_rows[R], model.relation.weight[q])
    # z, w and s are never reached: they keep the fresh rows
    for label in ("z", "w"):
        assert torch.equal(rows[ids[label]], fresh.entity.weight[ids[label]])
    assert torch.equal(relation_rows[R + 1], fresh.relation.weight[R + 1])


def test_a_new_relations_reciprocal_row_is_its_analogues(tmp_path) -> None:
    loaded = saved(tmp_path, inverse=True)
    table, old = loaded.extend(NEW, steps=0).model.relation.weight, loaded.model.relation.weight
    grown = R + 2  # forward rows of the grown table; q is relation R, its reciprocal row R + grown
    source = next(r for r in range(R) if torch.equal(table[R], old[r]))
    assert torch.equal(table[R + grown], old[source + R])
    assert all(torch.equal(table[r + grown], old[r + R]) for r in range(R))  # old reciprocal rows, moved


HELD_OUT = ["receptor", "lipid", "fish", "sign_or_symptom"]


def held_out_umls() -> tuple[Dataset, np.ndarray]:
    """UMLS's training split without four entities and one relation (a dataset), and the triples that hold them
    (label rows)."""
    frame = load_dataset("umls").train.to_df()
    rows = frame[["head", "relation", "tail"]].to_numpy(dtype=object)
    new = np.isin(rows[:, 0], HELD_OUT) | np.isin(rows[:, 2], HELD_OUT) | (rows[:, 1] == "produces")
    return Dataset.from_dfs(frame[~new][["head", "relation", "tail"]], name="umls-base"), rows[new]


@pytest.fixture(scope="module")
def umls(tmp_path_factory) -> tuple[LoadedModel, Dataset, np.ndarray]:
    """A ComplEx model trained on UMLS without those entities and relation, and their training triples."""
    base, arrived = held_out_umls()
    config = {"model": {"name": "complex", "dim": 32}, "training": {"epochs": 10, "early_stopping": False, "seed": 0}}
    result = pipeline(config, data=base, progress=False)
    return load_model(result.save(tmp_path_factory.mktemp("umls") / "model")), base, arrived


def mrr(loaded: LoadedModel, triples: np.ndarray, base: Dataset, arrived: np.ndarray) -> float:
    """MRR of label triples, both sides, against every entity, filtered by the base's and the arrived triples."""
    def encoded(rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack([loaded.entities.ids(rows[:, 0]), loaded.relations.ids(rows[:, 1]),
                                          loaded.entities.ids(rows[:, 2])], 1))

    known = Triples(torch.cat([loaded.encode(base.train), encoded(arrived)]), loaded.entities, loaded.relations)
    return evaluate(loaded.model, encoded(triples), known=loaded.known_index([known])).mrr


def test_fitted_rows_rank_their_triples_far_above_random_rows(umls) -> None:
    loaded, base, arrived = umls
    random = loaded.extend(arrived, init="random", steps=0)
    start = loaded.extend(arrived, steps=0)
    fitted = loaded.extend(arrived, steps=200, train=base)
    new_entities = np.isin(arrived[:, 0], HELD_OUT) | np.isin(arrived[:, 2], HELD_OUT)
    for part in (arrived[new_entities], arrived[arrived[:, 1] == "produces"]):  # new entities; the new relation
        assert mrr(fitted, part, base, arrived) > mrr(random, part, base, arrived) + 0.4
        assert mrr(start, part, base, arrived) > mrr(random, part, base, arrived)
    new_rows = slice(loaded.model.num_entities, None)
    assert not torch.equal(fitted.model.entity.weight[new_rows], start.model.entity.weight[new_rows])
    report = fitted.extra["extensions"][-1]
    assert report["entities_added"] == 4 and report["relations_added"] == 1
    assert report["final_loss"] < report["first_loss"]


@pytest.mark.parametrize("inverse", [True, False])
def test_intrusion_is_the_new_entities_share_of_each_old_querys_softmax(tmp_path, inverse) -> None:
    grown = saved(tmp_path, inverse=inverse).extend(NEW, steps=0).model
    old = torch.tensor([(0, 0, 1), (2, 1, 3), (4, 2, 5), (6, 0, 7), (8, 1, 9)])
    value = foldin.intrusion(grown, old, E, torch.Generator().manual_seed(3))
    heads = torch.rand(len(old), generator=torch.Generator().manual_seed(3)) < 0.5  # the same coin tosses
    expected = []
    with torch.no_grad():
        for (h, r, t), head in zip(old.tolist(), heads.tolist(), strict=True):
            scores = grown.score_h(torch.tensor([r]), torch.tensor([t]))[0] if head else \
                grown.score_t(torch.tensor([h]), torch.tensor([r]))[0]
            expected.append(-torch.log(torch.softmax(scores, 0)[:E].sum()))
    torch.testing.assert_close(value.detach(), torch.stack(expected).mean())


def test_the_old_triples_keep_new_rows_out_of_their_answers(umls) -> None:
    """Given the old triples, the fit also lowers the new entities' share of the old queries' answers."""
    loaded, base, arrived = umls
    alone, kept = loaded.extend(arrived, steps=200), loaded.extend(arrived, steps=200, train=base)
    train = base.train.hrt

    def share(grown: LoadedModel) -> float:
        with torch.no_grad():
            scores = torch.softmax(grown.model.score_t(train[:, 0], train[:, 1]), 1)
        return float(scores[:, loaded.model.num_entities :].sum(1).mean())

    assert share(kept) < 0.5 * share(alone)
    old = loaded.model.num_entities
    assert torch.equal(kept.model.entity.weight[:old], loaded.model.entity.weight)  # still frozen


def test_a_saved_extension_loads_back_and_predicts_the_new_entities(umls, tmp_path) -> None:
    loaded, _, arrived = umls
    grown = loaded.extend(arrived, steps=20)
    back = load_model(grown.save(tmp_path / "grown"))
    assert all(torch.equal(value, back.model.state_dict()[key]) for key, value in grown.model.state_dict().items())
    assert back.entities == grown.entities and back.relations == grown.relations
    assert back.extra["extensions"] == grown.extra["extensions"]
    assert back.config["num_entities"] == loaded.model.num_entities + 4
    expected = grown.predict_tails([("lipid", "produces")], k=3)
    assert expected.equals(back.predict_tails([("lipid", "produces")], k=3))
    twice = back.extend([("atlantis", "produces", "lipid")], steps=5)
    assert len(twice.extra["extensions"]) == 2 and twice.entities.labels[-1] == "atlantis"


def test_unfreeze_trains_every_row_on_old_and_new_triples(umls) -> None:
    loaded, base, arrived = umls
    grown = loaded.extend(arrived, steps=20, unfreeze=True, epochs=2, train=base)
    old = slice(0, loaded.model.num_entities)
    assert not torch.equal(grown.model.entity.weight[old], loaded.model.entity.weight[old])
    report = grown.extra["extensions"][-1]
    assert report["unfreeze"] and len(report["epoch_losses"]) == 2 and report["train_triples"] == len(base.train)
    assert report["epoch_losses"][1] < report["epoch_losses"][0]
    assert grown.calibrator is None and grown.model.training is False
    with pytest.raises(ConfigError, match="unfreeze trains on the old triples too"):
        loaded.extend(arrived, unfreeze=True)


def test_nothing_new_leaves_the_model_as_it_is(tmp_path) -> None:
    loaded = saved(tmp_path)
    same = loaded.extend([("e01", "r0", "e02")])
    assert same.model is loaded.model and same.entities == loaded.entities
    assert "no new entity" in same.extra["extensions"][-1]["note"]


def test_what_cannot_grow_or_is_malformed_is_a_clear_error(tmp_path) -> None:
    for name in ("rgcn", "distmult_literal"):
        with pytest.raises(ConfigError, match=r"encoder \((RGCN|LiteralEmbedding)"):
            saved(tmp_path, name, inverse=False).extend(NEW)
    with pytest.raises(ConfigError, match="generative circuit"):
        foldin.growable(CircuitModel(build_circuit("cp2", E, R, D), "cp2"))
    loaded = saved(tmp_path)
    with pytest.raises(DataError, match=r"unknown relation 'r1x' \(did you mean 'r1'"):
        loaded.extend([("x", "r1x", "e01")], new_relations="error")
    with pytest.raises(DataError, match=r"new triple 1: expected \(head, relation, tail\)"):
        loaded.extend([("x", "r0", "e01"), ("x", "r0")])
    with pytest.raises(DataError, match=r"new triple 0: label 'a\\tb': control character"):
        loaded.extend([("a\tb", "r0", "e01")])
    with pytest.raises(DataError, match="new triple 0: label 3: not a string"):
        loaded.extend([(3, "r0", "e01")])
    bad = tmp_path / "new.tsv"
    bad.write_text("x\tr0\te01\nx\tr0\n")
    with pytest.raises(DataError, match=f"{bad}:2"):
        loaded.extend(bad)
    for settings, message in [({"steps": -1}, "steps must be"), ({"lr": 0.0}, "lr must be"),
                              ({"init": "zeros"}, "init must be"), ({"unfreeze": True, "epochs": 0}, "epochs must")]:
        with pytest.raises(ConfigError, match=message):
            loaded.extend(NEW, **settings)


def test_the_objective_defaults_are_kgems_and_a_saved_run_overrides_them() -> None:
    defaults, config = foldin.Objective(), TrainingConfig()
    for name in ("approach", "relation_prediction", "loss", "loss_args", "num_negatives", "regularizer",
                 "regularizer_args", "optimizer", "optimizer_args", "lr", "batch_size"):
        assert getattr(defaults, name) == getattr(config, name)
    saved_run = foldin.Objective.from_saved({"approach": "slcwa", "loss": "margin_ranking", "epochs": 9})
    approach, loss, regularizer = saved_run.parts()
    assert approach.__class__.__name__ == "SLCWA" and loss.name == "margin_ranking" and regularizer is not None


def test_a_run_trained_with_relation_prediction_folds_in_with_it(tmp_path) -> None:
    loaded = saved(tmp_path)
    plain, weighted = (foldin.Objective.from_saved({"approach": "1vsall", "relation_prediction": w, "batch_size": 4})
                       for w in (0.0, 2.0))
    assert weighted.parts()[0].relation_weight == 2.0
    first = {}
    for name, objective in (("plain", plain), ("weighted", weighted)):
        grown = foldin.extend(loaded.model, loaded.spec, loaded.entities, loaded.relations, NEW, objective=objective,
                              steps=1, lr=1e-9)
        first[name] = grown.report["first_loss"]
    # the same start and batch: the weighted loss adds 2 x the relation cross-entropy, which is > 0
    assert first["weighted"] > first["plain"] + 0.5
    with pytest.raises(ConfigError, match="relation_prediction"):
        foldin.Objective.from_saved({"approach": "1vsall", "relation_prediction": -1.0}).parts()


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A nations model saved by a run (its config names the dataset, which ``kgem extend`` reads)."""
    folder = tmp_path_factory.mktemp("cli") / "run"
    pipeline({"data": {"dataset": "nations"}, "model": {"name": "distmult", "dim": 8},
              "training": {"epochs": 1, "early_stopping": False}}, output=folder, progress=False)
    return folder / "model"


def test_the_cli_writes_a_new_model_folder_and_never_overwrites_unasked(run_folder, tmp_path, capsys) -> None:
    new = tmp_path / "new.tsv"
    new.write_text("atlantis\tembassy\tusa\nusa\ttourism\tatlantis\n")
    out = tmp_path / "grown"
    assert main(["extend", str(run_folder), "--triples", str(new), "-o", str(out), "--steps", "30"]) == 0
    printed = capsys.readouterr().out
    assert "added 1 entity and 0 relations from 2 triples (2 touch them)" in printed
    assert "fit: 30 steps, loss" in printed and "intrusion into the old triples' answers" in printed
    assert f"saved to {out}" in printed
    grown = load_model(out)
    assert grown.entities.labels[-1] == "atlantis" and load_model(run_folder).model.num_entities == 14
    assert main(["extend", str(run_folder), "--triples", str(new), "-o", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["extend", str(run_folder), "--triples", str(new), "-o", str(run_folder)]) == 2
    assert "is the model itself" in capsys.readouterr().err
    args = ["extend", str(run_folder), "--triples", str(new), "-o", str(out), "--overwrite", "--unfreeze"]
    assert main([*args, "--epochs", "2", "--steps", "5"]) == 0
    assert "unfreeze: 2 epochs on 1592 old and 2 new triples" in capsys.readouterr().out
    new.write_text("atlantis\tembassy\n")
    assert main(["extend", str(run_folder), "--triples", str(new), "-o", str(tmp_path / "other")]) == 2
    assert f"kgem: error: {new}:1" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()



def test_the_benchmark_holds_entities_out_and_reports_every_method() -> None:
    bench = load_bench("foldin.py", "bench_foldin")
    ds = load_dataset("nations")
    split = bench.hold_out(ds, 0.15, 0.5, 4, 0)
    held = set(split.held_out)
    assert len(held) == 2 and not held & set(split.base[:, [0, 2]].flatten())
    assert held <= set(split.arrived[:, [0, 2]].flatten())
    for part in (split.arrived, split.ranked):
        assert all(h in held or t in held for h, _, t in part)
    assert not {tuple(row) for row in split.arrived} & {tuple(row) for row in split.ranked}
    args = argparse.Namespace(model="distmult", dim=8, epochs=1, batch_size=256, lr=0.1, steps=5, foldin_lr=0.01,
                              unfreeze_epochs=1, share=0.15, known=0.5, min_degree=4, methods=list(bench.METHODS))
    rows = bench.run_seed(ds, args, 0)
    assert [row["method"] for row in rows] == ["base", *bench.METHODS]
    assert all(row["status"] == "ok" for row in rows)
    by_method = {row["method"]: row for row in rows}
    assert by_method["retrain"]["mrr"] != by_method["random"]["mrr"]
    table = bench.summary([*rows, {**by_method["foldin"], "seed": 1, "mrr": 1.0}, {**rows[1], "status": "failed"}])
    foldin_row = next(row for row in table if row["method"] == "foldin")
    assert foldin_row["seeds"] == 2 and foldin_row["mrr"] == round((by_method["foldin"]["mrr"] + 1.0) / 2, 4)
    assert next(row for row in table if row["method"] == "random")["status"] == "failed"


def test_the_cli_without_the_old_triples_fits_on_the_new_ones_or_refuses_to_unfreeze(tmp_path, capsys) -> None:
    saved(tmp_path)  # a model saved without a run: it names no dataset
    folder = tmp_path / "distmult-True"
    new = tmp_path / "new.tsv"
    new.write_text("x\tr0\te01\n")
    assert main(["extend", str(folder), "--triples", str(new), "-o", str(tmp_path / "a"), "--steps", "5"]) == 0
    assert "note: no old triples" in capsys.readouterr().out
    assert load_model(tmp_path / "a").entities.labels[-1] == "x"
    assert main(["extend", str(folder), "--triples", str(new), "-o", str(tmp_path / "b"), "--unfreeze"]) == 2
    assert "does not say which dataset it was trained on" in capsys.readouterr().err
    old = tmp_path / "old.tsv"
    old.write_text("e01\tr0\te02\ne03\tr1\te04\n")
    argv = ["extend", str(folder), "--triples", str(new), "-o", str(tmp_path / "b"), "--unfreeze", "--train", str(old)]
    assert main(argv) == 0
    assert "unfreeze: 1 epoch on 2 old and 1 new triples" in capsys.readouterr().out
