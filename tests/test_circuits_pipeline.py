"""Generative circuits through the front doors: the pipeline and the Trainer, the run folder and kgem.load, the
probability column of predictions, and the exact distributions of log_prob / conditional / sample / top_triples,
each checked against the brute-force joint table of a tiny circuit."""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

import kgem
from kgem.circuits import CircuitModel, ComplEx2, TypedSquared, average_log_likelihood, fit, load_circuit, pll
from kgem.cli import main
from kgem.configs import ModelConfig
from kgem.data.types import derive_types
from kgem.data.vocab import Vocabulary
from kgem.errors import ConfigError, DataError
from kgem.factory import model_from_config
from kgem.pipeline import pipeline
from kgem.saving import LoadedModel
from kgem.training import Generative, Trainer, build_optimizer
from kgem.training.losses import LOSSES

E, R = 5, 2


def tiny() -> LoadedModel:
    """A float64 ComplEx² over labelled entities e0..e4 and relations r0, r1."""
    torch.manual_seed(0)
    circuit = ComplEx2(E, R, 3, init_sigma=0.5).double()
    return LoadedModel(CircuitModel(circuit, "complex2", {"init_sigma": 0.5}), Vocabulary([f"e{i}" for i in range(E)]),
                       Vocabulary([f"r{i}" for i in range(R)]), {}, {}, {})


def joint(loaded: LoadedModel) -> torch.Tensor:
    """``p(h, r, t)`` of every triple, ``(E, R, E)``, from ``log_prob`` one triple at a time."""
    grid = torch.cartesian_prod(torch.arange(E), torch.arange(R), torch.arange(E))
    with torch.no_grad():
        return loaded.model.circuit.log_prob(grid).exp().view(E, R, E)


def by_label(frame: pd.DataFrame, column: str) -> dict[str, float]:
    return dict(zip(frame[column], frame["probability"], strict=True))


def test_every_conditional_matches_the_renormalised_joint() -> None:
    loaded = tiny()
    p = joint(loaded)
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)
    cases = [({"head": "e1", "relation": "r1"}, "tail", p[1, 1, :] / p[1, 1, :].sum()),
             ({"relation": "r0", "tail": "e3"}, "head", p[:, 0, 3] / p[:, 0, 3].sum()),
             ({"head": "e2", "tail": "e4"}, "relation", p[2, :, 4] / p[2, :, 4].sum()),
             ({"head": "e0"}, "relation", p[0].sum(1) / p[0].sum()),
             ({}, "head", p.sum((1, 2)))]
    for given, slot, expected in cases:
        frame = loaded.conditional(**given)
        assert list(frame.columns) == [slot, "probability", "log_prob"]
        assert frame["probability"].is_monotonic_decreasing
        assert np.exp(frame["log_prob"]).to_numpy() == pytest.approx(frame["probability"].to_numpy())
        labels = [f"{'r' if slot == 'relation' else 'e'}{i}" for i in range(len(expected))]
        assert by_label(frame, slot) == pytest.approx(dict(zip(labels, expected.tolist(), strict=True)), abs=1e-12)
    assert len(loaded.conditional(head="e1", relation="r1", k=2)) == 2


def test_conditional_refuses_other_combinations_and_embedding_models() -> None:
    loaded = tiny()
    with pytest.raises(DataError, match="^conditional takes head and relation, .* got relation$"):
        loaded.conditional(relation="r0")
    with pytest.raises(DataError, match="^conditional takes .* got head and relation and tail$"):
        loaded.conditional(head="e0", relation="r0", tail="e1")
    embedding = kgem.pipeline({"data": {"dataset": "nations"}, "model": {"dim": 4},
                               "training": {"epochs": 1, "early_stopping": False}}, progress=False)
    for call in (lambda: embedding.conditional(), lambda: embedding.sample(3),
                 lambda: embedding.log_prob([("usa", "embassy", "uk")])):
        with pytest.raises(DataError, match="needs a generative circuit .* not normalised probabilities$"):
            call()
    with pytest.raises(DataError, match="^similar compares embedding rows"):
        loaded.similar(["e0"])


