"""DGL-KE's dglke_predict and dglke_emb_sim in kgem (``predict_lists``, ``embedding_similarity``, ``kgem
predict-lists``, ``kgem emb-sim``): every format and execution mode against brute force over the full score tensor
(``score_hrt``) or similarity matrix, similarity functions against hand-computed values, and the command lines with
DGL-KE's spellings."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import kgem
from circuit_table import TableCircuit
from kgem.circuits.model import CircuitModel
from kgem.cli import main
from kgem.data import KnownTriples, Vocabulary
from kgem.errors import DataError
from kgem.inference import embedding_similarity, predict_lists
from kgem.inference.emb_sim import SIM_FUNCS
from kgem.inference.lists import EXEC_MODES, FORMATS
from kgem.models import build_model, scan
from kgem.saving import LoadedModel, load_model

ENTITIES = Vocabulary.from_labels(["alice", "bob", "carol", "dave", "eve", "frank", "grace"], kind="entity")
RELATIONS = Vocabulary.from_labels(["knows", "likes", "works_with"], kind="relation")
E, R = len(ENTITIES), len(RELATIONS)
# lists with a repeated item (an exact tie: the earlier position must rank first) and in no id order
LISTS = {"h": ["carol", "alice", "grace", "alice"], "r": ["likes", "knows"], "t": ["bob", "eve", "alice"]}


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A default budget of 3 scores: every scan runs in batches of 3 rows, one candidate per block."""
    monkeypatch.setattr(scan, "DEFAULT_MEMORY_BUDGET", 3 * scan.SCORE_BYTES)


def loaded(name: str, inverse: bool = False, dim: int = 4) -> LoadedModel:
    torch.manual_seed(0)
    return LoadedModel(build_model(name, E, R, dim, inverse=inverse), ENTITIES, RELATIONS, {}, {}, {})


def full_scores(model: LoadedModel) -> torch.Tensor:
    """``(E, R, E)``: score_hrt of every triple."""
    grid = torch.cartesian_prod(torch.arange(E), torch.arange(R), torch.arange(E))
    with torch.no_grad():
        return model.model.score_hrt(grid).view(E, R, E)


def slot_ids(fmt: str, lists: dict[str, list[str]]) -> list[torch.Tensor]:
    """The ids of each slot of ``fmt``: its list's, or all (``*``)."""
    out = []
    for part, vocab in zip(fmt.split("_"), (ENTITIES, RELATIONS, ENTITIES), strict=True):
        out.append(torch.arange(len(vocab)) if part == "*" else torch.as_tensor(vocab.ids(lists[part])))
    return out


def given(fmt: str, lists: dict[str, list[str]]) -> list[list[str]]:
    return [lists[part] for part in fmt.split("_") if part != "*"]


def brute_predict(scores: torch.Tensor, fmt: str, mode: str, k: int, lists: dict[str, list[str]]) -> pd.DataFrame:
    """DGL-KE's definition over the full score tensor: a stable descending sort of each group's scores in
    row-major list order, cut at k."""
    h, r, t = slot_ids(fmt, lists)
    if mode == "triplet_wise":
        groups = [(scores[h, r, t], torch.stack([h, r, t], 1))]
    else:
        sub = scores[h][:, r][:, :, t]  # (nh, nr, nt)
        grid = torch.stack(torch.meshgrid(h, r, t, indexing="ij"), -1)  # (nh, nr, nt, 3)
        axis = {"batch_head": 0, "batch_rel": 1, "batch_tail": 2}.get(mode)
        if axis is None:
            groups = [(sub.reshape(-1), grid.reshape(-1, 3))]
        else:
            groups = [(s.reshape(-1), g.reshape(-1, 3)) for s, g in zip(sub.unbind(axis), grid.unbind(axis),
                                                                           strict=True)]
    rows = []
    for values, hrt in groups:
        order = values.sort(descending=True, stable=True).indices[:k]
        rows += [(ENTITIES.labels[a], RELATIONS.labels[b], ENTITIES.labels[c], float(v))
                 for (a, b, c), v in zip(hrt[order].tolist(), values[order].tolist(), strict=True)]
    return pd.DataFrame(rows, columns=["head", "relation", "tail", "score"])


