"""Numeric values on edges: reading them, weighted losses (DGL-KE's edge importance, PyTorch-BigGraph's weights)
for every training approach, and FocusE (AmpliGraph)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import kgem
from kgem.cli import main
from kgem.configs import DataConfig
from kgem.data.dataset import Dataset
from kgem.data.triples import Triples, read_triples, triples_from_df
from kgem.data.vocab import Vocabulary
from kgem.errors import ConfigError, DataError
from kgem.factory import dataset_from_config
from kgem.training.approaches import EdgeWeights, KvsAll
from kgem.training.focuse import FocusE
from kgem.training.losses import LOSSES

SAMPLED = ["margin_ranking", "absolute_margin", "softplus", "bce", "self_adversarial", "cross_entropy"]


# --- reading -------------------------------------------------------------------------------------------------------

def test_a_fourth_column_is_read_as_weights_with_blank_lines_and_duplicates(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("a\tr\tb\t0.5\n\nb\tr\tc\t2\na\tr\tb\t7\nc\ts\ta\t-1e-3\n")
    kept = read_triples(path, edge_weights=3)
    assert kept.weights.tolist() == pytest.approx([0.5, 2.0, 7.0, -1e-3])
    dropped = read_triples(path, edge_weights=3, on_duplicates="drop")  # the first of the duplicates stays
    assert dropped.hrt.tolist() == kept.hrt[[0, 1, 3]].tolist()
    assert dropped.weights.tolist() == pytest.approx([0.5, 2.0, -1e-3])
    assert read_triples(path, extra_columns="ignore").weights is None


def test_a_named_weight_column_with_a_header(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("score,head,relation,tail\n3,a,r,b\n4.5,b,r,a\n")
    triples = read_triples(path, header=True, columns=("head", "relation", "tail"), edge_weights="score")
    assert triples.weights.tolist() == [3.0, 4.5]
    assert triples.to_df()["weight"].tolist() == [3.0, 4.5]


@pytest.mark.parametrize("text, line, hint", [("a\tr\tb\t1\n\nb\tr\tc\tmany\n", 3, False),
                                              ("a\tr\tb\tinf\n", 1, True),
                                              ("h\tr\tt\tweight\na\tr\tb\t1\n", 1, True)])
def test_a_weight_that_is_not_a_finite_number_names_its_line(tmp_path, text, line, hint):
    path = tmp_path / "t.tsv"
    path.write_text(text)
    with pytest.raises(DataError, match=rf"t.tsv:{line}: edge weight .* is not a finite number") as error:
        read_triples(path, edge_weights=3)
    assert ("header=True" in str(error.value)) == hint


def test_four_columns_without_edge_weights_say_how_to_read_them(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("a\tr\tb\t1\n")
    with pytest.raises(DataError, match="edge_weights=3"):
        read_triples(path)


def test_dglke_id_files_read_their_edge_importance(tmp_path):
    (tmp_path / "entities.dict").write_text("0\ta\n1\tb\n2\tc\n")
    (tmp_path / "relations.dict").write_text("0\tr\n")
    (tmp_path / "train.tsv").write_text("0\t1\t0\t0.5\n1\t2\t0\t2\n")  # udd_htr: head, tail, relation, importance
    ds = Dataset.from_id_files(tmp_path, order="htr", edge_weights=3)
    assert ds.train.hrt.tolist() == [[0, 0, 1], [1, 0, 2]] and ds.train.weights.tolist() == [0.5, 2.0]
    config = DataConfig(dataset=str(tmp_path), format="udd_htr", edge_weights=3)
    assert dataset_from_config(config).train.weights.tolist() == [0.5, 2.0]


def test_unseen_triples_take_their_weights_with_them(tmp_path):
    (tmp_path / "train.txt").write_text("a\tr\tb\t1\nb\tr\tc\t2\n")
    (tmp_path / "test.txt").write_text("a\tr\tz\t3\nb\tr\ta\t4\n")
    ds = Dataset.from_folder(tmp_path, edge_weights=3)
    assert ds.test.hrt.tolist() == [[1, 0, 0]] and ds.test.weights.tolist() == [4.0]


def test_split_subset_and_inverse_keep_weights_aligned():
    facts = pd.DataFrame({"head": [f"e{i % 8}" for i in range(60)], "relation": [f"r{i % 3}" for i in range(60)],
                          "tail": [f"e{(i // 8 + 1 + i) % 8}" for i in range(60)], "w": np.arange(60.0)})
    facts = facts.drop_duplicates(["head", "relation", "tail"])
    weight_of = {tuple(row[:3]): row[3] for row in facts.itertuples(index=False)}
    ds = Dataset.from_split(facts, (0.6, 0.2, 0.2), seed=3, edge_weights="w")
    for split in ds.splits().values():  # each weight still belongs to its own triple
        frame = split.to_df()
        assert split.weights.tolist() == [weight_of[key] for key in zip(frame["head"], frame["relation"],
                                                                        frame["tail"])]
    both = ds.train.add_inverse()
    assert torch.equal(both.weights, torch.cat([ds.train.weights, ds.train.weights]))


def test_written_weights_read_back(tmp_path):
    frame = pd.DataFrame({"head": ["a", "b"], "relation": ["r", "r"], "tail": ["b", "a"], "w": [0.25, 9.0]})
    triples = triples_from_df(frame, edge_weights="w")
    triples.write(tmp_path / "out.tsv")
    again = read_triples(tmp_path / "out.tsv", edge_weights=3)
    assert torch.equal(again.weights, triples.weights)
    with pytest.raises(DataError, match="row 1: edge weight 'x' is not a finite number"):
        triples_from_df(frame.assign(w=[1, "x"]), edge_weights="w")


def test_weights_must_be_one_finite_number_per_triple():
    vocab = Vocabulary(np.array(["a", "b"], dtype=object))
    rel = Vocabulary(np.array(["r"], dtype=object), kind="relation")
    hrt = torch.tensor([[0, 0, 1]])
    with pytest.raises(DataError, match="one number per triple"):
        Triples(hrt, vocab, rel, weights=torch.ones(2))
    with pytest.raises(DataError, match="not finite"):
        Triples(hrt, vocab, rel, weights=torch.tensor([math.nan]))


# --- weighted losses -----------------------------------------------------------------------------------------------

def batch(seed: int = 0, rows: int = 5, k: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pos, neg = torch.randn(rows, generator=g, dtype=torch.float64), torch.randn(rows, k, generator=g,
                                                                               dtype=torch.float64)
    neg[1, 2] = -math.inf  # a masked negative
    return pos, neg


@pytest.mark.parametrize("name", SAMPLED)
def test_unit_weights_give_the_unweighted_loss(name):
    loss, (pos, neg) = LOSSES.get(name)(), batch()
    assert loss.sampled(pos, neg, torch.ones(5, dtype=torch.float64)).item() == pytest.approx(
        loss.sampled(pos, neg).item(), rel=1e-12)


@pytest.mark.parametrize("name", SAMPLED)
def test_a_whole_number_weight_counts_as_that_many_copies_of_the_row(name):
    loss, (pos, neg) = LOSSES.get(name)(), batch(1)
    weights = torch.tensor([1, 3, 0, 2, 1], dtype=torch.float64)
    copies = torch.repeat_interleave(torch.arange(5), weights.long())
    assert loss.sampled(pos, neg, weights).item() == pytest.approx(loss.sampled(pos[copies], neg[copies]).item(),
                                                                   rel=1e-12)
    assert loss.sampled(pos, neg, 7.5 * weights).item() == pytest.approx(loss.sampled(pos, neg, weights).item(),
                                                                         rel=1e-12)  # scale-free


def test_weighted_margin_and_softplus_by_hand():
    pos, neg = torch.tensor([1.0, 0.0]), torch.tensor([[0.5, -math.inf], [0.25, 2.0]])
    w = torch.tensor([2.0, 0.5])
    # margin 1: row 0: relu(1 - 1 + 0.5) = 0.5 (one pair); row 1: relu(1.25) + relu(3) = 4.25 (two pairs)
    assert LOSSES.get("margin_ranking")().sampled(pos, neg, w).item() == pytest.approx(
        (2 * 0.5 + 0.5 * 4.25) / (2 * 1 + 0.5 * 2))
    sp = math.log1p
    row0 = sp(math.exp(-1.0)) + sp(math.exp(0.5))
    row1 = sp(1.0) + sp(math.exp(0.25)) + sp(math.exp(2.0))
    expected = (2 * row0 + 0.5 * row1) / (2 * 2 + 0.5 * 3)  # a row counts its positive and unmasked negatives
    assert LOSSES.get("softplus")().sampled(pos, neg, w).item() == pytest.approx(expected)


@pytest.mark.parametrize("name", ["bce", "softplus", "cross_entropy"])
def test_multi_label_weights(name):
    loss = LOSSES.get(name)()
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(3, 6, generator=g, dtype=torch.float64)
    rows, cols = torch.tensor([0, 1, 2]), torch.tensor([4, 0, 5])
    assert loss.multi_label(scores, rows, cols, torch.ones(3, dtype=torch.float64)).item() == pytest.approx(
        loss.multi_label(scores, rows, cols).item(), rel=1e-12)
    # one true entity per row (1vsAll): a weight of 2 is the row twice
    w = torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64)
    copies = torch.tensor([0, 0, 1])
    assert loss.multi_label(scores, rows, cols, w).item() == pytest.approx(
        loss.multi_label(scores[copies], torch.arange(3), cols[copies]).item(), rel=1e-12)


def test_kvsall_weights_by_hand():
    scores = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    rows, cols, w = torch.tensor([0, 0]), torch.tensor([0, 2]), torch.tensor([1.0, 3.0], dtype=torch.float64)
    # bce: true cells weigh 1 and 3, the negative cell their mean, 2
    cells = [1.0 * F.softplus(torch.tensor(-0.5)), 2.0 * F.softplus(torch.tensor(-1.0)), 3.0 * F.softplus(
        torch.tensor(-2.0))]
    assert LOSSES.get("bce")().multi_label(scores, rows, cols, w).item() == pytest.approx(float(sum(cells)) / 6)
    # cross-entropy: the target puts 1/4 on entity 0 and 3/4 on entity 2
    log_p = scores.log_softmax(1)[0]
    assert LOSSES.get("cross_entropy")().multi_label(scores, rows, cols, w).item() == pytest.approx(
        -(0.25 * log_p[0] + 0.75 * log_p[2]).item())


def test_edge_weights_look_up_the_mean_of_duplicates():
    hrt = torch.tensor([[0, 0, 1], [1, 1, 2], [0, 0, 1], [2, 0, 0]])
    lookup = EdgeWeights(hrt, torch.tensor([1.0, 2.0, 5.0, 4.0]), 3, 2)
    assert lookup(torch.tensor([[2, 0, 0], [0, 0, 1], [1, 1, 2]])).tolist() == [4.0, 3.0, 2.0]

    # KvsAll's true pairs: a tail query (0, h, r) answered by t is (h, r, t); a head query (1, t, r) by h is (h, r, t)
    queries = torch.tensor([[0, 0, 0], [1, 2, 1], [1, 0, 0]])
    pairs = KvsAll.pair_weights(queries, torch.tensor([0, 1, 2]), torch.tensor([1, 1, 2]), lookup)
    assert pairs.tolist() == [3.0, 2.0, 4.0]


# --- training with weights -----------------------------------------------------------------------------------------

def nations_with(weights: torch.Tensor | None) -> Dataset:
    ds = kgem.load_dataset("nations")
    return Dataset(replace(ds.train, weights=weights), ds.valid, ds.test, name="nations")


def trained(dataset: Dataset, approach: str = "slcwa", loss: str = "softplus", epochs: int = 2,
            **training: object) -> torch.Tensor:
    cfg = {"model": {"name": "distmult", "dim": 8}, "evaluation": {"filter": []},
           "training": {"approach": approach, "loss": loss, "epochs": epochs, "batch_size": 256,
                        "early_stopping": False, "lr": 0.05, **training}}
    return kgem.pipeline(cfg, data=dataset, progress=False).model.entity.weight.detach().clone()


@pytest.mark.parametrize("approach, loss", [("slcwa", "softplus"), ("slcwa", "self_adversarial"),
                                            ("kvsall", "bce"), ("1vsall", "cross_entropy")])
def test_unit_weights_train_as_no_weights_in_every_approach(approach, loss):
    size = len(kgem.load_dataset("nations").train)
    plain = trained(nations_with(None), approach, loss)
    unit = trained(nations_with(torch.ones(size)), approach, loss)
    torch.testing.assert_close(unit, plain, rtol=1e-5, atol=1e-6)
    skewed = trained(nations_with(torch.rand(size, generator=torch.Generator().manual_seed(0))), approach, loss)
    assert not torch.allclose(skewed, plain, atol=1e-3)  # and the weights are really used


def test_weights_travel_with_sharded_buckets():
    size = len(kgem.load_dataset("nations").train)
    options = {"distributed": "sharded", "partitions": 2, "optimizer": "rowadagrad"}
    plain = trained(nations_with(None), **options)
    torch.testing.assert_close(trained(nations_with(torch.full((size,), 2.0)), **options), plain,
                               rtol=1e-5, atol=1e-6)


def test_negative_weights_are_refused_in_the_loss_but_not_by_focuse():
    size = len(kgem.load_dataset("nations").train)
    with pytest.raises(ConfigError, match="must not be negative"):
        trained(nations_with(-torch.ones(size)))
    trained(nations_with(-torch.arange(size, dtype=torch.float32)), edge_weights="focuse", epochs=1)


def test_ignore_trains_as_if_there_were_no_weights():
    size = len(kgem.load_dataset("nations").train)
    skewed = torch.rand(size, generator=torch.Generator().manual_seed(1))
    # (two runs of one config agree to rounding: the CPU's threads sum sparse gradients in any order)
    torch.testing.assert_close(trained(nations_with(skewed), edge_weights="ignore"), trained(nations_with(None)),
                               rtol=1e-5, atol=1e-6)


# --- FocusE --------------------------------------------------------------------------------------------------------

def test_focuse_normalises_per_relation_and_leaves_uninformative_relations_alone():
    hrt = torch.tensor([[0, 0, 1], [1, 0, 2], [2, 0, 0], [0, 1, 1], [1, 1, 0], [0, 2, 2], [2, 2, 1]])
    weights = torch.tensor([10.0, 20.0, 30.0, 0.2, 0.6, 5.0, 5.0])
    values = FocusE().values(hrt, weights, 3)
    assert values[:5].tolist() == pytest.approx([0.0, 0.5, 1.0, 0.0, 1.0]) and values[5:].isnan().all()
    kept = FocusE(normalize=False).values(hrt, weights, 3)  # in [0, 1] already: kept; out of it: rescaled
    assert kept[:5].tolist() == pytest.approx([0.0, 0.5, 1.0, 0.2, 0.6])


def test_focuse_structural_weight_decays_linearly_to_its_floor():
    focuse = FocusE(stop_epoch=4, structural_wt=0.1)
    betas = []
    for epoch in range(1, 7):
        focuse.epoch = epoch
        betas.append(focuse.structural)
    assert betas == pytest.approx([0.75, 0.5, 0.25, 0.1, 0.1, 0.1])
    assert FocusE(stop_epoch=0, structural_wt=0.3).structural == 0.3


@pytest.mark.parametrize("name, sigma", [("linear", lambda x: x), ("sigmoid", torch.sigmoid), ("tanh", torch.tanh),
                                         ("softplus", lambda x: torch.log(1 + 9999 * torch.exp(x)))])
def test_focuse_modulates_scores_by_hand(name, sigma):
    focuse = FocusE(non_linearity=name, stop_epoch=0, structural_wt=0.2)
    pos, neg = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([[0.1, -math.inf], [0.3, 1.0], [-2.0, 0.0]])
    values = torch.tensor([0.25, math.nan, 1.0])
    got_pos, got_neg = focuse(pos, neg, values)
    pos_scale = torch.tensor([0.2 + 0.8 * 0.75, 1.0, 0.2])
    neg_scale = torch.tensor([0.2 + 0.8 * 0.25, 1.0, 1.0])
    torch.testing.assert_close(got_pos, sigma(pos) * pos_scale)
    expected = sigma(neg) * neg_scale.unsqueeze(1)
    expected[0, 1] = -math.inf  # a masked negative stays masked
    torch.testing.assert_close(got_neg, expected)


def test_focuse_with_all_weights_equal_is_the_plain_model():
    size = len(kgem.load_dataset("nations").train)
    plain = trained(nations_with(None), loss="margin_ranking")
    equal = trained(nations_with(torch.full((size,), 0.7)), loss="margin_ranking", edge_weights="focuse")
    torch.testing.assert_close(equal, plain, rtol=1e-5, atol=1e-6)
    varied = trained(nations_with(torch.rand(size, generator=torch.Generator().manual_seed(2))),
                     loss="margin_ranking", edge_weights="focuse")
    assert not torch.allclose(varied, plain, atol=1e-3)


@pytest.mark.parametrize("training, problem", [
    ({"approach": "1vsall", "edge_weights": "focuse"}, "train with approach slcwa"),
    ({"approach": "slcwa", "focuse_args": {"stop_epoch": 3}}, "set training.edge_weights: focuse"),
    ({"approach": "slcwa", "edge_weights": "focuse", "focuse_args": {"non_linearity": "relu"}}, "non_linearity"),
    ({"approach": "slcwa", "edge_weights": "focuse", "focuse_args": {"structural_wt": 2}}, "structural_wt"),
    ({"approach": "slcwa", "edge_weights": "focuse", "focuse_args": {"decay": 2}}, "no argument 'decay'"),
])
def test_focuse_settings_are_checked(training, problem):
    with pytest.raises(ConfigError, match=problem):
        kgem.pipeline({"model": {"name": "distmult", "dim": 4}, "training": {"epochs": 1, **training}},
                      data=nations_with(torch.ones(len(kgem.load_dataset("nations").train))), progress=False)


def test_focuse_without_weights_says_where_they_come_from():
    with pytest.raises(ConfigError, match="data.edge_weights"):
        trained(nations_with(None), edge_weights="focuse")


# --- the command line ----------------------------------------------------------------------------------------------

def test_train_reads_dglke_edge_importance_and_focuse(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name, split in kgem.load_dataset("nations").splits().items():
        frame = split.to_df()[["head", "relation", "tail"]].assign(w=rng.random(len(split)).round(3))
        frame.to_csv(tmp_path / f"{name}.txt", sep="\t", header=False, index=False)
    common = ["--dataset", str(tmp_path), "--model", "distmult", "--dim", "8", "--epochs", "1", "--approach", "slcwa"]
    assert main(["train", *common, "--has_edge_importance", "--output", str(tmp_path / "a")]) == 0
    assert main(["train", *common, "--weight-col", "3", "--focuse", "--set", "training.focuse_args.stop_epoch=2",
                 "--output", str(tmp_path / "b")]) == 0
    config = (tmp_path / "b" / "config.yaml").read_text()
    assert "edge_weights: 3" in config and "edge_weights: focuse" in config and "stop_epoch: 2" in config
    capsys.readouterr()
    assert main(["train", *common, "--output", str(tmp_path / "c")]) == 2
    assert "--edge-weights 3" in capsys.readouterr().err


# --- the numeric-edge fixture --------------------------------------------------------------------------------------

def test_noisy_confidences_tells_facts_from_noise_by_their_values():
    from kgem.data.numeric import noisy_confidences

    ds = noisy_confidences(3, num_entities=60, num_relations=3, tails=3)
    again = noisy_confidences(3, num_entities=60, num_relations=3, tails=3)
    assert torch.equal(ds.train.hrt, again.train.hrt) and torch.equal(ds.test.weights, again.test.weights)
    splits = ds.splits()
    keys = {name: {tuple(row) for row in split.hrt.tolist()} for name, split in splits.items()}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["valid"] and not keys["valid"] & keys["test"]
    assert set(range(60)) <= set(ds.train.hrt[:, [0, 2]].unique().tolist())  # nothing unseen
    for split in splits.values():
        high = split.weights >= 0.6
        assert high.any() and (~high).any() and bool(((split.weights < 0.4) | high).all())
    # a head's true tails under a relation are exactly its `tails` best under the hidden model: here, per split,
    # the facts (high values) of each (h, r) across the splits number 3
    facts = torch.cat([split.hrt[split.weights >= 0.6] for split in splits.values()])
    assert torch.unique(facts[:, :2], dim=0, return_counts=True)[1].eq(3).all()
