from __future__ import annotations

import math

import pytest
import torch

from kgem.data import KnownTriples, load_dataset
from kgem.errors import ConfigError
from kgem.models import build_model
from kgem.training import (
    LOSSES,
    REGULARIZERS,
    SLCWA,
    EarlyStopping,
    KvsAll,
    NegativeSampler,
    OneVsAll,
    Trainer,
    TrainingError,
    build_optimizer,
    build_scheduler,
)
from kgem.training.negatives import score_sampled
from kgem.training.samplers import corrupted

POS = torch.tensor([1.0, -2.0])
NEG = torch.tensor([[0.5, 2.0], [-3.0, 0.0]])


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_sampled_losses_against_hand_computed_values() -> None:
    pairs = [(p, n) for p, row in zip(POS.tolist(), NEG.tolist()) for n in row]
    cases = {
        "margin_ranking": sum(max(0, 1 - p + n) for p, n in pairs) / 4,
        "absolute_margin": sum(max(0, 1 + n) - p for p, n in pairs) / 4,
        "softplus": (sum(math.log1p(math.exp(-p)) for p in POS.tolist())
                     + sum(math.log1p(math.exp(n)) for n in NEG.flatten().tolist())) / 6,
        "cross_entropy": sum(-math.log(math.exp(p) / (math.exp(p) + sum(math.exp(n) for n in row)))
                             for p, row in zip(POS.tolist(), NEG.tolist())) / 2,
    }
    for name, expected in cases.items():
        assert LOSSES.get(name)().sampled(POS, NEG).item() == pytest.approx(expected, rel=1e-6), name
    assert LOSSES.get("bce")().sampled(POS, NEG).item() == pytest.approx(cases["softplus"], rel=1e-6)


def test_self_adversarial_against_hand_computed_value() -> None:
    margin, temp = 2.0, 0.5
    total = 0.0
    for p, row in zip(POS.tolist(), NEG.tolist()):
        w = [math.exp(temp * n) for n in row]
        w = [x / sum(w) for x in w]
        pos_term = -math.log(sig(margin + p))
        neg_term = -sum(wi * math.log(sig(-n - margin)) for wi, n in zip(w, row))
        total += (pos_term + neg_term) / 2
    loss = LOSSES.get("self_adversarial")(margin=margin, temperature=temp).sampled(POS, NEG)
    assert loss.item() == pytest.approx(total / 2, rel=1e-6)


@pytest.mark.parametrize("name", ["margin_ranking", "absolute_margin", "softplus", "bce", "self_adversarial",
                                  "cross_entropy"])
def test_masked_negatives_count_for_nothing(name) -> None:
    loss = LOSSES.get(name)()
    masked = torch.tensor([[0.5, float("-inf")], [-3.0, float("-inf")]])
    value = loss.sampled(POS, masked)
    assert torch.isfinite(value)
    if name in ("margin_ranking", "absolute_margin", "self_adversarial", "cross_entropy"):
        pos, neg = POS.clone().requires_grad_(), masked.clone().requires_grad_()
        loss.sampled(pos, neg).backward()
        assert torch.all(neg.grad[:, 1] == 0)


def test_full_losses() -> None:
    scores = torch.tensor([[2.0, 0.0, -1.0]])
    labels = torch.tensor([[1.0, 1.0, 0.0]])
    ce = LOSSES.get("cross_entropy")().full(scores, labels).item()
    logz = math.log(sum(math.exp(s) for s in scores[0].tolist()))
    assert ce == pytest.approx(-(0.5 * (2 - logz) + 0.5 * (0 - logz)), rel=1e-6)
    smooth = LOSSES.get("bce")(label_smoothing=0.3).full(scores, labels).item()
    targets = [0.7 + 0.1, 0.7 + 0.1, 0.1]
    expected = -sum(y * math.log(sig(s)) + (1 - y) * math.log(1 - sig(s))
                    for y, s in zip(targets, scores[0].tolist())) / 3
    assert smooth == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ConfigError, match="does not apply to KvsAll"):
        LOSSES.get("margin_ranking")().full(scores, labels)


