"""Numeric attributes (LiteralE): the attribute reader against hand-computed matrices and its file:line errors; the
three literal models in the registry harness (every scoring mode against per-triple scores, the fast paths against
the broadcast one, the combination against its formula written out, a saved model reloading to identical scores);
the literal models beating their plain base on the fixture whose tails follow from an attribute; and the pipeline
and ``kgem train --literals`` end to end."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import pandas as pd
import pytest
import torch

from kgem.cli import main
from kgem.data import Vocabulary
from kgem.data.literal_fixture import LITERALS_FILE, literal_graph
from kgem.data.literals import literals_from_df, read_literals
from kgem.errors import ConfigError, DataError, ModelFileError
from kgem.evaluation import evaluate
from kgem.models import build_model
from kgem.models.literal import LITERAL_MODELS
from kgem.pipeline import pipeline
from kgem.saving import load_model, save_model
from kgem.training import LOSSES, OneVsAll, Trainer, build_optimizer

E, R, D, L = 7, 3, 5, 2


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Tensors this small compute fastest on one thread (several spin against each other on a busy machine: 20x
    slower); conftest gives the thread count back after each test."""
    torch.set_num_threads(1)
ENTITIES = Vocabulary(["a", "b", "c", "d"], kind="entity")
LINES = "a\tsize\t10\nb\tsize\t30\r\n\nc\tsize\t20\na\tweight\t-1\nb\tweight\t3\n"  # CRLF and a blank line


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


# --- the reader ---------------------------------------------------------------------------------------------------


def test_reader_fills_a_matrix_by_entity_and_sorted_attribute(tmp_path: Path) -> None:
    literals = read_literals(write(tmp_path / "lit.tsv", LINES), ENTITIES, normalize=False)
    assert list(literals.attributes.labels) == ["size", "weight"]
    expected = torch.tensor([[10.0, -1.0], [30.0, 3.0], [20.0, 0.0], [0.0, 0.0]])  # d has no value: zeros
    assert literals.values.dtype == torch.float32 and torch.equal(literals.values, expected)


def test_reader_min_max_normalises_each_column_zeros_of_missing_values_included(tmp_path: Path) -> None:
    """LiteralE's normalisation: size's column [10, 30, 20, 0] over [0, 30], weight's [-1, 3, 0, 0] over [-1, 3];
    a constant column becomes 0."""
    text = LINES + "a\tconst\t5\nb\tconst\t5\nc\tconst\t5\nd\tconst\t5\n"
    literals = read_literals(write(tmp_path / "lit.tsv", text), ENTITIES)
    assert list(literals.attributes.labels) == ["const", "size", "weight"]
    expected = torch.tensor([[0, 1 / 3, 0], [0, 1, 1], [0, 2 / 3, 0.25], [0, 0, 0.25]])
    assert torch.allclose(literals.values, expected)


def test_gzip_file_and_dataframe_read_as_the_plain_file(tmp_path: Path) -> None:
    plain = read_literals(write(tmp_path / "lit.tsv", LINES), ENTITIES)
    with gzip.open(tmp_path / "lit.tsv.gz", "wb") as f:
        f.write(LINES.encode())
    zipped = read_literals(tmp_path / "lit.tsv.gz", ENTITIES)
    rows = [line.split("\t") for line in LINES.replace("\r", "").split("\n") if line]
    frame = literals_from_df(pd.DataFrame(rows, columns=["entity", "attribute", "value"]), ENTITIES)
    for other in (zipped, frame):
        assert torch.equal(other.values, plain.values) and other.attributes == plain.attributes


@pytest.mark.parametrize(("text", "where", "problem"), [
    ("a\tsize\t1\nb\tsize\n", 2, "expected 3 fields, found 2"),
    ("a\tsize\t1\n\nb\t\t2\n", 3, "empty field"),
    ("a\tsize\t1\nb\tsize\tabc\n", 2, "value 'abc' of 'b' 'size' is not a finite number"),
    ("a\tsize\t1\nb\tsize\tinf\n", 2, "value 'inf' of 'b' 'size' is not a finite number"),
    ("a\tsize\tnan\n", 1, "value 'nan' of 'a' 'size' is not a finite number"),
    ("entity\tattribute\tvalue\na\tsize\t1\n", 1, r"value 'value' .* \(a header line\? remove it\)"),
    ("a\tsize\t1\nb\tsize\t2\nc\tweight\t1\n\nb\tsize\t2\n", 5, r"a second value of 'b' 'size' \(the first is at "
                                                                 r"\S+lit.tsv:2\)"),
])
def test_a_bad_line_is_an_error_naming_file_and_line(tmp_path: Path, text: str, where: int, problem: str) -> None:
    path = write(tmp_path / "lit.tsv", text)
    with pytest.raises(DataError, match=f"lit.tsv:{where}: {problem}"):
        read_literals(path, ENTITIES)