def triplet_lists(fmt: str) -> dict[str, list[str]] | None:
    """Lists of one length for triplet_wise (``*`` counts as all its ids), or None where the ``*`` slots differ."""
    sizes = {len(v) for part, v in zip(fmt.split("_"), (ENTITIES, RELATIONS, ENTITIES), strict=True) if part == "*"}
    if len(sizes) > 1:
        return None
    n = sizes.pop() if sizes else 5
    return {"h": [ENTITIES.labels[(3 * i + 1) % E] for i in range(n)],
            "r": [RELATIONS.labels[(2 * i) % R] for i in range(n)],
            "t": [ENTITIES.labels[(5 * i + 2) % E] for i in range(n)]}


def assert_same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(got.drop(columns=got.columns[-1]), expected.drop(columns=expected.columns[-1]))
    np.testing.assert_allclose(got.iloc[:, -1].to_numpy(np.float64), expected.iloc[:, -1].to_numpy(np.float64),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("name", "inverse", "score_func"),
                         [("distmult", False, "none"), ("complex", True, "logsigmoid"), ("transe", False, "none")])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", EXEC_MODES)
def test_predict_lists_equals_brute_force(name: str, inverse: bool, score_func: str, fmt: str, mode: str) -> None:
    model = loaded(name, inverse)
    scores = full_scores(model)
    if score_func == "logsigmoid":
        scores = torch.log(torch.sigmoid(scores.double())).float()
    lists = LISTS if mode != "triplet_wise" else triplet_lists(fmt)
    if lists is None:  # h_*_* and *_*_t: every relation against every entity, never one length
        with pytest.raises(DataError, match="triplet_wise pairs the i-th items"):
            predict_lists(model, fmt, *given(fmt, LISTS), exec_mode=mode)
        return
    got = predict_lists(model, fmt, *given(fmt, lists), exec_mode=mode, k=4, score_func=score_func)
    expected = brute_predict(scores, fmt, mode, 4, lists)
    if name == "complex":  # its only exact ties are a repeated list item's, which the earlier position wins
        assert_same(got, expected)
        return
    # TransE scores every (x, r, x) -|r|, DistMult (h, r, t) as (t, r, h): exact ties that score_t and score_hrt may
    # round apart (which way depends on the CPU's instructions), so a top-k up to the order of those ties
    group = {"batch_head": "head", "batch_rel": "relation", "batch_tail": "tail"}.get(mode)
    if group:
        assert got[group].tolist() == expected[group].tolist()
    np.testing.assert_allclose(got["score"], expected["score"], rtol=1e-5, atol=1e-5)
    truth = [float(scores[ENTITIES.ids([h])[0], RELATIONS.ids([r])[0], ENTITIES.ids([t])[0]])
             for h, r, t in zip(got["head"], got["relation"], got["tail"], strict=True)]
    np.testing.assert_allclose(got["score"], truth, rtol=1e-5, atol=1e-5)


def test_logsigmoid_is_log_of_sigmoid_of_the_score() -> None:
    model = loaded("distmult")
    plain = predict_lists(model, "h_r_*", LISTS["h"], LISTS["r"], exec_mode="batch_head", k=3)
    squashed = predict_lists(model, "h_r_*", LISTS["h"], LISTS["r"], exec_mode="batch_head", k=3,
                             score_func="logsigmoid")
    pd.testing.assert_frame_equal(plain.drop(columns="score"), squashed.drop(columns="score"))
    expected = np.log(1 / (1 + np.exp(-plain["score"].to_numpy(np.float64))))
    np.testing.assert_allclose(squashed["score"].to_numpy(np.float64), expected, rtol=1e-6)


