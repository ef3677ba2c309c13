"""Saving and loading circuits (``kgem.circuits.store``), the circuit registry, and ``kgem sample``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from circuit_table import randomised
from kgem.circuits.base import Circuit
from kgem.circuits.nonneg import ComplExPlus, CPPlus, RESCALPlus, TuckERPlus
from kgem.circuits.registry import CIRCUITS, build_circuit, circuit_arguments
from kgem.circuits.sampling import sample_labels
from kgem.circuits.squared import CP2, ComplEx2
from kgem.circuits.store import _sha256, load_circuit, save_circuit
from kgem.circuits.typed import TypedSquared, typed_complex2
from kgem.cli import main
from kgem.data.types import DomainConstraints
from kgem.data.vocab import Vocabulary
from kgem.errors import ConfigError, ModelFileError

E, R, DIM = 4, 2, 3
ENTITIES = Vocabulary(["ant", "bee", "cat", "dog"], kind="entity")
RELATIONS = Vocabulary(["eats", "sees"], kind="relation")
ARGS: dict[str, dict[str, Any]] = {"cp+": {"init_scale": 0.5}, "complex+": {}, "rescal+": {},
                                   "tucker+": {"relation_dim": 2}, "cp2": {"init_sigma": 0.2}, "complex2": {}}
ALL_TRIPLES = torch.cartesian_prod(torch.arange(E), torch.arange(R), torch.arange(E))



def saved(tmp_path: Path, name: str = "cp+", seed: int = 0) -> tuple[Circuit, Path]:
    circuit = randomised(build_circuit(name, E, R, DIM, **ARGS[name]), seed)
    return circuit, save_circuit(circuit, tmp_path / name, name=name, args=ARGS[name], entities=ENTITIES,
                                 relations=RELATIONS)


# --- registry ----------------------------------------------------------------------------------------------------


def test_registry_names_every_circuit_class() -> None:
    classes = {"cp+": CPPlus, "complex+": ComplExPlus, "rescal+": RESCALPlus, "tucker+": TuckERPlus, "cp2": CP2,
               "complex2": ComplEx2}
    assert CIRCUITS.names() == sorted(classes)
    assert {name: CIRCUITS.get(name) for name in classes} == classes
    assert circuit_arguments("tucker+") == {"relation_dim": None, "init_scale": 1e-3}
    assert circuit_arguments("complex2") == {"init_sigma": 1e-3}


def test_build_circuit_passes_sizes_and_args() -> None:
    tucker = build_circuit("TuckER+", 5, 3, 4, relation_dim=2)
    assert isinstance(tucker, TuckERPlus) and tucker.core_logits.shape == (4, 2, 4)
    squared = build_circuit("cp2", 5, 3, 4, init_sigma=0.5)
    assert isinstance(squared, CP2) and squared.init_sigma == 0.5 and squared.entities.shape == (5, 8)


def test_build_circuit_refuses_unknown_names_and_arguments() -> None:
    with pytest.raises(ConfigError, match=r"unknown circuit 'cp3'; known: .*cp2.*Did you mean"):
        build_circuit("cp3", E, R, DIM)
    with pytest.raises(ConfigError, match="circuit 'cp2' takes no argument 'init_scale'; it takes init_sigma"):
        build_circuit("cp2", E, R, DIM, init_scale=0.1)
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        build_circuit("rescal+", E, R, 0)


# --- round trip --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ARGS))
def test_round_trip_gives_the_same_distribution(name, tmp_path) -> None:
    circuit, directory = saved(tmp_path, name)
    state = torch.random.get_rng_state()
    loaded = load_circuit(directory)
    assert torch.equal(torch.random.get_rng_state(), state)  # loading leaves the global RNG alone
    assert type(loaded.circuit) is type(circuit) and not loaded.circuit.training
    assert (loaded.name, loaded.args, loaded.entities, loaded.relations) == (name, ARGS[name], ENTITIES, RELATIONS)
    for key, value in circuit.state_dict().items():
        got = loaded.circuit.state_dict()[key]
        assert got.dtype == torch.float64 and torch.equal(got, value), key
    with torch.no_grad():
        expected, got = circuit.log_prob(ALL_TRIPLES), loaded.circuit.log_prob(ALL_TRIPLES)
    assert torch.equal(got, expected)
    assert torch.logsumexp(got, 0).item() == pytest.approx(0.0, abs=1e-12)  # a distribution over all triples


def test_saving_again_replaces_the_previous_save(tmp_path) -> None:
    _, directory = saved(tmp_path, "cp+", seed=0)
    other = randomised(build_circuit("cp+", E, R, DIM, **ARGS["cp+"]), seed=1)
    save_circuit(other, directory, name="cp+", args=ARGS["cp+"], entities=ENTITIES, relations=RELATIONS)
    assert torch.equal(load_circuit(directory).circuit.log_prob(ALL_TRIPLES), other.log_prob(ALL_TRIPLES))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cp+"]  # no staging or old copies left


# --- save-time errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "args", "entities", "message"), [
    ("cp2", {}, ENTITIES, "circuit 'cp2' is CP2, the circuit is TuckERPlus"),
    ("tucker+", {}, ENTITIES,
     r"args \{\} do not describe this circuit \(relation_logits has shape \(2, 2\), expected \(2, 3\)"),
    ("tucker+", {"size": 2}, ENTITIES, "takes no argument 'size'"),
    ("tucker+", {"relation_dim": 2}, Vocabulary(["a", "b"]), "entity vocabulary has 2 labels, the circuit 4"),
    ("nope", {}, ENTITIES, "unknown circuit 'nope'"),
])
def test_save_refuses_a_description_that_does_not_fit(tmp_path, name, args, entities, message) -> None:
    circuit = build_circuit("tucker+", E, R, DIM, relation_dim=2)
    with pytest.raises(ModelFileError, match=message):
        save_circuit(circuit, tmp_path / "c", name=name, args=args, entities=entities, relations=RELATIONS)
    assert not (tmp_path / "c").exists()


def test_save_refuses_to_overwrite_a_folder_that_is_not_a_save(tmp_path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me\n")
    circuit = build_circuit("cp2", E, R, DIM)
    with pytest.raises(ModelFileError, match="refusing to overwrite"):
        save_circuit(circuit, tmp_path / "mine", name="cp2", args={}, entities=ENTITIES, relations=RELATIONS)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me\n"


# --- load-time errors --------------------------------------------------------------------------------------------


def edit_config(directory: Path, **changes: Any) -> None:
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


def replace_weights(directory: Path, tensors: dict[str, torch.Tensor] | None = None, raw: bytes = b"") -> None:
    """New weights with a matching sha256 in config.json, so only the check after the hash can object."""
    path = directory / "weights.safetensors"
    if tensors is None:
        path.write_bytes(raw)
    else:
        save_file(tensors, str(path))
    edit_config(directory, weights_sha256=_sha256(path))


def nan_weights(directory: Path) -> None:
    tensors = {key: value.clone() for key, value in load_circuit(directory).circuit.state_dict().items()}
    tensors["subject_logits"][0, 0] = float("nan")
    replace_weights(directory, tensors)


CORRUPTIONS = {
    "no config": (lambda d: (d / "config.json").unlink(), "config.json: missing"),
    "bad json": (lambda d: (d / "config.json").write_text("{"), "config.json: not valid JSON"),
    "not an object": (lambda d: (d / "config.json").write_text("[]"), "config.json: expected a JSON object"),
    "a model": (lambda d: (d / "config.json").write_text('{"spec": {}}'), "a saved kgem model, not a circuit"),
    "missing keys": (lambda d: (d / "config.json").write_text('{"kind": "circuit"}'), "missing keys format"),
    "format": (lambda d: edit_config(d, format=9), "unknown format version 9"),
    "unknown name": (lambda d: edit_config(d, name="cp3"), "config.json: unknown circuit 'cp3'"),
    "bad dim": (lambda d: edit_config(d, dim=0), "dim must be a positive integer, got 0"),
    "bad args": (lambda d: edit_config(d, args={"foo": 1}), "takes no argument 'foo'"),
    "shape": (lambda d: edit_config(d, dim=5), "weights.safetensors: does not fit the circuit in config.json: "
                                               r"subject_logits has shape \(4, 3\), expected \(4, 5\)"),
    "no entities": (lambda d: (d / "entities.tsv").unlink(), "entities.tsv: missing"),
    "bad entities": (lambda d: (d / "entities.tsv").write_text("x\n"), "entities.tsv: unreadable entity vocabulary"),
    "sizes": (lambda d: edit_config(d, num_relations=3), "relations.tsv: 2 relation labels but config.json says 3"),
    "no weights": (lambda d: (d / "weights.safetensors").unlink(), "weights.safetensors: missing"),
    "sha": (lambda d: (d / "weights.safetensors").write_bytes((d / "weights.safetensors").read_bytes()[:-8]),
            "weights.safetensors: sha256 .* does not match config.json"),
    "not safetensors": (lambda d: replace_weights(d, raw=b"garbage"), "not a valid safetensors file"),
    "missing tensor": (lambda d: replace_weights(d, {"subject_logits": torch.zeros(4, 3)}), "missing object_logits"),
    "nan": (nan_weights, "subject_logits holds NaN or infinite values"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_each_corrupt_file_is_a_one_line_error_naming_it(case, tmp_path) -> None:
    corrupt, message = CORRUPTIONS[case]
    _, directory = saved(tmp_path, "cp+")
    corrupt(directory)
    with pytest.raises(ModelFileError, match=message) as error:
        load_circuit(directory)
    text = str(error.value)
    assert len(text.splitlines()) == 1 and str(directory) in text


def test_a_missing_directory_is_named(tmp_path) -> None:
    with pytest.raises(ModelFileError, match=f"circuit directory {tmp_path / 'none'} does not exist"):
        load_circuit(tmp_path / "none")


# --- kgem sample -------------------------------------------------------------------------------------------------


def test_sample_writes_n_known_triples_reproducibly(tmp_path, capsys) -> None:
    circuit, directory = saved(tmp_path, "complex2")
    first, again, other = tmp_path / "a.tsv", tmp_path / "b.tsv", tmp_path / "c.tsv"
    for seed, path in (("7", first), ("7", again), ("8", other)):
        assert main(["sample", str(directory), "-n", "60", "--seed", seed, "--output", str(path)]) == 0
        assert f"wrote 60 triples to {path}" in capsys.readouterr().err
    lines = first.read_text().splitlines()
    assert len(lines) == 60 and again.read_text() == first.read_text() != other.read_text()
    rows = [line.split("\t") for line in lines]
    assert all(len(row) == 3 and row[0] in ENTITIES.labels and row[1] in RELATIONS.labels
               and row[2] in ENTITIES.labels for row in rows)
    expected = sample_labels(circuit, 60, ENTITIES, RELATIONS, seed=7)  # the saved circuit's own samples
    assert rows == expected.values.tolist()
    assert main(["sample", str(directory), "-n", "60", "--seed", "7"]) == 0
    assert capsys.readouterr().out == first.read_text()


@pytest.mark.parametrize(("argv", "message"), [
    (["sample", "{missing}"], "does not exist"),
    (["sample", "{file}"], "does not exist"),
    (["sample", "{corrupt}"], "config.json: not valid JSON"),
    (["sample", "{model}", "--output", "{dir}"], "is a folder"),
])
def test_sample_user_errors_are_one_line_exit_2(tmp_path, capsys, argv, message) -> None:
    _, directory = saved(tmp_path, "cp+")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{")
    (tmp_path / "file.txt").write_text("not a folder\n")
    subs = {"{missing}": str(tmp_path / "none"), "{file}": str(tmp_path / "file.txt"), "{corrupt}": str(corrupt),
            "{model}": str(directory), "{dir}": str(tmp_path)}
    assert main([subs.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("kgem: error: ") and message in err


@pytest.mark.parametrize(("flag", "value"), [("-n", "-1"), ("-n", "many"), ("--seed", "-3")])
def test_sample_bad_numbers_exit_2(tmp_path, capsys, flag, value) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["sample", str(tmp_path), flag, value])
    assert stop.value.code == 2 and flag in capsys.readouterr().err


def test_sample_bad_model_dir_from_the_shell(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "kgem.cli", "sample", str(tmp_path / "none"), "-n", "5"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"kgem: error: circuit directory {tmp_path / 'none'} does not exist"]


def test_a_typed_circuit_round_trips_with_its_masks_and_refuses_bad_ones(tmp_path) -> None:
    heads = torch.tensor([[True, True, False, True], [False, True, True, True]])
    tails = torch.tensor([[True, False, True, True], [True, True, True, False]])
    typed = typed_complex2(DomainConstraints(heads, tails), 3, init_sigma=0.5).double()
    folder = save_circuit(typed, tmp_path / "typed", name="complex2", args={"init_sigma": 0.5},
                          entities=Vocabulary([f"e{i}" for i in range(4)]), relations=Vocabulary(["r0", "r1"]))
    assert json.loads((folder / "config.json").read_text())["typed"] is True
    loaded = load_circuit(folder).circuit
    assert isinstance(loaded, TypedSquared)
    grid = torch.cartesian_prod(torch.arange(4), torch.arange(2), torch.arange(4))
    with torch.no_grad():
        torch.testing.assert_close(loaded.log_prob(grid), typed.log_prob(grid))
    weights = {key: value for key, value in typed.state_dict().items() if key != "allowed_tails"}
    replace_weights(folder, weights)
    with pytest.raises(ModelFileError, match=r"missing allowed_tails \(a typed circuit's constraint mask\)$"):
        load_circuit(folder)
    replace_weights(folder, {**weights, "allowed_tails": tails.double()})
    with pytest.raises(ModelFileError, match=r"allowed_tails has dtype torch.float64, expected torch.bool$"):
        load_circuit(folder)
