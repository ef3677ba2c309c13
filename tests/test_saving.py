"""Saved model directories: round trips with identical weights for every registered model, no code execution on
load, clear errors for damaged files, and saves that cannot destroy the previous save."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
import torch

import kgem.saving
from kgem.data import Vocabulary
from kgem.models import MODELS, Model, build_model
from kgem.saving import CONFIG, ENTITIES, RELATIONS, WEIGHTS, ModelFileError, load_model, save_model

E, R, D = 6, 3, 4
ENTITY_VOCAB = Vocabulary([f"e{i}" for i in range(E)], kind="entity")
RELATION_VOCAB = Vocabulary([f"r{i}" for i in range(R)], kind="relation")


def spec(name: str = "distmult", inverse: bool = False, **args: Any) -> dict[str, Any]:
    return {"name": name, "dim": D, "inverse": inverse, "args": args}


def make(model_spec: dict[str, Any], seed: int = 0) -> Model:
    torch.manual_seed(seed)
    model = build_model(model_spec["name"], E, R, model_spec["dim"], inverse=model_spec["inverse"],
                        **model_spec["args"])
    return model.eval()  # scores compared with a loaded model (eval mode): no dropout, running batch-norm stats


def save(model: Model, directory: Path, model_spec: dict[str, Any], extra: dict | None = None) -> Path:
    return save_model(model, directory, entities=ENTITY_VOCAB, relations=RELATION_VOCAB, spec=model_spec,
                      extra=extra)


def scores(model: Model) -> list[torch.Tensor]:
    """Scores of every triple in every mode."""
    h, r, t = torch.meshgrid(torch.arange(E), torch.arange(R), torch.arange(E), indexing="ij")
    hrt = torch.stack([h.flatten(), r.flatten(), t.flatten()], dim=1)
    with torch.no_grad():
        return [model.score_hrt(hrt), model.score_t(hrt[:, 0], hrt[:, 1]), model.score_h(hrt[:, 1], hrt[:, 2])]


def assert_same_scores(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    """Close, not bit-exact: a loaded model's tensors sit in the safetensors buffer, aligned in memory unlike freshly
    allocated ones, and a matmul's SIMD reduction order (so the last bits of a score) depends on the alignment."""
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


def assert_same_model(loaded: Model, original: Model) -> None:
    """Identical weights (bit-exact: copied, not computed) and close scores (see ``assert_same_scores``)."""
    a, b = loaded.state_dict(), original.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[name], b[name]) for name in a)
    assert_same_scores(scores(loaded), scores(original))


def set_sha(directory: Path) -> None:
    """Make config.json agree with the current weights file, as an attacker controlling both files would."""
    config = json.loads((directory / CONFIG).read_text())
    config["weights_sha256"] = hashlib.sha256((directory / WEIGHTS).read_bytes()).hexdigest()
    (directory / CONFIG).write_text(json.dumps(config))


def edit_config(directory: Path, **changes: Any) -> None:
    config = json.loads((directory / CONFIG).read_text())
    config.update(changes)
    (directory / CONFIG).write_text(json.dumps(config))


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save(make(spec()), tmp_path / "model", spec())


SPECS = [spec(name) for name in MODELS] + [spec("complex", inverse=True), spec("transe", p=1.0),
                                           spec("transe", normalize="step"), spec("rotate", p=2)]


@pytest.mark.parametrize("model_spec", SPECS, ids=lambda s: f"{s['name']}-inverse={s['inverse']}-{s['args']}")
def test_round_trip_gives_identical_weights_and_close_scores(tmp_path: Path, model_spec: dict[str, Any]) -> None:
    model = make(model_spec)
    extra = {"train": {"epochs": 3, "lr": 0.1}, "metrics": {"mrr": 0.25}, "tags": ["a", "b"]}
    path = save(model, tmp_path / "model", model_spec, extra)
    loaded = load_model(path)
    assert_same_model(loaded.model, model)
    assert loaded.entities == ENTITY_VOCAB and loaded.relations == RELATION_VOCAB
    assert loaded.spec == model_spec and loaded.extra == extra
    assert loaded.config["kgem_version"] == kgem.__version__ and loaded.config["format"] == 1
    assert not loaded.model.training
    assert sorted(p.name for p in path.iterdir()) == sorted([CONFIG, ENTITIES, RELATIONS, WEIGHTS])