@pytest.mark.parametrize("mode", ["all", "batch_head", "batch_rel", "batch_tail"])
def test_a_generative_circuit_ranks_by_log_p_hrt(mode: str) -> None:
    """The scan scores log p(t | h, r); each row's prior log p(h, r) makes it the circuit's score_hrt."""
    circuit = LoadedModel(CircuitModel(TableCircuit(E, R, seed=3)), ENTITIES, RELATIONS, {}, {}, {})
    got = predict_lists(circuit, "*_r_*", ["works_with", "likes"], exec_mode=mode, k=3)
    assert_same(got, brute_predict(full_scores(circuit), "*_r_*", mode, 3, LISTS | {"r": ["works_with", "likes"]}))


@pytest.mark.parametrize("mode", EXEC_MODES[1:])
def test_every_entity_in_any_blocking_gives_one_answer(mode: str) -> None:
    """``*`` over all entities: a budget of one score (a block per candidate, a batch per row) and one that holds
    everything give the same triples."""
    model = loaded("complex", inverse=True)
    wide = predict_lists(model, "*_r_*", ["likes"], exec_mode=mode, k=5, memory_budget_bytes=2**20)
    for budget in (scan.SCORE_BYTES, 5 * scan.SCORE_BYTES):
        assert_same(predict_lists(model, "*_r_*", ["likes"], exec_mode=mode, k=5, memory_budget_bytes=budget), wide)


def test_k_beyond_the_candidates_returns_them_all() -> None:
    model = loaded("distmult")
    got = predict_lists(model, "h_r_t", ["bob"], ["knows", "likes"], ["alice", "eve"], exec_mode="batch_head", k=50)
    assert_same(got, brute_predict(full_scores(model), "h_r_t", "batch_head", 50,
                                   {"h": ["bob"], "r": ["knows", "likes"], "t": ["alice", "eve"]}))
    assert len(got) == 4


def test_remove_known_leaves_out_known_triples() -> None:
    known = [("alice", "likes", "bob"), ("carol", "likes", "eve"), ("alice", "knows", "alice")]
    ids = torch.tensor([[ENTITIES.ids([h])[0], RELATIONS.ids([r])[0], ENTITIES.ids([t])[0]] for h, r, t in known])
    model = dataclasses.replace(loaded("distmult"), known=KnownTriples(ids, E, R))
    scores = full_scores(model)
    scores[ids[:, 0], ids[:, 1], ids[:, 2]] = float("-inf")
    for mode in EXEC_MODES[1:]:
        got = predict_lists(model, "h_r_t", *LISTS.values(), exec_mode=mode, k=3, remove_known=True)
        expected = brute_predict(scores, "h_r_t", mode, 3, LISTS)
        assert_same(got, expected[np.isfinite(expected["score"])].reset_index(drop=True))
        assert not set(known) & set(zip(got["head"], got["relation"], got["tail"], strict=True))
    with pytest.raises(DataError, match="remove_known needs the known triples"):
        predict_lists(loaded("distmult"), "h_r_t", *LISTS.values(), remove_known=True)


def test_ids_in_ids_out(tmp_path: Path) -> None:
    model = loaded("distmult")
    by_label = predict_lists(model, "h_*_t", LISTS["h"], LISTS["t"], exec_mode="batch_rel", k=3)
    heads = tmp_path / "heads.txt"
    heads.write_text("\n".join(str(i) for i in ENTITIES.ids(LISTS["h"])) + "\n\n")
    by_id = predict_lists(model, "h_*_t", heads, ENTITIES.ids(LISTS["t"]).tolist(), exec_mode="batch_rel", k=3,
                          ids=True)
    assert by_id["head"].tolist() == ENTITIES.ids(by_label["head"]).tolist()
    assert by_id["relation"].tolist() == RELATIONS.ids(by_label["relation"]).tolist()
    np.testing.assert_array_equal(by_id["score"], by_label["score"])