def test_probabilities_of_predictions_and_triples_are_exact() -> None:
    loaded = tiny()
    p = joint(loaded)
    tails = loaded.predict_tails([("e1", "r1")], k=E)
    assert tails["probability"].to_numpy() == pytest.approx(np.exp(tails["score"].to_numpy()))
    assert by_label(tails, "tail") == pytest.approx({f"e{i}": float(p[1, 1, i] / p[1, 1].sum()) for i in range(E)})
    heads = loaded.predict_heads([("r0", "e3")], k=E)
    assert heads["probability"].sum() == pytest.approx(1.0)
    relations = loaded.predict_relations([("e2", "e4")], k=R)
    assert by_label(relations, "relation") == pytest.approx({f"r{i}": float(p[2, i, 4] / p[2, :, 4].sum())
                                                             for i in range(R)})
    triples = [("e0", "r1", "e2"), ("e4", "r0", "e4")]
    scored = loaded.score_triples(triples)
    assert scored["probability"].to_numpy() == pytest.approx([float(p[0, 1, 2]), float(p[4, 0, 4])], rel=1e-10)
    logp = loaded.log_prob(triples)
    assert list(logp.columns) == ["head", "relation", "tail", "log_prob", "probability"]
    assert logp["log_prob"].to_numpy() == pytest.approx(scored["score"].to_numpy())


def test_top_triples_of_a_circuit_rank_by_the_joint_probability() -> None:
    loaded = tiny()
    p = joint(loaded)
    top = loaded.top_triples(k=6)
    values, flat = torch.sort(p.flatten(), descending=True, stable=True)
    expected = [(f"e{i // (R * E)}", f"r{i // E % R}", f"e{i % E}") for i in flat[:6].tolist()]
    assert list(top[["head", "relation", "tail"]].itertuples(index=False, name=None)) == expected
    assert top["probability"].to_numpy() == pytest.approx(values[:6].numpy(), rel=1e-9)
    one = loaded.top_triples(k=3, relation="r1")
    assert set(one["relation"]) == {"r1"}
    assert one["probability"].to_numpy() == pytest.approx(torch.sort(p[:, 1].flatten(), descending=True)
                                                          .values[:3].numpy(), rel=1e-9)


def test_sample_draws_labelled_triples_reproducibly() -> None:
    loaded = tiny()
    first, again = loaded.sample(200, seed=4), loaded.sample(200, seed=4)
    pd.testing.assert_frame_equal(first, again)
    assert list(first.columns) == ["head", "relation", "tail"]
    assert set(first["head"]) <= {f"e{i}" for i in range(E)} and set(first["relation"]) <= {"r0", "r1"}