def test_inverse_flag_round_trips(tmp_path: Path) -> None:
    for inverse in (False, True):
        model_spec = spec("distmult", inverse=inverse)
        model = make(model_spec)
        loaded = load_model(save(model, tmp_path / f"inverse-{inverse}", model_spec)).model
        assert loaded.inverse is inverse and loaded.relation.num == R * (2 if inverse else 1)
        assert_same_model(loaded, model)


@pytest.mark.parametrize("wrong", [spec("transe", p=2.0), spec("transe", p=1.0, inverse=True), spec("distmult"),
                                   {**spec("transe", p=1.0), "dim": D + 1}, {"name": "transe", "dim": D}])
def test_save_refuses_a_spec_that_does_not_rebuild_the_model(tmp_path: Path, wrong: dict[str, Any]) -> None:
    with pytest.raises(ModelFileError, match="spec"):
        save(make(spec("transe", p=1.0)), tmp_path / "model", wrong)
    assert not (tmp_path / "model").exists()


def test_entity_normalisation_is_part_of_the_spec(tmp_path: Path) -> None:
    model = make(spec("transe", normalize="step"))
    with pytest.raises(ModelFileError, match="spec"):
        save(model, tmp_path / "model", spec("transe"))
    loaded = load_model(save(model, tmp_path / "model", spec("transe", normalize="step"))).model
    assert loaded.entity.normalize == "step"


def test_save_refuses_non_json_extra_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="JSON"):
        save(make(spec()), tmp_path / "model", spec(), extra={"when": object()})
    assert list(tmp_path.iterdir()) == []


class Payload:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_pickle_payload_is_refused_and_never_runs(saved: Path, tmp_path: Path) -> None:
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Payload(control)))
    assert control.exists()  # the payload is live: unpickling it does run code
    marker = tmp_path / "pwned"
    (saved / WEIGHTS).write_bytes(pickle.dumps({"entity.weight": Payload(marker)}))
    with pytest.raises(ModelFileError, match="sha256"):
        load_model(saved)
    set_sha(saved)
    with pytest.raises(ModelFileError, match=f"{WEIGHTS}.*not a valid safetensors"):
        load_model(saved)
    assert not marker.exists()


def test_torch_save_file_is_refused(saved: Path) -> None:
    torch.save(make(spec()).state_dict(), saved / WEIGHTS)
    set_sha(saved)
    with pytest.raises(ModelFileError, match=f"{WEIGHTS}.*not a valid safetensors"):
        load_model(saved)


def test_truncated_weights_are_refused(saved: Path) -> None:
    data = (saved / WEIGHTS).read_bytes()
    (saved / WEIGHTS).write_bytes(data[: len(data) - 7])
    with pytest.raises(ModelFileError, match=f"{WEIGHTS}.*sha256"):
        load_model(saved)
    set_sha(saved)
    with pytest.raises(ModelFileError, match=f"{WEIGHTS}.*not a valid safetensors"):
        load_model(saved)


def test_weights_of_another_shape_are_refused(saved: Path, tmp_path: Path) -> None:
    other = save(make({**spec(), "dim": D + 1}), tmp_path / "other", {**spec(), "dim": D + 1})
    (saved / WEIGHTS).write_bytes((other / WEIGHTS).read_bytes())
    set_sha(saved)
    with pytest.raises(ModelFileError, match=rf"{WEIGHTS}.*entity.weight has shape \({E}, {D + 1}\)"):
        load_model(saved)


def test_config_that_is_not_json_is_refused(saved: Path) -> None:
    (saved / CONFIG).write_text('{"format": 1,')
    with pytest.raises(ModelFileError, match=f"{CONFIG}.*not valid JSON"):
        load_model(saved)