def test_regularizers() -> None:
    x = torch.tensor([[1.0, -2.0], [0.0, 3.0]])
    z = torch.complex(torch.tensor([[3.0]]), torch.tensor([[4.0]]))
    assert REGULARIZERS.get("lp")(weight=0.5, p=1)([x]).item() == pytest.approx(0.5 * 6 / 2)
    assert REGULARIZERS.get("lp")(weight=1.0, p=2)([x, x]).item() == pytest.approx(2 * 14 / 2)
    assert REGULARIZERS.get("n3")(weight=1.0)([z]).item() == pytest.approx(125.0)
    with pytest.raises(ValueError, match="p must be"):
        REGULARIZERS.get("lp")(p=4)


def test_uniform_bernoulli_filtered_and_shared_sampling() -> None:
    ds = load_dataset("nations")
    hrt = ds.train.hrt
    g = torch.Generator().manual_seed(0)
    uniform = NegativeSampler(50)
    uniform.prepare(hrt, ds.num_entities, ds.num_relations)
    neg = uniform.sample(hrt, g)
    assert neg.ids.shape == (len(hrt), 50) and 0.45 < neg.corrupt_head.float().mean() < 0.55
    bern = NegativeSampler(5, bernoulli=True)
    bern.prepare(hrt, ds.num_entities, ds.num_relations)
    assert bern.head_probability is not None and ((bern.head_probability > 0) & (bern.head_probability < 1)).all()
    known = KnownTriples(hrt, ds.num_entities, ds.num_relations)
    assert known.contains(corrupted(hrt, neg.corrupt_head, neg.ids).view(-1, 3)).any()  # unfiltered hits positives
    filtered = NegativeSampler(50, filtered=True)
    filtered.prepare(hrt, ds.num_entities, ds.num_relations)
    fneg = filtered.sample(hrt, g)
    assert fneg.known is not None and fneg.known.float().mean() < 0.01  # only (h, r) whose tails are nearly all true
    assert not known.contains(corrupted(hrt, fneg.corrupt_head, fneg.ids)[~fneg.known]).any()
    shared = NegativeSampler(7, shared=True)
    shared.prepare(hrt, ds.num_entities, ds.num_relations, tails_only=True)
    sneg = shared.sample(hrt[:10], g)
    assert sneg.ids.shape == (1, 7) and not sneg.corrupt_head.any()


def trained(approach, loss: str, seed: int = 0, epochs: int = 2, inverse: bool = False, model: str = "distmult"):
    ds = load_dataset("nations")
    torch.manual_seed(seed)
    m = build_model(model, ds.num_entities, ds.num_relations, 8, inverse=inverse)
    trainer = Trainer(m, approach, LOSSES.get(loss)(), build_optimizer("adam", m.parameters(), lr=0.01),
                      batch_size=256, seed=seed, progress=False)
    return m, trainer.fit(ds.train.hrt, epochs)


@pytest.mark.parametrize(("approach", "loss", "inverse"), [
    (lambda: SLCWA(NegativeSampler(4)), "softplus", False),
    (lambda: SLCWA(NegativeSampler(4, shared=True)), "margin_ranking", False),
    (lambda: SLCWA(NegativeSampler(4, bernoulli=True, filtered=True)), "self_adversarial", True),
    (lambda: KvsAll(), "bce", False),
    (lambda: KvsAll(), "bce", True),
    (lambda: OneVsAll(), "cross_entropy", False),
    (lambda: OneVsAll(), "cross_entropy", True),
])
def test_approaches_reduce_the_loss_and_are_deterministic(approach, loss, inverse) -> None:
    """Bit-exact: both runs in this process, same seed and thread count, on tensors PyTorch allocates (64-byte
    aligned), so every kernel reduces in the same order."""
    m1, h1 = trained(approach(), loss, epochs=6, inverse=inverse)
    m2, h2 = trained(approach(), loss, epochs=6, inverse=inverse)
    assert h1.losses == h2.losses and torch.equal(m1.entity.weight, m2.entity.weight)
    assert h1.losses[-1] < h1.losses[0]