def test_bad_lists_name_the_item(tmp_path: Path) -> None:
    model = loaded("distmult")
    heads = tmp_path / "heads.txt"
    heads.write_text("alice\n\nbob\nalcie\n", encoding="utf-8")
    where = re.escape(str(heads))
    with pytest.raises(DataError, match=rf"^{where}:4: unknown entity 'alcie' \(did you mean 'alice'"):
        predict_lists(model, "h_*_*", heads)
    with pytest.raises(DataError, match=r"^tails\[1\]: unknown entity '3' \(it looks like an id"):
        predict_lists(model, "*_*_t", ["bob", "3"])
    heads.write_text("0\n7\n")
    with pytest.raises(DataError, match=rf"^{where}:2: entity id 7 out of range \(the model has 7 entity ids, 0..6\)"):
        predict_lists(model, "h_*_*", heads, ids=True)
    with pytest.raises(DataError, match=r"^relations\[0\]: expected a relation id \(an integer\), got 'likes'"):
        predict_lists(model, "*_r_*", ["likes"], ids=True)
    with pytest.raises(DataError, match="format h_r_\\* takes 2 list"):
        predict_lists(model, "h_r_*", LISTS["h"])
    with pytest.raises(DataError, match="unknown format"):
        predict_lists(model, "*_*_*")
    with pytest.raises(DataError, match="unknown exec_mode"):
        predict_lists(model, "h_*_*", LISTS["h"], exec_mode="batch_left")
    with pytest.raises(DataError, match="no entity in the list"):
        predict_lists(model, "h_*_*", [])


# -- embedding similarity -----------------------------------------------------------------------------------------

SIM_ENTITIES = Vocabulary.from_labels(["a", "b", "c", "z"], kind="entity")
TABLE = torch.tensor([[1.0, 2.0, 2.0], [2.0, 0.0, 0.0], [0.0, 3.0, 4.0], [0.0, 0.0, 0.0]])  # |a|=3 |b|=2 |c|=5 z=0
# by hand: (cosine, l2, l1, dot, ext_jaccard) of each pair; a zero row's cosine and the Jaccard of two is 0
HAND = {("a", "b"): (1 / 3, -3.0, -5.0, 2.0, 2 / 11), ("a", "a"): (1.0, 0.0, 0.0, 9.0, 1.0),
        ("a", "c"): (14 / 15, -math.sqrt(6), -4.0, 14.0, 0.7), ("b", "c"): (0.0, -math.sqrt(29), -9.0, 0.0, 0.0),
        ("a", "z"): (0.0, -3.0, -5.0, 0.0, 0.0), ("z", "z"): (0.0, 0.0, 0.0, 0.0, 0.0),
        ("c", "b"): (0.0, -math.sqrt(29), -9.0, 0.0, 0.0)}


def hand_set() -> LoadedModel:
    model = build_model("distmult", len(SIM_ENTITIES), 1, 3)
    with torch.no_grad():
        model.entity.weight.copy_(TABLE)
    return LoadedModel(model, SIM_ENTITIES, Vocabulary(["r"], kind="relation"), {}, {}, {})


@pytest.mark.parametrize("sim_func", SIM_FUNCS)
def test_similarity_functions_equal_hand_computed_values(sim_func: str) -> None:
    column = SIM_FUNCS.index(sim_func)
    pairs = list(HAND)
    got = embedding_similarity(hand_set(), [a for a, _ in pairs], [b for _, b in pairs], sim_func=sim_func,
                               exec_mode="pairwise", k=len(pairs))
    values = [HAND[pair][column] for pair in pairs]
    order = sorted(range(len(pairs)), key=lambda i: (-values[i], i))  # most similar first, then list order
    assert list(zip(got["left"], got["right"], strict=True)) == [pairs[i] for i in order]
    np.testing.assert_allclose(got["similarity"], [values[i] for i in order], rtol=1e-6, atol=1e-6)