def test_unknown_entities_are_dropped_with_a_count_or_an_error(tmp_path: Path, caplog) -> None:
    path = write(tmp_path / "lit.tsv", "a\tsize\t1\nzz\tsize\t7\nb\tsize\t2\nzz\tweight\t1\n")
    with caplog.at_level(logging.WARNING, logger="kgem"):
        literals = read_literals(path, ENTITIES, normalize=False)
    assert "dropped 2 of 4 attribute values" in caplog.text and "lit.tsv:2" in caplog.text
    assert list(literals.attributes.labels) == ["size"]  # weight was only given for zz
    assert torch.equal(literals.values[:, 0], torch.tensor([1.0, 2.0, 0.0, 0.0]))
    with pytest.raises(DataError, match="lit.tsv:2: unknown entity 'zz'"):
        read_literals(path, ENTITIES, on_unknown="error")


def test_a_file_of_no_entity_of_the_dataset_and_a_missing_or_empty_file_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="none of its 2 values is of an entity of the dataset"):
        read_literals(write(tmp_path / "other.tsv", "x\tsize\t1\ny\tsize\t2\n"), ENTITIES)
    with pytest.raises(DataError, match="no such file"):
        read_literals(tmp_path / "missing.tsv", ENTITIES)
    with pytest.raises(DataError, match="empty"):
        read_literals(write(tmp_path / "empty.tsv", "\n"), ENTITIES)


# --- the models in the harness ------------------------------------------------------------------------------------


def literals_matrix(seed: int = 3) -> torch.Tensor:
    return torch.rand(E, L, generator=torch.Generator().manual_seed(seed))


def make(name: str, inverse: bool = False, **args) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, E, R, D, inverse=inverse, literals=literals_matrix(), **args).eval()


def grid() -> torch.Tensor:
    return torch.cartesian_prod(torch.arange(E), torch.arange(R), torch.arange(E))


def combined(model: torch.nn.Module, name: str) -> torch.Tensor:
    """The combined entity rows written out from the weights, as Kristiadi et al. / PyKEEN define g."""
    entity = model.entity
    x, lit = entity.base.weight, entity.literals
    if name == "complex_literal":
        x = torch.view_as_complex(x.view(E, D, 2))
        re, im = (torch.tanh(torch.cat([part, lit], 1) @ p.linear.weight.T + p.linear.bias)
                  for part, p in zip((x.real, x.imag), entity.combine, strict=True))
        return torch.complex(re, im)
    joined = torch.cat([x, lit], 1)
    if name == "distmult_literal":
        return joined @ entity.combine[0].linear.weight.T + entity.combine[0].linear.bias
    gate = entity.combine[0]
    z = torch.sigmoid(joined @ gate.gate.weight.T + gate.gate.bias)
    return z * torch.tanh(joined @ gate.hidden.weight.T + gate.hidden.bias) + (1 - z) * x


@pytest.mark.parametrize("name", LITERAL_MODELS)
def test_scores_are_the_base_formula_over_the_combination_written_out(name) -> None:
    model = make(name)
    hrt = grid()[::4]
    with torch.no_grad():
        g, r = combined(model, name), model.relation()
        h, rel, t = g[hrt[:, 0]], r[hrt[:, 1]], g[hrt[:, 2]]
        expected = (h * rel * t.conj()).sum(-1).real if name == "complex_literal" else (h * rel * t).sum(-1)
        assert torch.allclose(model.entity(), g, atol=1e-6)
        assert torch.allclose(model.score_hrt(hrt), expected, atol=1e-5)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("name", LITERAL_MODELS)
def test_all_tails_heads_and_relations_equal_per_triple_scores(name, inverse) -> None:
    model = make(name, inverse)
    with torch.no_grad():
        per_triple = model.score_hrt(grid()).view(E, R, E)
        h, r = torch.cartesian_prod(torch.arange(E), torch.arange(R)).unbind(1)
        subset = torch.tensor([5, 1, 3])
        assert torch.allclose(model.score_t(h, r).view(E, R, E), per_triple, atol=1e-5)
        assert torch.allclose(model.score_t(h, r, subset).view(E, R, 3), per_triple[:, :, subset], atol=1e-5)
        r2, t2 = torch.cartesian_prod(torch.arange(R), torch.arange(E)).unbind(1)
        if inverse:  # heads are tails of the reciprocal relation
            assert torch.allclose(model.score_h(r2, t2), model.score_t(t2, r2 + R), atol=1e-6)
        else:
            heads = model.score_h(r2, t2).view(R, E, E).permute(2, 0, 1)
            relations = model.score_r(grid()[:, 0], grid()[:, 2]).view(E, R, E, R)
            assert torch.allclose(heads, per_triple, atol=1e-5)
            assert torch.allclose(relations.diagonal(dim1=1, dim2=3).permute(0, 2, 1), per_triple, atol=1e-5)


