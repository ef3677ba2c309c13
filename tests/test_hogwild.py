"""HOGWILD training: forked workers of one thread update shared parameters; errors come back to the parent."""

from __future__ import annotations

import copy
import multiprocessing
import os

import pytest
import torch

from kgem.data import load_dataset
from kgem.errors import ConfigError
from kgem.models import build_model
from kgem.training import LOSSES, SLCWA, NegativeSampler, Trainer, TrainingError, build_optimizer
from kgem.training.hogwild import run_workers, share
from kgem.training.negatives import score_sampled


def _square_on_one_thread(rank: int) -> tuple[int, int]:
    return rank * rank, torch.get_num_threads()


def _fail_in_one(rank: int) -> int:
    if rank == 1:
        raise ValueError("bad batch")
    return rank


def _die(rank: int) -> int:
    os._exit(3)


def test_workers_return_in_rank_order_on_one_thread_and_report_failures() -> None:
    assert run_workers(3, _square_on_one_thread) == [(0, 1), (1, 1), (4, 1)]
    with pytest.raises(TrainingError, match=r"worker 1 failed: ValueError: bad batch"):
        run_workers(2, _fail_in_one)
    with pytest.raises(TrainingError, match=r"worker 0 died \(exit code 3\)"):
        run_workers(1, _die)


def test_workers_write_into_shared_parameters() -> None:
    model = build_model("transe", 10, 2, 4, sparse=True, normalize="none")
    share(model, build_optimizer("rowadagrad", model.parameters(), lr=0.1))

    def write(rank: int) -> None:
        with torch.no_grad():
            model.entity.weight[rank].fill_(rank + 1.0)

    run_workers(2, write)
    assert model.entity.weight[:2, 0].tolist() == [1.0, 2.0]  # seen by the parent


def test_only_optimizers_with_state_up_front_can_be_shared() -> None:
    model = build_model("distmult", 10, 2, 4)
    with pytest.raises(ConfigError, match="HOGWILD"):
        share(model, build_optimizer("adam", model.parameters(), lr=0.1))
    with pytest.raises(ConfigError, match="HOGWILD"):
        share(model, build_optimizer("sgd", model.parameters(), lr=0.1, momentum=0.9))
    with pytest.raises(ConfigError, match="HOGWILD.*torch.optim.adagrad.Adagrad"):  # reads its divisor back
        share(model, torch.optim.Adagrad(model.parameters(), lr=0.1))


@pytest.mark.parametrize("optimizer", ["rowadagrad", "adagrad"])
def test_hogwild_training_covers_every_batch_and_learns(optimizer: str) -> None:
    ds = load_dataset("nations")
    torch.manual_seed(0)
    model = build_model("transe", ds.num_entities, ds.num_relations, 16, sparse=True, normalize="none")
    start = model.entity.weight.detach().clone()
    seen = torch.zeros(2, dtype=torch.int64).share_memory_()  # rows trained on, per worker

    class Counting(SLCWA):
        def step(self, model, batch, loss, generator, part=slice(None)):  # type: ignore[no-untyped-def]
            seen[int(multiprocessing.current_process().name.rsplit("-", 1)[1])] += len(batch)
            return super().step(model, batch, loss, generator, part)

    trainer = Trainer(model, Counting(NegativeSampler(8, shared=True)), LOSSES.get("margin_ranking")(),
                      build_optimizer(optimizer, model.parameters(), lr=0.1), batch_size=200, progress=False,
                      workers=2)
    history = trainer.fit(ds.train.hrt, 6)
    assert len(ds.train.hrt) == 1592 and seen.tolist() == [6 * 800, 6 * 792]  # batches 0, 2, .. and 1, 3, .. (192)
    assert len(history.losses) == 6 and history.losses[-1] < history.losses[0]
    assert not torch.equal(model.entity.weight, start) and torch.isfinite(model.entity.weight).all()
    assert history.examples_per_second > 0


def test_a_resumed_run_shares_the_loaded_optimizer_state(tmp_path) -> None:
    from kgem.training import Checkpoints

    ds = load_dataset("nations")

    def trainer() -> Trainer:
        torch.manual_seed(0)
        model = build_model("transe", ds.num_entities, ds.num_relations, 8, sparse=True, normalize="none")
        return Trainer(model, SLCWA(NegativeSampler(4, shared=True)), LOSSES.get("margin_ranking")(),
                       build_optimizer("rowadagrad", model.parameters(), lr=0.1), batch_size=400,
                       progress=False, workers=2)

    trainer().fit(ds.train.hrt, 1, checkpoints=Checkpoints(tmp_path))
    resumed = trainer()
    resumed.fit(ds.train.hrt, 1, checkpoints=Checkpoints(tmp_path), resume=True)  # loads, trains nothing
    loaded = {name: state["sum"].clone() for name, state in zip("er", resumed.optimizer.state.values())}
    resumed.fit(ds.train.hrt, 2, checkpoints=Checkpoints(tmp_path), resume=True)  # epoch 2, in the workers
    for name, state in zip("er", resumed.optimizer.state.values()):
        assert state["sum"].is_shared() and bool((state["sum"] > loaded[name]).any())  # the workers' updates