def brute_similarity(table: np.ndarray, sim_func: str) -> np.ndarray:
    """``(n, n)`` similarities by the formulas, in float64, row by row."""
    n = len(table)
    out = np.zeros((n, n))
    for i, j in itertools.product(range(n), range(n)):
        x, y = table[i], table[j]
        dot = float(x @ y)
        out[i, j] = {"cosine": dot / (np.linalg.norm(x) * np.linalg.norm(y)), "l2": -np.linalg.norm(x - y),
                     "l1": -np.abs(x - y).sum(), "dot": dot, "ext_jaccard": dot / (x @ x + y @ y - dot)}[sim_func]
    return out


def brute_pairs(sims: np.ndarray, left: np.ndarray, right: np.ndarray, mode: str,
                k: int) -> list[list[tuple[float, int, int]]]:
    """Each group's k most similar ``(similarity, left id, right id)``, by a stable sort in list order."""
    if mode == "pairwise":
        groups = [[(sims[a, b], a, b) for a, b in zip(left, right, strict=True)]]
    elif mode == "all":
        groups = [[(sims[a, b], a, b) for a in left for b in right]]
    else:
        groups = [[(sims[a, b], a, b) for b in right] for a in left]
    return [sorted(group, key=lambda x: -x[0])[:k] for group in groups]


@pytest.mark.parametrize("kind", ["entity", "relation"])
@pytest.mark.parametrize("sim_func", SIM_FUNCS)
@pytest.mark.parametrize("fmt", ["l_r", "l_*", "*_r", "*"])
@pytest.mark.parametrize("mode", ["pairwise", "all", "batch_left"])
def test_embedding_similarity_equals_brute_force(kind: str, sim_func: str, fmt: str, mode: str) -> None:
    """Up to the order of ties: an item with itself scores 1 (cosine) or 0 (l1, l2) whatever the item, rounded
    apart by float32; the exact tie order is the hand-set test's."""
    model = loaded("complex", inverse=True, dim=3)  # complex rows: compared as interleaved (re, im)
    vocab = ENTITIES if kind == "entity" else RELATIONS
    table = (model.model.entity.weight if kind == "entity" else model.model.relation.weight[:R]).detach()
    sims = brute_similarity(table.double().numpy(), sim_func)
    left = ["eve", "alice", "eve"] if kind == "entity" else ["likes", "knows", "likes"]
    right = ["bob", "eve", "grace"] if kind == "entity" else ["works_with", "likes", "knows"]
    if mode == "pairwise" and fmt in ("l_*", "*_r"):  # '*' is all n rows: the other list must have n items too
        left = right = list(vocab.labels[::-1])
    sides = {"l_r": (left, right), "l_*": (left, None), "*_r": (None, right), "*": (None, None)}[fmt]
    got = embedding_similarity(model, *sides, sim_func=sim_func, exec_mode=mode, k=4, kind=kind)
    ids = [np.arange(len(vocab)) if side is None else vocab.ids(side) for side in sides]
    groups = brute_pairs(sims, ids[0], ids[1], mode, 4)
    expected = [x for group in groups for x in group]
    assert len(got) == len(expected)
    np.testing.assert_allclose(got["similarity"], [v for v, _, _ in expected], rtol=1e-5, atol=1e-5)
    pairs = list(zip(vocab.ids(got["left"]), vocab.ids(got["right"]), strict=True))
    np.testing.assert_allclose(got["similarity"], [sims[a, b] for a, b in pairs], rtol=1e-5, atol=1e-5)
    if mode == "batch_left":
        assert got["left"].tolist() == [vocab.labels[a] for _, a, _ in expected]
    else:  # pairs of the lists: the i-th items (pairwise), any left with any right (all)
        allowed = set(zip(ids[0], ids[1], strict=True)) if mode == "pairwise" else set(itertools.product(*ids))
        assert set(pairs) <= allowed


