"""R-GCN encoder: message passing against a naive per-edge loop, the cache against uncached propagation, seeded edge
sampling, evaluation on the full graph, exact resume and save/load, and the scoring modes with any decoder."""

from __future__ import annotations

import copy
import inspect
from collections import Counter
from pathlib import Path

import pytest
import torch

import kgem
from kgem.cli.info import argument_defaults, models_table
from kgem.data import Vocabulary
from kgem.models import Model, build_model
from kgem.models.rgcn import RGCN, RGCNLayer
from kgem.pipeline import pipeline
from kgem.saving import ModelFileError, load_model, save_model
from kgem.training import LOSSES, REGULARIZERS, SLCWA, Checkpoints, NegativeSampler, OneVsAll, Trainer, build_optimizer

E, R, D = 6, 3, 4
# a duplicate fact, a self-loop fact, a node with several relation types, an isolated node (5)
GRAPH = torch.tensor([[0, 0, 1], [0, 0, 2], [1, 1, 0], [2, 0, 1], [3, 2, 3], [0, 0, 1], [4, 1, 0], [2, 2, 4]])
NO_DROPOUT = {"edge_dropout": 0.0, "self_loop_dropout": 0.0}


def make(torch_seed: int = 0, inverse: bool = False, **args) -> Model:
    torch.manual_seed(torch_seed)
    return build_model("rgcn", E, R, D, inverse=inverse, graph=GRAPH, **args)


def encoder(model: Model) -> RGCN:
    assert isinstance(model.entity, RGCN)
    return model.entity


def relation_weight(layer: RGCNLayer, typ: int) -> torch.Tensor:
    """W_r written out: a combination of the bases, or the block-diagonal matrix of the blocks."""
    if layer.decomposition == "basis":
        return sum(layer.coefficients[typ, b] * layer.bases[b] for b in range(len(layer.bases)))
    return torch.block_diag(*layer.blocks[typ])


def naive_propagate(enc: RGCN, hrt: torch.Tensor) -> torch.Tensor:
    """The paper's eq. 2 one node and one edge at a time: h -> t with W_r, t -> h with W_{r+R}, 1 / c_{i,r}."""
    messages = []
    for h, r, t in hrt.tolist():
        messages += [(h, t, r), (t, h, r + enc.num_relations)]
    counts = Counter((dst, typ) for _, dst, typ in messages)
    x = enc.base.weight
    for i, layer in enumerate(enc.layers):
        rows = []
        for node in range(enc.num):
            total = x[node] @ layer.self_loop
            for src, dst, typ in messages:
                if dst == node:
                    total = total + x[src] @ relation_weight(layer, typ) / counts[(dst, typ)]
            rows.append(total)
        x = torch.stack(rows)
        if i < len(enc.layers) - 1:
            x = torch.relu(x)
    return x


DECOMPOSITIONS = [{"decomposition": "basis", "num_bases": 3}, {"decomposition": "block", "num_blocks": 2}]


@pytest.mark.parametrize("chunk", [None, 8])  # 8 numbers: edges gathered two at a time
@pytest.mark.parametrize("args", DECOMPOSITIONS)
def test_message_passing_equals_naive_per_edge_reference(args, chunk, monkeypatch) -> None:
    if chunk is not None:
        monkeypatch.setattr("kgem.models.rgcn.CHUNK_ELEMENTS", chunk)
    enc = encoder(make(**args).eval())
    with torch.no_grad():
        expected = naive_propagate(enc, GRAPH)
        assert torch.allclose(enc.propagate(), expected, atol=1e-6)
        assert torch.allclose(enc(), expected, atol=1e-6)  # through the cache
        ids = torch.tensor([[5, 0], [3, 3]])
        assert torch.allclose(enc(ids), expected[ids], atol=1e-6)
    params = list(enc.parameters())
    weights = torch.randn(E, enc.base.weight.shape[1])
    grads = torch.autograd.grad((enc.propagate() * weights).sum(), params)
    expected_grads = torch.autograd.grad((naive_propagate(enc, GRAPH) * weights).sum(), params)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads, expected_grads, strict=True))


@pytest.mark.parametrize("args", DECOMPOSITIONS)
def test_without_edges_only_self_loops_remain(args) -> None:
    enc = encoder(build_model("rgcn", E, R, D, graph=GRAPH[:0], **args).eval())
    with torch.no_grad():
        assert torch.allclose(enc(), naive_propagate(enc, GRAPH[:0]), atol=1e-6)