def test_rgcn_validates_what_the_workers_trained_not_a_stale_cache() -> None:
    from kgem.evaluation import evaluate
    from kgem.training import EarlyStopping, OneVsAll

    ds = load_dataset("nations")
    torch.manual_seed(0)
    model = build_model("rgcn", ds.num_entities, ds.num_relations, 8, graph=ds.train.hrt, sample_edges=300)
    valid, seen = ds.valid.hrt, []

    def validate(m) -> float:  # the parent's cached table against a fresh copy's, after each HOGWILD epoch
        mrr, fresh = evaluate(m, valid).mrr, copy.deepcopy(m)
        with torch.no_grad():
            seen.append((mrr == evaluate(fresh, valid).mrr, torch.equal(m.eval().entity(), fresh.eval().entity())))
        return float(len(seen))

    trainer = Trainer(model, OneVsAll(), LOSSES.get("cross_entropy")(),
                      build_optimizer("adagrad", model.parameters(), lr=0.1), batch_size=400, progress=False,
                      workers=2)
    trainer.fit(ds.train.hrt, 3, EarlyStopping(validate, frequency=1, patience=5))
    assert seen == [(True, True)] * 3


class LosesItsWrites(torch.Tensor):
    """A shared accumulator as one worker sees it when another worker's read-modify-write of the same rows, begun
    before this worker's add, stores its stale sum after it: every in-place write of this worker is lost, and a
    read-back returns the other worker's sum (here: the unchanged one)."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = getattr(func, "__name__", "")
        in_place = name == "__setitem__" or (name.endswith("_") and not name.endswith("__"))
        if args and type(args[0]) is cls and in_place:
            return args[0]
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("previous", [0.0, 1.0])
def test_a_rowadagrad_step_divides_by_its_own_gradient_whatever_another_worker_wrote(sparse: bool,
                                                                                      previous: float) -> None:
    """Before: a step added its mean square into the shared accumulator and read the sum back as its divisor. A
    worker whose add was overwritten by another's stale sum (two workers on the same row in the first steps, where
    the sums are 0 and a zero-gradient row writes 0 back) divided by sqrt(0) + 1e-10: a row moved by 1e8 and the
    C1s benchmark (TransE, PyTorch-BigGraph style, 2 workers) diverged in about 3 of 7 runs. The divisor is now the
    sum the worker read plus its own term, so a step's row norm is at most lr * sqrt(dim) whatever the race did."""
    from kgem.training.optim import RowAdagrad

    p = torch.nn.Parameter(torch.zeros(4, 3))
    g = torch.tensor([[0.3, -0.1, 0.2], [0.0, 0.0, 0.0], [-2.0, 1.0, 0.5], [0.0, 0.0, 0.0]])
    ids = torch.tensor([0, 2])
    p.grad = torch.sparse_coo_tensor(ids.unsqueeze(0), g[ids], (4, 3), check_invariants=True) if sparse else g.clone()
    optimizer = RowAdagrad([p], lr=0.1)
    optimizer.init_state()
    optimizer.state[p]["sum"] = torch.full((4,), previous).as_subclass(LosesItsWrites)
    optimizer.step()
    expected = -0.1 * g / (previous + g.pow(2).mean(1, keepdim=True)).sqrt().add(1e-10)
    torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-7)
    assert float(torch.linalg.vector_norm(p.detach(), dim=1).max()) <= 0.1 * 3**0.5 + 1e-6


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("previous", [0.0, 1.0])
def test_an_adagrad_step_divides_by_its_own_gradient_whatever_another_worker_wrote(sparse: bool,
                                                                                   previous: float) -> None:
    """torch's Adagrad added g^2 into the shared ``sum`` and read the sum back as its divisor: with the add lost to
    another worker's stale write, it divided by sqrt(0) + 1e-10 (a two-worker run moved an element by 5e6 in one
    step). kgem's ``adagrad`` divides by the sum it read plus its own g^2: a step moves an element at most lr."""
    p = torch.nn.Parameter(torch.zeros(4, 3))
    g = torch.tensor([[0.3, -0.1, 0.0], [0.0, 0.0, 0.0], [-2.0, 1.0, 0.5], [0.0, 0.0, 0.0]])
    ids = torch.tensor([0, 2])
    p.grad = torch.sparse_coo_tensor(ids.unsqueeze(0), g[ids], (4, 3), check_invariants=True) if sparse else g.clone()
    optimizer = build_optimizer("adagrad", [p], lr=0.1)
    optimizer.state[p]["sum"] = torch.full((4, 3), previous).as_subclass(LosesItsWrites)
    optimizer.step()
    expected = -0.1 * g / (previous + g * g).sqrt().add(1e-10)
    torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-7)
    assert float(p.detach().abs().max()) <= 0.1 + 1e-6