def test_nan_loss_names_epoch_and_batch() -> None:
    ds = load_dataset("nations")
    m = build_model("distmult", ds.num_entities, ds.num_relations, 8)
    with torch.no_grad():
        m.entity.weight[3] = float("nan")
    trainer = Trainer(m, OneVsAll(), LOSSES.get("cross_entropy")(), build_optimizer("adam", m.parameters(), lr=0.1),
                      batch_size=64, progress=False)
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 1, batch \d+"):
        trainer.fit(ds.train.hrt, 1)


def test_early_stopping_restores_best_weights() -> None:
    ds = load_dataset("nations")
    torch.manual_seed(0)
    m = build_model("distmult", ds.num_entities, ds.num_relations, 8)
    scores = iter([0.3, 0.5, 0.4, 0.2, 0.1, 0.9])
    snapshots = {}

    def validate(model) -> float:
        snapshots[len(snapshots) + 1] = model.entity.weight.detach().clone()
        return next(scores)

    trainer = Trainer(m, OneVsAll(), LOSSES.get("cross_entropy")(), build_optimizer("adam", m.parameters(), lr=0.1),
                      batch_size=256, progress=False)
    history = trainer.fit(ds.train.hrt, 10, EarlyStopping(validate, frequency=1, patience=3))
    assert history.stopped_early and len(history.losses) == 5 and history.best_epoch == 2
    assert torch.equal(m.entity.weight, snapshots[2])


def test_optimizer_and_scheduler_by_name() -> None:
    m = build_model("distmult", 5, 2, 4)
    opt = build_optimizer("sgd", m.parameters(), lr=0.1, momentum=0.9)
    assert opt.defaults["momentum"] == 0.9
    sched = build_scheduler("step", opt, step_size=1, gamma=0.5)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    with pytest.raises(ConfigError, match="unknown optimizer 'adamax'"):
        build_optimizer("adamax", m.parameters(), lr=0.1)


def test_sparse_embeddings_with_sparse_adam() -> None:
    ds = load_dataset("nations")
    torch.manual_seed(0)
    m = build_model("transe", ds.num_entities, ds.num_relations, 8, sparse=True)
    trainer = Trainer(m, SLCWA(NegativeSampler(4)), LOSSES.get("margin_ranking")(),
                      build_optimizer("sparseadam", m.parameters(), lr=0.01), batch_size=256, progress=False)
    history = trainer.fit(ds.train.hrt, 4)
    assert history.losses[-1] < history.losses[0]


@pytest.mark.parametrize("tails_only", [False, True])
def test_filtered_shared_negatives_mask_each_rows_true_triples(tails_only: bool) -> None:
    ds = load_dataset("nations")
    hrt = ds.train.hrt
    sampler = NegativeSampler(40, filtered=True, shared=True)
    sampler.prepare(hrt, ds.num_entities, ds.num_relations, tails_only=tails_only)
    neg = sampler.sample(hrt[:300], torch.Generator().manual_seed(0))
    assert neg.ids.shape == (1, 40) and neg.known is not None and neg.known.shape == (300, 40)
    truth = KnownTriples(hrt, ds.num_entities, ds.num_relations)
    expected = truth.contains(corrupted(hrt[:300], neg.corrupt_head, neg.ids).view(-1, 3)).view(300, 40)
    assert torch.equal(neg.known, expected) and expected.any() and not expected.all()


def test_filtered_shared_negatives_leave_known_triples_out_of_the_loss() -> None:
    ds = load_dataset("nations")
    torch.manual_seed(0)
    model = build_model("distmult", ds.num_entities, ds.num_relations, 8)
    batch = ds.train.hrt[:64]
    approach = SLCWA(NegativeSampler(30, filtered=True, shared=True))
    approach.prepare(ds.train.hrt, model)
    loss = LOSSES.get("margin_ranking")()
    value, _ = approach.step(model, batch, loss, torch.Generator().manual_seed(1))
    neg = approach.sampler.sample(batch, torch.Generator().manual_seed(1))
    pos, scores, _ = score_sampled(model, batch, neg.ids, neg.corrupt_head)
    assert neg.known is not None and neg.known.any()
    assert torch.equal(value, loss.sampled(pos, scores.masked_fill(neg.known, float("-inf"))))
    assert not torch.equal(value, loss.sampled(pos, scores))