@pytest.mark.parametrize("args", DECOMPOSITIONS)
def test_training_graph_is_sampled_then_dropped_then_normalised(args, monkeypatch) -> None:
    enc = encoder(make(**args, sample_edges=5, edge_dropout=0.3, self_loop_dropout=0.0).train())
    drawn: list[torch.Tensor] = []
    sample = RGCN.sample
    monkeypatch.setattr(RGCN, "sample", lambda self, g: drawn.append(sample(self, g)) or drawn[-1])
    with torch.no_grad():
        for _ in range(4):
            out = enc.propagate()
            assert torch.allclose(out, naive_propagate(enc, drawn[-1]), atol=1e-6)
    assert all(len(d) <= 5 for d in drawn) and len({tuple(map(tuple, d.tolist())) for d in drawn}) > 1


def test_self_loop_dropout_drops_whole_self_connections_and_keeps_the_mean() -> None:
    enc = encoder(make(num_layers=1, edge_dropout=0.0, self_loop_dropout=0.5).train())
    layer = enc.layers[0]
    with torch.no_grad():
        x = enc.base.weight
        own = x @ layer.self_loop
        rest = enc.propagate() - layer.messages(x, enc.edges(GRAPH))
    dropped = torch.isclose(rest, torch.zeros_like(rest), atol=1e-6).all(1)
    doubled = torch.isclose(rest, 2 * own, atol=1e-6).all(1)
    assert bool((dropped | doubled).all()) and bool(dropped.any()) and bool(doubled.any())


def test_cached_scores_and_gradients_equal_uncached_computation(monkeypatch) -> None:
    model = make(**NO_DROPOUT)
    enc = encoder(model)
    hrt = torch.cartesian_prod(torch.arange(E), torch.arange(R), torch.arange(E))
    h, r, t = hrt.unbind(1)
    with torch.no_grad():
        model.eval()
        table = enc.base.transform(enc.propagate())
        assert torch.allclose(model.score_hrt(hrt), model.interaction(table[h], model.relation(r), table[t]))
        assert torch.allclose(model.score_t(h, r), model.interaction.score_t(table[h], model.relation(r), table))
    model.train()
    calls = count_propagations(monkeypatch)

    def loss_and_grads() -> tuple[torch.Tensor, list[torch.Tensor]]:
        loss = model.score_hrt(hrt).square().mean() + model.score_t(h, r).logsumexp(1).mean() \
            + model.score_h(r, t).mean() + sum(f.abs().sum() for f in model.factors(hrt[:5]))
        return loss, list(torch.autograd.grad(loss, list(model.parameters())))

    cached_loss, cached = loss_and_grads()
    assert calls == [1]  # 8 lookups, one propagation
    model.score_hrt(hrt[:3])  # the backward pass dropped the cache: this propagates again
    assert calls == [2] and encoder(model)._cache is not None
    assert copy.deepcopy(model).entity._cache is None  # the cached autograd graph is not copied
    monkeypatch.setattr(RGCN, "table", RGCN.propagate)  # every lookup propagates afresh
    plain_loss, plain = loss_and_grads()
    assert calls == [10]
    assert torch.allclose(cached_loss, plain_loss)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(cached, plain, strict=True))


def test_cache_follows_parameter_changes_and_loaded_weights() -> None:
    """Bit-exact: each propagation runs in this process on tensors PyTorch allocated (64-byte aligned) holding the
    same values."""
    model, other = make(**NO_DROPOUT), make(torch_seed=1, **NO_DROPOUT)
    enc = encoder(model).eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def fresh() -> torch.Tensor:
        with torch.no_grad():
            return enc.propagate()

    before = enc().detach()
    model.train()
    model.score_hrt(GRAPH).sum().backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        assert not torch.allclose(enc(), before) and torch.equal(enc(), fresh())
        model.load_state_dict(other.state_dict())  # copies in place
        assert torch.equal(enc(), fresh()) and torch.equal(enc(), encoder(other.eval())())
        model.load_state_dict(make(torch_seed=2, **NO_DROPOUT).state_dict(), assign=True)  # new tensors
        assert torch.equal(enc(), fresh())


def test_invalidate_cache_sees_writes_the_version_counters_miss() -> None:
    model = make(**NO_DROPOUT).eval()
    enc = encoder(model)
    with torch.no_grad():
        before = enc().clone()
        enc.base.weight.data.mul_(2)  # as a HOGWILD worker's write looks to this process: no version bump
        assert torch.equal(enc(), before)  # the cache cannot tell
        model.invalidate_cache()
        assert torch.equal(enc(), enc.propagate()) and not torch.equal(enc(), before)