def test_similarity_over_every_entity_in_any_blocking() -> None:
    """The same pairs, in the same order, whatever the blocks. (Not cosine and ext_jaccard here: every row scores
    1 with itself, up to a rounding that depends on the block's shape; the brute-force test covers them.)"""
    model = loaded("distmult", dim=5)
    for sim_func, mode in itertools.product(["dot", "l1", "l2"], ["all", "batch_left"]):
        wide = embedding_similarity(model, sim_func=sim_func, exec_mode=mode, k=3, memory_budget_bytes=2**20)
        for budget in (scan.SCORE_BYTES, 6 * scan.SCORE_BYTES):
            narrow = embedding_similarity(model, sim_func=sim_func, exec_mode=mode, k=3, memory_budget_bytes=budget)
            assert_same(narrow, wide)


def test_similarity_rejects_bad_arguments() -> None:
    model = loaded("distmult")
    with pytest.raises(DataError, match="unknown sim_func"):
        embedding_similarity(model, sim_func="jaccard")
    with pytest.raises(DataError, match="pairwise pairs the i-th items"):
        embedding_similarity(model, ["alice"], exec_mode="pairwise")
    with pytest.raises(DataError, match=r"^left\[0\]: unknown relation 'alice'"):
        embedding_similarity(model, ["alice"], kind="relation")
    circuit = LoadedModel(CircuitModel(TableCircuit(E, R)), ENTITIES, RELATIONS, {}, {}, {})
    with pytest.raises(DataError, match="generative circuit"):
        embedding_similarity(circuit)


# -- the command lines ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ComplEx trained on nations, saved with its run (so --remove-known finds the dataset)."""
    out = tmp_path_factory.mktemp("dglke") / "run"
    kgem.pipeline(overrides=["data.dataset=nations", "model.dim=8", "training.epochs=2"], progress=False, output=out)
    return out / "model"


def write_list(path: Path, items: list[str]) -> str:
    path.write_text("".join(f"{x}\n" for x in items), encoding="utf-8")
    return str(path)


def test_predict_lists_cli_with_dglke_spellings(model_dir: Path, tmp_path: Path, capsys) -> None:
    heads = write_list(tmp_path / "head.list", ["usa", "china", "usa"])
    rels = write_list(tmp_path / "rel.list", ["intergovorgs", "embassy"])
    out = tmp_path / "result.tsv"
    assert main(["predict-lists", "--model_path", str(model_dir), "--format", "h_r_*", "--data_files", heads, rels,
                 "--raw_data", "--exec_mode", "batch_head", "--topK", "3", "--score_func", "logsigmoid",
                 "--output", str(out), "--gpu", "-1", "--memory-budget-mb", "1"]) == 0
    assert "wrote 9 rows" in capsys.readouterr().out
    written = pd.read_csv(out, sep="\t", keep_default_na=False)
    loaded_model = load_model(model_dir)
    expected = predict_lists(loaded_model, "h_r_*", ["usa", "china", "usa"], ["intergovorgs", "embassy"],
                             exec_mode="batch_head", k=3, score_func="logsigmoid", memory_budget_bytes=2**20)
    assert list(written.columns) == ["head", "rel", "tail", "score"]
    assert_same(written, expected.rename(columns={"relation": "rel"}))
    assert_same(written, brute_predict_loaded(loaded_model, heads=["usa", "china", "usa"],
                                              rels=["intergovorgs", "embassy"], k=3))