def test_the_trainer_trains_a_circuit_exactly_as_fit_does() -> None:
    """The Generative approach in the library's Trainer and ``circuits.fit``: same order, same steps, same losses."""
    torch.manual_seed(1)
    hrt = torch.stack([torch.randint(0, E, (40,)), torch.randint(0, R, (40,)), torch.randint(0, E, (40,))], 1)
    circuit = ComplEx2(E, R, 3).double()
    twin = copy.deepcopy(circuit)
    losses = fit(circuit, hrt, objective="pll", epochs=3, batch_size=7, lr=0.01, seed=3)
    model = CircuitModel(twin)
    trainer = Trainer(model, Generative(functools.partial(pll, weights=(1.0, 1.0, 1.0))), LOSSES.get("bce")(),
                      build_optimizer("adam", model.parameters(), lr=0.01), batch_size=7, seed=3, progress=False)
    history = trainer.fit(hrt, 3)
    assert history.losses == pytest.approx(losses, rel=1e-12)
    for a, b in zip(circuit.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> kgem.PipelineResult:
    config = {"data": {"dataset": "nations"}, "model": {"name": "complex2", "dim": 8},
              "training": {"objective": "mle", "optimizer": "adam", "lr": 0.02, "epochs": 4, "batch_size": 256,
                           "frequency": 2}}
    return pipeline(config, progress=False, output=tmp_path_factory.mktemp("c2") / "run")


def test_the_pipeline_trains_evaluates_and_saves_a_circuit(run: kgem.PipelineResult) -> None:
    assert isinstance(run.model, CircuitModel)
    assert run.evaluation is not None and run.evaluation.reciprocal is False
    assert "heads by their own scores" in run.evaluation.describe()
    assert run.history.losses[-1] < run.history.losses[0]
    test = run.dataset.test.hrt
    assert run.likelihood == pytest.approx({"log_likelihood": average_log_likelihood(run.model.circuit, test),
                                            "uniform_log_likelihood": -(2 * math.log(14) + math.log(55))})
    assert run.likelihood["log_likelihood"] > run.likelihood["uniform_log_likelihood"]
    metrics = pd.read_csv(run.output / "metrics.csv", index_col=0)
    assert metrics.loc["both", "log_likelihood"] == pytest.approx(run.likelihood["log_likelihood"])
    loaded = kgem.load(run.output / "model")
    assert isinstance(loaded.model, CircuitModel) and loaded.extra["likelihood"] == run.likelihood
    pd.testing.assert_frame_equal(loaded.with_known(run.dataset).predict_tails([("usa", "embassy")], k=5),
                                  run.predict_tails([("usa", "embassy")], k=5))
    assert load_circuit(run.output / "model").name == "complex2"  # the same folder is a saved circuit
    again = loaded.save(run.output / "copy")
    pd.testing.assert_frame_equal(kgem.load(again).conditional(k=4), loaded.conditional(k=4))


def test_circuit_settings_are_checked_in_one_line() -> None:
    base = {"data": {"dataset": "nations"}, "model": {"name": "cp2", "dim": 4}, "training": {"epochs": 1}}
    bad = [({"model": {"name": "cp2", "dim": 4, "args": {"p": 1}}}, r"model\.args\.p: cp2 takes no argument 'p'"),
           ({"model": {"name": "cp2", "dim": 4, "init": "normal"}}, r"model\.init: circuit cp2 starts from its own"),
           ({"training": {"epochs": 1, "optimizer": "sparseadam"}}, r"training\.optimizer: sparseadam updates"),
           ({"training": {"epochs": 1, "workers": 2, "optimizer": "sgd"}}, "generative circuits train in one process"),
           ({"training": {"epochs": 1, "objective_weights": [0, 0, 0]}}, "pll weights must not all be 0"),
           ({"model": {"name": "complex3", "dim": 4}}, "unknown model 'complex3'.*complex2")]
    for change, message in bad:
        with pytest.raises(ConfigError, match=message):
            pipeline({**base, **change}, progress=False)


def test_kgem_train_and_predict_a_circuit(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--dataset", "nations", "--model", "cp2", "--objective", "pll", "--dim", "4",
                 "--epochs", "2", "--optimizer", "adam", "--lr", "0.01", "-q", "--output", str(out)]) == 0
    assert "test log-likelihood" in capsys.readouterr().out
    assert main(["predict", str(out / "model"), "--head", "usa", "--relation", "embassy", "-k", "3"]) == 0
    printed = capsys.readouterr().out
    assert "probability" in printed.splitlines()[0]
    assert main(["sample", str(out / "model"), "-n", "4"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    assert main(["evaluate", str(out / "model")]) == 0
    assert "heads by their own scores" in (printed := capsys.readouterr().out)
    assert "test log-likelihood" in printed and "nats per triple (uniform -9.2854)" in printed


def test_a_typed_circuit_trains_saves_and_loads_with_its_constraints(tmp_path) -> None:
    """model.constraints=derived: triples outside the domains and ranges seen in train get exactly 0, before and
    after saving (the masks travel in the weights file), and the test likelihood says how many test triples that
    excludes."""
    config = {"data": {"dataset": "nations"}, "model": {"name": "cp2", "dim": 4, "constraints": "derived"},
              "training": {"epochs": 2, "optimizer": "adam", "lr": 0.02, "early_stopping": False}}
    result = pipeline(config, progress=False, output=tmp_path / "run")
    circuit = result.model.circuit
    assert isinstance(circuit, TypedSquared)
    domains = derive_types(result.dataset.train.hrt, result.dataset.num_entities, result.dataset.num_relations)
    test = result.dataset.test.hrt
    allowed = domains.check(test)
    assert result.likelihood is not None and result.likelihood["excluded_triples"] == int((~allowed).sum()) > 0
    assert result.likelihood["log_likelihood"] == -math.inf
    assert result.likelihood["log_likelihood_allowed"] == pytest.approx(average_log_likelihood(circuit, test[allowed]))
    loaded = kgem.load(tmp_path / "run" / "model")
    assert isinstance(loaded.model.circuit, TypedSquared) and loaded.extra["likelihood"]["log_likelihood"] is None
    with torch.no_grad():
        before, after = circuit.log_prob(test), loaded.model.circuit.log_prob(test)
    assert torch.equal(torch.isinf(after), ~allowed)
    torch.testing.assert_close(after[allowed], before[allowed])
    tails = loaded.conditional(head="usa", relation="embassy")
    embassy = loaded.relations.lookup(["embassy"])[0]
    expected_zero = {loaded.entities.labels[e] for e in range(14) if not domains.allowed_tails[embassy, e]}
    assert set(tails.loc[tails["probability"] == 0, "tail"]) == expected_zero
    assert tails["probability"].sum() == pytest.approx(1.0)


def test_constraints_are_refused_where_they_do_not_apply(tmp_path) -> None:
    base = {"data": {"dataset": "nations"}, "training": {"epochs": 1}}
    for model, message in [({"name": "complex", "constraints": "derived"}, "restricts a squared generative"),
                           ({"name": "cp+", "constraints": "derived"}, "only squared circuits"),
                           ({"name": "cp2", "constraints": str(tmp_path)}, "entity_types.tsv is missing")]:
        with pytest.raises(ConfigError, match=message):
            pipeline({**base, "model": {"dim": 4, **model}}, progress=False)


def test_constraints_from_type_files(tmp_path) -> None:
    """A folder of entity_types.tsv and relation_signatures.tsv: two types, and relation 'economicaid' allows only
    'donor' heads (its heads in train); every other slot allows both types. Type files that the training triples
    break are refused before training, naming a breaking triple."""
    dataset = kgem.load_dataset("nations")
    donors = {"china", "uk", "usa", "ussr"}

    def write(restricted: str) -> None:
        (tmp_path / "entity_types.tsv").write_text("".join(f"{e}\t{'donor' if e in donors else 'other'}\n"
                                                           for e in dataset.entities.labels))
        lines = [f"{r}\t{s}\t{o}\n" for r in dataset.relations.labels for s in ("donor", "other")
                 for o in ("donor", "other") if r != restricted or s == "donor"]
        (tmp_path / "relation_signatures.tsv").write_text("".join(lines))

    write("economicaid")
    config = {"data": {"dataset": "nations"}, "model": {"name": "complex2", "dim": 4, "constraints": str(tmp_path)},
              "training": {"epochs": 1, "optimizer": "adam", "lr": 0.01, "early_stopping": False}}
    result = pipeline(config, progress=False)
    heads = result.conditional(relation="economicaid", tail="india")
    assert set(heads.loc[heads["probability"] > 0, "head"]) == donors
    assert heads["probability"].sum() == pytest.approx(1.0)
    write("embassy")  # 'embassy' has heads of both types in train
    with pytest.raises(ConfigError, match=r"^model\.constraints: \d+ training triples break the domains and "
                                          r"ranges of .*, e\.g\. \(\w+, embassy, \w+\)"):
        pipeline(config, progress=False)


def test_a_squared_circuit_starts_from_a_saved_complex_model(tmp_path) -> None:
    """model.init_from: a ComplEx trained without reciprocal relations distils into complex2 (phi equals its score
    on every triple), a saved complex2 continues, and what cannot be distilled is a one-line ConfigError."""
    data = {"dataset": "nations"}
    complex_run = pipeline({"data": data, "model": {"name": "complex", "dim": 4, "inverse": False},
                            "training": {"epochs": 1, "early_stopping": False}}, progress=False,
                           output=tmp_path / "complex")
    dataset = complex_run.dataset
    config = ModelConfig(name="complex2", dim=4, init_from=str(tmp_path / "complex" / "model"))
    model = model_from_config(config, dataset.num_entities, dataset.num_relations, graph=dataset.train.hrt,
                              entities=dataset.entities, relations=dataset.relations)
    assert isinstance(model, CircuitModel)
    grid = dataset.test.hrt
    with torch.no_grad():
        torch.testing.assert_close(model.circuit.phi(grid), complex_run.model.score_hrt(grid))
    one_epoch = {"epochs": 1, "optimizer": "adam", "lr": 0.01, "early_stopping": False}
    again = pipeline({"data": data, "model": {"name": "complex2", "dim": 4, "init_from": config.init_from},
                      "training": one_epoch}, progress=False, output=tmp_path / "c2")
    continued = model_from_config(replace(config, init_from=str(tmp_path / "c2" / "model")), dataset.num_entities,
                                  dataset.num_relations, entities=dataset.entities, relations=dataset.relations)
    with torch.no_grad():
        torch.testing.assert_close(continued.circuit.log_prob(grid), again.model.circuit.log_prob(grid))
    pipeline({"data": data, "model": {"name": "complex", "dim": 4}, "training": one_epoch}, progress=False,
             output=tmp_path / "reciprocal")
    for name, source, message in [("complex2", "reciprocal", "train the model with inverse=False"),
                                  ("cp2", "complex", "gives a ComplEx2, this circuit is a CP2"),
                                  ("cp+", "complex", "only squared circuits")]:
        with pytest.raises(ConfigError, match=f"^model.init_from.*{message}"):
            model_from_config(ModelConfig(name=name, dim=4, init_from=str(tmp_path / source / "model")),
                              dataset.num_entities, dataset.num_relations, entities=dataset.entities,
                              relations=dataset.relations)