def _adagrad_steps(optimizer_class: type[torch.optim.Optimizer], sparse: bool, **settings: float) -> torch.Tensor:
    """Six steps of ``optimizer_class`` on one table from fixed gradients (sparse: uncoalesced, duplicate rows)."""
    generator = torch.Generator().manual_seed(1)
    p = torch.nn.Parameter(torch.randn(7, 5, generator=generator))
    optimizer = optimizer_class([p], lr=0.3, **settings)
    for _ in range(6):
        ids = torch.randint(7, (6,), generator=generator)
        values = torch.randn(6, 5, generator=generator)
        grad = torch.sparse_coo_tensor(ids.unsqueeze(0), values, (7, 5), check_invariants=True)
        p.grad = grad if sparse else grad.to_dense()
        optimizer.step()
    return p.detach()


@pytest.mark.filterwarnings("ignore:Sparse invariant checks")  # torch's Adagrad, the reference
@pytest.mark.parametrize(("sparse", "settings"), [
    (False, {"lr_decay": 0.1, "weight_decay": 0.05, "initial_accumulator_value": 0.2, "eps": 1e-3}),
    (False, {"maximize": True}),
    (True, {"lr_decay": 0.1, "initial_accumulator_value": 0.2, "eps": 1e-3}),
    (True, {}),
])
def test_kgems_adagrad_steps_as_torchs_in_one_process(sparse: bool, settings: dict) -> None:
    from kgem.training.optim import Adagrad

    ours, torchs = _adagrad_steps(Adagrad, sparse, **settings), _adagrad_steps(torch.optim.Adagrad, sparse, **settings)
    if settings:
        assert not torch.equal(ours, _adagrad_steps(Adagrad, sparse))  # the settings took effect
    torch.testing.assert_close(ours, torchs, rtol=1e-6, atol=1e-7)


def test_kgems_adagrad_keeps_torchs_state_and_refuses_what_it_does_not_implement() -> None:
    from kgem.training.optim import Adagrad

    p = torch.nn.Parameter(torch.ones(3, 2))
    ours = build_optimizer("adagrad", [p], lr=0.1, initial_accumulator_value=0.5)
    assert isinstance(ours, Adagrad) and isinstance(ours, torch.optim.Adagrad) and type(ours).__name__ == "Adagrad"
    torchs = torch.optim.Adagrad([p], lr=0.1, initial_accumulator_value=0.5)
    assert ours.state_dict()["param_groups"] == torchs.state_dict()["param_groups"]
    ours.load_state_dict(torchs.state_dict())  # checkpoints written before (torch's class) load
    assert set(ours.state[p]) == {"step", "sum"}
    for setting in ({"foreach": True}, {"fused": True}, {"differentiable": True}):
        with pytest.raises(ConfigError, match=f"adagrad.*{next(iter(setting))}"):
            build_optimizer("adagrad", [p], lr=0.1, **setting)
    with pytest.raises(ValueError, match="complex"):
        Adagrad([torch.nn.Parameter(torch.ones(2, dtype=torch.complex64))])


@pytest.mark.parametrize(("name", "args"), [("transe", {"normalize": "none"}), ("transe", {"normalize": "forward"}),
                                            ("complex", {}), ("rgcn", {"graph": torch.tensor([[0, 0, 1], [2, 1, 3]])})])
def test_a_worker_scores_against_its_own_copy_of_a_shared_table(name: str, args: dict) -> None:
    """With dense lookups, a batch naming more ids than there are entities scored against the whole shared table
    (``Model.candidates``), whose backward (the sampled distance's, a normalisation's, a product's) read it again:
    another worker's write in between gave a gradient of values the forward never saw, magnified where the
    backward divides by a forward-time distance. In ``private_tables`` (HOGWILD workers) the forward copies it."""
    hrt = torch.tensor([[0, 0, 1], [2, 1, 3], [4, 0, 5]])
    negatives = torch.tensor([[1, 2], [3, 4], [5, 0]])  # 6 ids for 6 entities: the whole table, not a gather

    def gradients(model, *, private: bool, write: bool) -> list[torch.Tensor]:
        with model.private_tables(private):
            pos, neg, _ = score_sampled(model, hrt, negatives, torch.tensor([False, True, False]))
            loss = (neg - pos.unsqueeze(1)).sigmoid().sum() + model.score_t(hrt[:, 0], hrt[:, 1]).square().sum()
        if write:  # another process's write: through .data, which autograd's version counter does not see
            table = model.entity.base.weight if name == "rgcn" else model.entity.weight
            table.data.mul_(-3.0).add_(0.5)
        loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    torch.manual_seed(0)
    model = build_model(name, 6, 2, 4, **args)
    expected = gradients(copy.deepcopy(model), private=False, write=False)
    live = gradients(copy.deepcopy(model), private=False, write=True)
    assert not all(torch.allclose(a, b) for a, b in zip(live, expected, strict=True))  # the live table's gradient
    for got, want in zip(gradients(model, private=True, write=True), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