@pytest.mark.parametrize("name", LITERAL_MODELS)
def test_fast_path_equals_broadcast_path_on_combined_rows(name) -> None:
    model = make(name)
    inter = model.interaction
    with torch.no_grad():
        h, r, t = model.entity(torch.tensor([0, 3, 6])), model.relation(torch.tensor([2, 0, 1])), model.entity()
        assert torch.allclose(inter.score_t(h, r, t), inter.generic_score_t(h, r, t), atol=1e-5)
        assert torch.allclose(inter.score_h(t, r, h), inter.generic_score_h(t, r, h), atol=1e-5)


@pytest.mark.parametrize("k", [1, 6])  # 4 ids: the distinct rows looked up; 24 >= E: the whole table
@pytest.mark.parametrize("name", LITERAL_MODELS)
def test_sampled_scores_equal_per_triple(name, k) -> None:
    model = make(name)
    g = torch.Generator().manual_seed(1)
    hrt = torch.stack([torch.randint(E, (4,), generator=g), torch.randint(R, (4,), generator=g),
                       torch.randint(E, (4,), generator=g)], 1)
    ids = torch.randint(E, (4, k), generator=g)
    with torch.no_grad():
        tails = model.score_t_sampled(hrt[:, 0], hrt[:, 1], ids)
        heads = model.score_h_sampled(hrt[:, 1], hrt[:, 2], ids)
        for j in range(k):
            as_tails = torch.stack([hrt[:, 0], hrt[:, 1], ids[:, j]], 1)
            as_heads = torch.stack([ids[:, j], hrt[:, 1], hrt[:, 2]], 1)
            assert torch.allclose(tails[:, j], model.score_hrt(as_tails), atol=1e-5)
            assert torch.allclose(heads[:, j], model.score_hrt(as_heads), atol=1e-5)