def brute_predict_loaded(model: LoadedModel, heads: list[str], rels: list[str], k: int) -> pd.DataFrame:
    """batch_head over every tail, by score_hrt, logsigmoid."""
    rows = []
    for h in heads:
        grid = torch.tensor([[model.entities.ids([h])[0], model.relations.ids([r])[0], t] for r in rels
                             for t in range(len(model.entities))])
        with torch.no_grad():
            scores = torch.nn.functional.logsigmoid(model.model.score_hrt(grid))
        for i in scores.sort(descending=True, stable=True).indices[:k].tolist():
            rows.append((h, model.relations.labels[grid[i, 1]], model.entities.labels[grid[i, 2]],
                         float(scores[i])))
    return pd.DataFrame(rows, columns=["head", "rel", "tail", "score"])


def test_predict_lists_cli_ids_remove_known_and_mapping(model_dir: Path, tmp_path: Path) -> None:
    loaded_model = load_model(model_dir)
    known = loaded_model.with_known(kgem.load_dataset("nations"))
    tails = write_list(tmp_path / "tail.list", [str(i) for i in loaded_model.entities.ids(["uk", "ussr"])])
    emap, rmap = tmp_path / "entities.dict", tmp_path / "relations.dict"
    loaded_model.entities.save(emap)
    loaded_model.relations.save(rmap)
    out = tmp_path / "ids.tsv"
    assert main(["predict-lists", str(model_dir), "--format", "*_*_t", "--data-files", tails, "--ids",
                 "--exec-mode", "batch_tail", "-k", "4", "--remove-known", "--entity_mfile", str(emap),
                 "--rel_mfile", str(rmap), "-o", str(out), "--memory-budget-mb", "1"]) == 0
    written = pd.read_csv(out, sep="\t")
    expected = predict_lists(known, "*_*_t", [int(x) for x in Path(tails).read_text().split()], exec_mode="batch_tail",
                             k=4, ids=True, remove_known=True, memory_budget_bytes=2**20)
    assert_same(written, expected.rename(columns={"relation": "rel"}))
    hrt = torch.as_tensor(written[["head", "rel", "tail"]].to_numpy())
    assert not known.known_triples().contains(hrt).any()
    wrong = tmp_path / "wrong.dict"
    wrong.write_text("0\tx\n")
    assert main(["predict-lists", str(model_dir), "--format", "*_*_t", "--data-files", tails, "--ids",
                 "--entity_mfile", str(wrong)]) == 2


def test_emb_sim_cli_with_dglke_spellings(model_dir: Path, tmp_path: Path) -> None:
    left = write_list(tmp_path / "left.list", ["intergovorgs", "embassy"])
    out = tmp_path / "sim.tsv"
    assert main(["emb-sim", "--model_path", str(model_dir), "--format", "l_*", "--data_files", left, "--raw_data",
                 "--kind", "relation", "--sim_func", "l2", "--exec_mode", "batch_left", "--topK", "5",
                 "--output", str(out)]) == 0
    written = pd.read_csv(out, sep="\t", keep_default_na=False)
    assert list(written.columns) == ["left", "right", "score"]
    expected = embedding_similarity(load_model(model_dir), ["intergovorgs", "embassy"], sim_func="l2",
                                    exec_mode="batch_left", k=5, kind="relation")
    assert_same(written, expected.rename(columns={"similarity": "score"}))
    assert written["left"].tolist() == ["intergovorgs"] * 5 + ["embassy"] * 5
    assert written["right"].tolist()[::5] == ["intergovorgs", "embassy"]  # itself first, at distance 0
    assert (written["score"] <= 0).all() and (written["score"].to_numpy()[::5] == 0).all()


@pytest.mark.parametrize("command", ["predict-lists", "emb-sim"])
def test_unknown_label_is_one_line_exit_2(model_dir: Path, tmp_path: Path, capsys, command: str) -> None:
    bad = write_list(tmp_path / "bad.list", ["usa", "", "frnace"])
    fmt = "h_*_*" if command == "predict-lists" else "l_*"
    assert main([command, str(model_dir), "--format", fmt, "--data_files", bad]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"kgem: error: {bad}:3: unknown entity 'frnace'")