def count_propagations(monkeypatch) -> list[int]:
    calls = [0]
    propagate = RGCN.propagate

    def counted(self: RGCN) -> torch.Tensor:
        calls[0] += 1
        return propagate(self)

    monkeypatch.setattr(RGCN, "propagate", counted)
    return calls


@pytest.mark.parametrize("approach", ["slcwa", "1vsall"])
def test_one_propagation_per_training_step(approach, monkeypatch) -> None:
    model = make(sample_edges=5)
    calls = count_propagations(monkeypatch)
    steps = 2 * -(-len(GRAPH) // 3)  # 2 epochs of batches of 3
    if approach == "slcwa":
        trainer = Trainer(model, SLCWA(NegativeSampler(4)), LOSSES.get("softplus")(),
                          build_optimizer("adam", model.parameters(), lr=0.01),
                          regularizer=REGULARIZERS.get("n3")(weight=0.01), batch_size=3, progress=False)
    else:
        trainer = Trainer(model, OneVsAll(), LOSSES.get("cross_entropy")(),
                          build_optimizer("adam", model.parameters(), lr=0.01), batch_size=3, progress=False)
    trainer.fit(GRAPH, 2)
    assert calls == [steps]
    assert encoder(model).sampler[1] == steps


def train(epochs: int = 2, checkpoints: Checkpoints | None = None, resume: bool = False, **args) -> Model:
    """Two epochs of 1vsAll, each step over 4 sampled edges with the default dropouts."""
    model = make(inverse=True, **{"sample_edges": 4, **args})
    optimizer = build_optimizer("adam", model.parameters(), lr=0.05)
    Trainer(model, OneVsAll(), LOSSES.get("cross_entropy")(), optimizer, batch_size=4, seed=0,
            progress=False).fit(GRAPH, epochs, checkpoints=checkpoints, resume=resume)
    return model


def same_state(a: Model, b: Model) -> bool:
    """Bit-exact: for weights copied (saved and loaded), or trained in this process from the same seed on tensors
    PyTorch allocates (64-byte aligned, so every kernel reduces in the same order), resumed or not: a resume copies
    the checkpoint's weights into such tensors and uses its optimizer state only elementwise."""
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_sampled_training_is_seeded_and_evaluation_uses_the_full_graph() -> None:
    a, b = train(), train()
    assert same_state(a, b)
    assert not same_state(a, train(seed=123))  # another sampling seed, the same initialisation and batches
    enc = encoder(a).eval()
    step = int(enc.sampler[1])
    with torch.no_grad():
        assert torch.allclose(enc(), naive_propagate(enc, GRAPH), atol=1e-6)
        a.score_t(torch.tensor([0, 1]), torch.tensor([0, 4]))
    assert int(enc.sampler[1]) == step  # evaluation draws nothing


def test_resume_continues_the_edge_samples_exactly(tmp_path: Path) -> None:
    straight = train(epochs=4)
    train(epochs=2, checkpoints=Checkpoints(tmp_path))
    resumed = train(epochs=4, checkpoints=Checkpoints(tmp_path), resume=True)
    assert same_state(straight, resumed)


def scores(model: Model) -> list[torch.Tensor]:
    hrt = torch.cartesian_prod(torch.arange(E), torch.arange(R), torch.arange(E))
    with torch.no_grad():
        return [model.score_hrt(hrt), model.score_t(hrt[:, 0], hrt[:, 1]), model.score_h(hrt[:, 1], hrt[:, 2])]


def test_save_and_load_give_identical_weights_close_scores_and_carry_the_graph(tmp_path: Path) -> None:
    """Weights bit-exact (copied); scores close, not bit-exact: the loaded tensors sit in the safetensors buffer at
    another memory alignment, which can change a SIMD reduction's order."""
    args = {"decomposition": "block", "num_blocks": 2, "sample_edges": 3}
    model = train(**args).eval()
    spec = {"name": "rgcn", "dim": D, "inverse": True, "args": {**args, **model.spec_args()}}
    entities = Vocabulary([f"e{i}" for i in range(E)], kind="entity")
    relations = Vocabulary([f"r{i}" for i in range(R)], kind="relation")
    loaded = load_model(save_model(model, tmp_path / "m", entities=entities, relations=relations, spec=spec)).model
    assert same_state(loaded, model)
    for x, y in zip(scores(loaded), scores(model), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    assert torch.equal(encoder(loaded).graph, GRAPH) and torch.equal(encoder(loaded).sampler, encoder(model).sampler)
    with pytest.raises(ModelFileError, match="spec"):  # without the edge count the spec rebuilds another model
        save_model(model, tmp_path / "n", entities=entities, relations=relations, spec={**spec, "args": args})


def test_pipeline_saves_a_model_that_kgem_load_rebuilds(toy_folder: Path, tmp_path: Path) -> None:
    config = {"model": {"name": "rgcn", "dim": 4, "args": {"num_bases": 1, "sample_edges": 3}},
              "training": {"epochs": 2, "early_stopping": False, "optimizer": "adam", "lr": 0.01}}
    result = pipeline(config, data=toy_folder, output=tmp_path / "run", progress=False)
    loaded = kgem.load(tmp_path / "run" / "model")
    assert loaded.spec["args"] == {"num_bases": 1, "sample_edges": 3, "num_edges": 4}
    result.model.eval()
    assert same_state(loaded.model, result.model)
    hrt = result.dataset.train.hrt
    with torch.no_grad():  # close, not bit-exact: the loaded tensors sit at another memory alignment
        torch.testing.assert_close(loaded.model.score_hrt(hrt), result.model.score_hrt(hrt), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("decoder", "args"), [("distmult", DECOMPOSITIONS[0]), ("complex", DECOMPOSITIONS[1]),
                                               ("transe", DECOMPOSITIONS[0]), ("rotate", DECOMPOSITIONS[1])])
def test_scoring_modes_agree_with_a_real_graph(decoder, args) -> None:
    """The registry harness of test_models.py (where rgcn has no graph) with message passing in play."""
    for inverse in (False, True):
        model = make(inverse=inverse, decoder=decoder, **args).eval()
        hrt = torch.cartesian_prod(torch.arange(E), torch.arange(R), torch.arange(E))
        h, r, t = hrt.unbind(1)
        ids = torch.randint(E, (len(hrt), 3), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            per_triple = model.score_hrt(hrt)
            assert torch.allclose(model.score_t(h, r)[torch.arange(len(hrt)), t], per_triple, atol=1e-5)
            sampled = model.score_t_sampled(h, r, ids)
            for k in range(3):
                assert torch.allclose(sampled[:, k], model.score_hrt(torch.stack([h, r, ids[:, k]], 1)), atol=1e-5)
            if inverse:
                assert torch.allclose(model.score_h(r, t), model.score_t(t, r + R), atol=1e-6)
            else:
                assert torch.allclose(model.score_h(r, t)[torch.arange(len(hrt)), h], per_triple, atol=1e-5)
                assert torch.allclose(model.score_h_sampled(r, t, ids)[:, 0],
                                      model.score_hrt(torch.stack([ids[:, 0], r, t], 1)), atol=1e-5)


def test_default_blocks_are_the_papers_5_by_5() -> None:
    model = build_model("rgcn", E, R, 10, graph=GRAPH, decomposition="block")
    assert encoder(model).layers[0].blocks.shape == (2 * R, 2, 5, 5)


@pytest.mark.parametrize(("args", "problem"), [
    ({"graph": GRAPH[:, :2]}, "shape"),
    ({"graph": GRAPH.float()}, "integer"),
    ({"graph": GRAPH + torch.tensor([0, R, 0])}, "out of range"),
    ({"graph": GRAPH, "num_edges": 3}, "num_edges=3"),
    ({"decomposition": "block", "num_blocks": 3}, "num_blocks"),
    ({"decomposition": "tucker"}, "decomposition"),
    ({"edge_dropout": 1.0}, "dropout"),
    ({"sample_edges": 0}, "sample_edges"),
    ({"num_layers": 0}, "num_layers"),
    ({"sparse": True}, "without sparse lookups"),
    ({"decoder": "rgcn"}, "unknown model 'rgcn'"),
])
def test_bad_arguments_are_refused(args, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        build_model("rgcn", E, R, D, **args)


def test_a_placeholder_graph_cannot_be_propagated() -> None:
    with pytest.raises(RuntimeError, match="placeholder"):
        build_model("rgcn", E, R, D, num_edges=3).entity()


def test_models_table_lists_the_encoder_arguments() -> None:
    params = inspect.signature(RGCN.__init__).parameters.values()
    defaults = [f"{p.name}={p.default!r}" for p in params
                if p.default is not inspect.Parameter.empty and p.name not in ("graph", "num_edges")]
    assert argument_defaults("rgcn").split(", ") == ["decoder='distmult'", "decoder_args=None", *defaults]
    assert models_table().loc["rgcn", "arguments"] == argument_defaults("rgcn")
    assert "Schlichtkrull" in models_table().loc["rgcn", "reference"]