@pytest.mark.parametrize("name", LITERAL_MODELS)
def test_the_attributes_are_a_buffer_training_leaves_alone(name) -> None:
    model = make(name, dropout=0.2).train()
    before = model.entity.literals.clone()
    assert "entity.literals" in model.state_dict()
    assert all(parameter is not model.entity.literals for parameter in model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model.score_t(torch.arange(E), torch.zeros(E, dtype=torch.long)).logsumexp(1).sum().backward()
    optimizer.step()
    assert torch.equal(model.entity.literals, before)
    assert next(model.entity.combine[0].parameters()).grad is not None


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("name", LITERAL_MODELS)
def test_a_saved_model_reloads_with_its_attributes_and_scores_identically(tmp_path: Path, name, inverse) -> None:
    model = make(name, inverse, dropout=0.1)
    spec = {"name": name, "dim": D, "inverse": inverse, "args": {"dropout": 0.1, **model.spec_args()}}
    assert model.spec_args() == {"num_literals": L}
    vocab = {"entities": Vocabulary([f"e{i}" for i in range(E)], kind="entity"),
             "relations": Vocabulary([f"r{i}" for i in range(R)], kind="relation")}
    loaded = load_model(save_model(model, tmp_path / "model", spec=spec, **vocab)).model
    assert torch.equal(loaded.entity.literals, model.entity.literals)
    with torch.no_grad():
        assert torch.equal(loaded.score_hrt(grid()), model.score_hrt(grid()))
        assert torch.equal(loaded.score_h(torch.arange(R), torch.arange(R)), model.score_h(torch.arange(R),
                                                                                            torch.arange(R)))
    with pytest.raises(ModelFileError, match="spec"):  # without the attribute count the spec builds another model
        save_model(model, tmp_path / "other", spec={**spec, "args": {"dropout": 0.1}}, **vocab)


@pytest.mark.parametrize(("args", "problem"), [
    ({"sparse": True}, "sparse lookups"), ({"normalize": "forward"}, "normalize does not apply"),
    ({"literals": torch.rand(E + 1, L)}, "7 rows"), ({"literals": torch.tensor([[float("nan")]] * E)}, "finite"),
    ({"literals": torch.rand(E, L), "num_literals": L + 1}, "num_literals=3"), ({"dropout": 1.0}, "dropout"),
])
def test_bad_builder_arguments_are_refused(args, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        build_model("distmult_literal", E, R, D, **args)


# --- learning on the fixture ----------------------------------------------------------------------------------------


def tail_mrr(name: str, lr: float, seed: int = 0) -> float:
    """Filtered tail MRR on the fixture's test triples after 50 epochs of 1vsAll (plain SGD: Adam's per-row step
    sizes let each training item memorise its band before the shared combination learns the sizes)."""
    graph = literal_graph(seed)
    dataset = graph.dataset
    torch.manual_seed(seed)
    extra = {"literals": graph.literals().values} if name in LITERAL_MODELS else {}
    model = build_model(name, dataset.num_entities, dataset.num_relations, 16, inverse=True, **extra)
    Trainer(model, OneVsAll(), LOSSES.get("cross_entropy")(), build_optimizer("sgd", model.parameters(), lr=lr),
            batch_size=128, seed=seed, progress=False).fit(dataset.train.hrt, 50)
    assert dataset.test is not None
    return evaluate(model.eval(), dataset.test.hrt, known=dataset.known(), sides="tail").mrr


@pytest.mark.parametrize(("name", "base", "lr"), [("distmult_literal", "distmult", 0.5),
                                                  ("distmult_literal_gated", "distmult", 1.0),
                                                  ("complex_literal", "complex", 0.5)])
def test_literal_models_predict_what_the_structure_cannot_tell(name, base, lr) -> None:
    """A test item's band follows from its size only: the plain model ranks about at random (MRR of a uniform
    rank among the 205 entities: 0.03), the literal one learns the bands' intervals of sizes."""
    plain, literal = tail_mrr(base, 0.5), tail_mrr(name, lr)
    assert plain < 0.15 and literal > 0.5, (plain, literal)


def test_the_fixture_tails_follow_from_the_sizes() -> None:
    graph = literal_graph(0)
    dataset, literals = graph.dataset, graph.literals()
    size = literals.values[:, list(literals.attributes.labels).index("size")]
    held = torch.cat([dataset.valid.hrt, dataset.test.hrt])
    facts = torch.cat([dataset.train.hrt[dataset.train.hrt[:, 1] == 0], held])
    assert (held[:, 1] == 0).all() and len(facts) == 200 and len(torch.unique(facts[:, 0])) == 200
    by_band = [size[facts[facts[:, 2] == band, 0]] for band in range(4)]
    assert [len(sizes) for sizes in by_band] == [50] * 4
    assert all(by_band[k].max() < by_band[k + 1].min() for k in range(3))  # bands are intervals of sizes


# --- pipeline and CLI -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixture_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return literal_graph(0).write(tmp_path_factory.mktemp("literal_graph"))


def run_config(folder: Path, name: str, literals: bool = True) -> dict:
    return {"data": {"dataset": str(folder), "literals": str(folder / LITERALS_FILE) if literals else None},
            "model": {"name": name, "dim": 16},
            "training": {"optimizer": "sgd", "lr": 0.5, "epochs": 50, "regularizer": None, "early_stopping": False}}


def test_pipeline_trains_a_literal_model_from_files_and_its_saved_model_scores_identically(
        fixture_folder: Path, tmp_path: Path) -> None:
    result = pipeline(run_config(fixture_folder, "complex_literal"), progress=False, output=tmp_path / "run")
    assert result.evaluation is not None
    expected = read_literals(fixture_folder / LITERALS_FILE, result.dataset.entities).values
    assert torch.equal(result.model.entity.literals, expected)
    tails = evaluate(result.model, result.dataset.test.hrt, known=result.dataset.known(), sides="tail").mrr
    assert tails > 0.5
    loaded = load_model(tmp_path / "run" / "model")
    assert loaded.spec["args"] == {"num_literals": 2}
    hrt = result.dataset.test.hrt
    with torch.no_grad():
        assert torch.equal(loaded.model.score_t(hrt[:, 0], hrt[:, 1]), result.model.eval().score_t(hrt[:, 0],
                                                                                                     hrt[:, 1]))


def test_literals_and_literal_models_go_together(fixture_folder: Path) -> None:
    with pytest.raises(ConfigError, match="model distmult_literal combines .* set data.literals"):
        pipeline(run_config(fixture_folder, "distmult_literal", literals=False), progress=False)
    with pytest.raises(ConfigError, match="data.literals: model distmult reads no numeric attributes"):
        pipeline(run_config(fixture_folder, "distmult"), progress=False)


def test_kgem_train_reads_the_literals_flag(fixture_folder: Path, tmp_path: Path, capsys) -> None:
    argv = ["train", "--dataset", str(fixture_folder), "--literals", str(fixture_folder / LITERALS_FILE),
            "--model", "distmult_literal_gated", "--dim", "8", "--epochs", "2", "-q", "--set",
            "training.early_stopping=false", "--output", str(tmp_path / "run")]
    assert main(argv) == 0, capsys.readouterr().err
    assert load_model(tmp_path / "run" / "model").model.entity.literals.shape == (205, 2)
    assert main(["train", "--dataset", str(fixture_folder), "--model", "distmult_literal", "-q",
                 "--output", str(tmp_path / "bad")]) == 2
    assert "set data.literals" in capsys.readouterr().err