@pytest.mark.parametrize(("changes", "problem"), [
    ({"num_entities": E + 1}, f"{ENTITIES}: {E} entity labels but {CONFIG} says {E + 1}"),
    ({"num_relations": R - 1}, f"{RELATIONS}: {R} relation labels but {CONFIG} says {R - 1}"),
    ({"format": 2}, f"{CONFIG}: unknown format version 2"),
    ({"num_entities": "6"}, f"{CONFIG}: num_entities must be a non-negative integer"),
    ({"spec": {**spec(), "dim": "4"}}, f"{CONFIG}: spec\\['dim'\\] must be a int"),
    ({"spec": spec("nosuchmodel")}, f"{CONFIG}: spec does not build a model .*unknown model"),
    ({"spec": spec("distmult", p=1.0)}, f"{CONFIG}: spec does not build a model"),
])
def test_edited_config_is_refused(saved: Path, changes: dict[str, Any], problem: str) -> None:
    edit_config(saved, **changes)
    with pytest.raises(ModelFileError, match=problem):
        load_model(saved)


def test_config_missing_a_key_is_refused(saved: Path) -> None:
    config = json.loads((saved / CONFIG).read_text())
    del config["spec"]
    (saved / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match=f"{CONFIG}: missing keys spec"):
        load_model(saved)


@pytest.mark.parametrize("name", [CONFIG, ENTITIES, RELATIONS, WEIGHTS])
def test_missing_file_is_named(saved: Path, name: str) -> None:
    (saved / name).unlink()
    with pytest.raises(ModelFileError, match=f"{name}: missing"):
        load_model(saved)


def test_bad_vocabulary_line_is_refused(saved: Path) -> None:
    (saved / ENTITIES).write_text("0\te0\n2\te1\n")
    with pytest.raises(ModelFileError, match=f"{ENTITIES}.*unreadable entity vocabulary"):
        load_model(saved)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nothing")


def test_refuses_to_overwrite_a_directory_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("precious")
    with pytest.raises(ModelFileError, match="refusing to overwrite"):
        save(make(spec()), tmp_path / "notes", spec())
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]


def test_saves_into_an_empty_directory_and_replaces_a_previous_save(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    save(make(spec(), seed=1), tmp_path / "model", spec())
    new = make(spec(), seed=2)
    save(new, tmp_path / "model", spec(), extra={"version": 2})
    loaded = load_model(tmp_path / "model")
    assert_same_model(loaded.model, new)
    assert loaded.extra == {"version": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_interrupted_save_keeps_the_previous_save(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = make(spec())  # the model ``saved`` holds: same seed, same process, so bit-identical weights

    def crash(tensors: dict[str, torch.Tensor], filename: str, metadata: dict[str, str]) -> None:
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(kgem.saving, "save_tensors", crash)
    with pytest.raises(KeyboardInterrupt):
        save(make(spec(), seed=5), saved, spec())
    assert_same_model(load_model(saved).model, old)
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]


def test_failed_swap_puts_the_previous_save_back(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = make(spec())  # the model ``saved`` holds: same seed, same process, so bit-identical weights
    rename = os.rename
    calls: list[str] = []

    def rename_once(src: Any, dst: Any) -> None:
        calls.append(str(dst))
        if len(calls) == 2:  # the new directory moving in
            raise OSError("disk gone")
        rename(src, dst)

    monkeypatch.setattr(kgem.saving.os, "rename", rename_once)
    with pytest.raises(OSError, match="disk gone"):
        save(make(spec(), seed=5), saved, spec())
    assert len(calls) == 3  # aside, in (failed), back
    assert_same_model(load_model(saved).model, old)
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]


def test_load_points_at_a_save_left_aside_by_a_crash(saved: Path) -> None:
    os.rename(saved, saved.with_name(f".{saved.name}.abcd1234.old"))
    with pytest.raises(ModelFileError, match="previous save was left at .*abcd1234.old"):
        load_model(saved)


def edit_weights(directory: Path, **tensors: torch.Tensor) -> None:
    """Replace tensors in the weights file and make config.json agree with it (a crafted or damaged save)."""
    from safetensors.torch import load_file, save_file

    weights = load_file(str(directory / WEIGHTS))
    weights.update(tensors)
    save_file(weights, str(directory / WEIGHTS))
    set_sha(directory)


@pytest.mark.parametrize(("dim", "problem"), [(-4, "spec\\['dim'\\] must be positive, got -4"),
                                              (0, "spec\\['dim'\\] must be positive, got 0"),
                                              (10**20, "spec does not build a model \\(.*Overflow")])
def test_a_dim_that_builds_no_model_is_refused(saved: Path, dim: int, problem: str) -> None:
    edit_config(saved, spec={**spec(), "dim": dim})
    with pytest.raises(ModelFileError, match=f"{CONFIG}: {problem}") as error:
        load_model(saved)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("dtype", "problem"), [
    (torch.int64, "entity.weight has dtype torch.int64, expected a floating-point dtype"),
    (torch.bool, "entity.weight has dtype torch.bool, expected a floating-point dtype"),
    (torch.float16, "mixed floating-point dtypes: torch.float16 (entity.weight), torch.float32 (relation.weight)"),
    (torch.float64, "mixed floating-point dtypes: torch.float32 (relation.weight), torch.float64 (entity.weight)"),
])
def test_weights_of_a_wrong_dtype_are_refused(saved: Path, dtype: torch.dtype, problem: str) -> None:
    edit_weights(saved, **{"entity.weight": torch.ones(E, D, dtype=dtype)})
    with pytest.raises(ModelFileError, match=re.escape(f"{saved / WEIGHTS}: does not fit the model in {CONFIG}: "
                                                       f"{problem}")):
        load_model(saved)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_with_nan_or_inf_are_refused(saved: Path, bad: float) -> None:
    weights = torch.ones(E, D)
    weights[1, 2] = bad
    edit_weights(saved, **{"entity.weight": weights})
    with pytest.raises(ModelFileError, match="entity.weight holds NaN or infinite values"):
        load_model(saved)


def test_a_model_saved_in_float64_loads_in_float64(tmp_path: Path) -> None:
    model = make(spec()).double()
    loaded = load_model(save(model, tmp_path / "model", spec())).model
    assert loaded.entity.weight.dtype == torch.float64
    assert_same_scores(scores(loaded), scores(model))


@pytest.mark.parametrize("shape", [(), (E * D,), (E, D, 1), (E + 1, D)])
def test_weights_of_a_wrong_shape_are_refused(saved: Path, shape: tuple[int, ...]) -> None:
    edit_weights(saved, **{"entity.weight": torch.zeros(shape)})
    with pytest.raises(ModelFileError, match=re.escape(f"{WEIGHTS}: does not fit the model in {CONFIG}: "
                                                       f"entity.weight has shape {shape}, expected ({E}, {D})")):
        load_model(saved)


def test_interaction_arguments_of_a_wrong_type_are_refused_at_load(tmp_path: Path) -> None:
    path = save(make(spec("transe", p=1.0)), tmp_path / "model", spec("transe", p=1.0))
    edit_config(path, spec=spec("transe", p="one"))
    with pytest.raises(ModelFileError, match=re.escape(f"{CONFIG}: spec does not build a model (p must be a number, "
                                                       f"got 'one')")):
        load_model(path)


def test_an_encoder_graph_with_bad_ids_or_dtype_is_refused(tmp_path: Path) -> None:
    graph = torch.tensor([[0, 0, 1], [1, 1, 2], [2, 2, 3]])
    model_spec = spec("rgcn", num_edges=3)
    path = save(build_model("rgcn", E, R, D, graph=graph).eval(), tmp_path / "model", model_spec)
    edit_weights(path, **{"entity.graph": torch.tensor([[0, 0, 1], [1, 1, 2], [2, 2, E]])})
    with pytest.raises(ModelFileError, match=f"{WEIGHTS}: R-GCN: graph ids out of range"):
        load_model(path)
    edit_weights(path, **{"entity.graph": graph.float()})
    with pytest.raises(ModelFileError, match="entity.graph has dtype torch.float32, expected torch.int64"):
        load_model(path)


def test_a_damaged_model_is_one_line_and_exit_2_on_the_command_line(saved: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from kgem.cli import main

    edit_weights(saved, **{"entity.weight": torch.ones(E, D, dtype=torch.int64)})
    assert main(["predict", str(saved), "--head", "e0", "--relation", "r0", "-k", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kgem: error: {saved / WEIGHTS}") and len(err.strip().splitlines()) == 1
