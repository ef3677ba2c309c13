"""Sharded training (PyTorch-BigGraph's partitions and buckets): the schedule covers every edge once with no two
ranks on one partition, negatives stay where they are told, a signal mid-epoch resumes exactly, mixed memory changes
nothing, and two processes reach the single process's validation MRR on UMLS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from kgem.data import load_dataset
from kgem.errors import CheckpointError, ConfigError
from kgem.models import build_model
from kgem.training import LOSSES, SLCWA, Checkpoints, Trainer, TrainingInterrupted, build_optimizer
from kgem.training.mixed import HostTable, trainable_tensors
from kgem.training.samplers import NegativeSampler
from kgem.training.sharded import Epoch, Partitions, rounds
from signals import kill_when_saved, sigterm_at


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_partitions_split_the_entities_evenly_and_buckets_hold_every_edge_once() -> None:
    hrt = load_dataset("nations").train.hrt
    parts = Partitions(14, 4, seed=3)
    assert sorted(torch.cat(parts.members).tolist()) == list(range(14))
    assert sorted(len(m) for m in parts.members) == [3, 3, 4, 4]
    assert torch.equal(parts.of, Partitions(14, 4, seed=3).of) and not torch.equal(parts.of, Partitions(14, 4, 4).of)
    buckets = parts.buckets(hrt)
    assert sorted(torch.cat(buckets).tolist()) == list(range(len(hrt)))
    for number, rows in enumerate(buckets):
        head, tail = divmod(number, 4)
        assert (parts.of[hrt[rows, 0]] == head).all() and (parts.of[hrt[rows, 2]] == tail).all()
    assert set(parts.resident(1).tolist()) == set(parts.members[0].tolist()) | set(parts.members[1].tolist())


@pytest.mark.parametrize(("count", "world"), [(1, 1), (4, 1), (4, 2), (6, 3), (5, 2)])
def test_a_schedule_trains_every_bucket_once_and_no_partition_twice_in_a_round(count: int, world: int) -> None:
    parts = Partitions(30, count, seed=0)
    sizes = [0 if b % 5 == 3 else 10 for b in range(count * count)]  # some buckets empty: never scheduled
    plan = rounds(parts, sizes, world, torch.Generator().manual_seed(1))
    trained = [b for taken in plan for b in taken if b is not None]
    assert sorted(trained) == [b for b in range(count * count) if sizes[b]]
    for taken in plan:
        assert len(taken) == world and taken[0] is not None
        touched = [p for b in taken if b is not None for p in parts.touched(b)]
        assert len(touched) == len(set(touched))
    if count >= 2 * world:  # PyTorch-BigGraph's rule: then the first rounds keep every rank busy
        assert None not in plan[0]


def test_an_epoch_of_several_passes_trains_a_slice_of_every_bucket_per_pass() -> None:
    hrt = load_dataset("nations").train.hrt
    parts = Partitions(14, 4, seed=0)
    buckets = parts.buckets(hrt)
    epoch = Epoch(parts, buckets, world=2, passes=3, seed=5)
    seen = [epoch.edges(n, rank) for n in range(len(epoch.rounds)) for rank in range(2)]
    assert sorted(torch.cat(seen).tolist()) == list(range(len(hrt)))
    assert {r.slice for r in epoch.rounds} == {0, 1, 2}
    again = Epoch(parts, buckets, world=2, passes=3, seed=5)
    assert all(torch.equal(again.edges(n, 1), epoch.edges(n, 1)) for n in range(len(epoch.rounds)))


def test_negatives_are_drawn_from_the_candidates_and_still_filtered() -> None:
    hrt = load_dataset("nations").train.hrt
    sampler = NegativeSampler(50, filtered=True)
    sampler.prepare(hrt, 14, 55)
    sampler.candidates = torch.tensor([2, 5, 7])
    drawn = sampler.sample(hrt[:64], torch.Generator().manual_seed(0))
    assert set(drawn.ids.unique().tolist()) <= {2, 5, 7}
    assert drawn.known is not None
    # a negative left unmasked is not a training triple
    assert not sampler.known.contains(_negatives(hrt[:64], drawn)[~drawn.known]).any()


def _negatives(hrt: torch.Tensor, drawn) -> torch.Tensor:
    from kgem.training.samplers import corrupted
    return corrupted(hrt, drawn.corrupt_head, drawn.ids)


def trainer(partitions: int = 4, mixed: bool = False, passes: int = 2, negatives: str = "graph",
            sampler_at: int | None = None, round_checkpoints: int = 0) -> Trainer:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ds = load_dataset("umls")
    model = build_model("complex", ds.num_entities, ds.num_relations, 16, inverse=True, sparse=True)
    if mixed:
        model.entity = HostTable(model.entity, torch.device("cpu"))
    optimizer = build_optimizer("rowadagrad", trainable_tensors(model), lr=0.1)
    approach = SLCWA(NegativeSampler(8))
    if sampler_at is not None:
        sigterm_at(approach, sampler_at)
    return Trainer(model, approach, LOSSES.get("softplus")(), optimizer, batch_size=256, seed=0, progress=False,
                   partitions=partitions, bucket_passes=passes, shard_negatives=negatives,
                   round_checkpoints=round_checkpoints)


def test_one_process_trains_its_buckets_in_turn_and_a_signal_resumes_at_the_next_round(tmp_path) -> None:
    hrt = load_dataset("umls").train.hrt
    reference = trainer()
    ref = reference.fit(hrt, 3, checkpoints=Checkpoints(tmp_path / "ref"))
    assert ref.losses[-1] < ref.losses[0]
    stopped = trainer(sampler_at=30)  # UMLS: 2 * 5216 rows over 16 buckets, 2 passes: ~48 steps an epoch
    with pytest.raises(TrainingInterrupted, match="in epoch 1"):
        stopped.fit(hrt, 3, checkpoints=Checkpoints(tmp_path / "mid"))
    resumed = trainer()
    history = resumed.fit(hrt, 3, checkpoints=Checkpoints(tmp_path / "mid"), resume=True)
    assert history.losses == ref.losses
    for (name, x), (_, y) in zip(reference.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(x, y), name


def fit_umls(directory: str, epochs: int, resume: bool = False) -> Trainer:
    """Sharded training of UMLS with a checkpoint every round (run in a subprocess by the kill test)."""
    run = trainer(round_checkpoints=1)
    run.fit(load_dataset("umls").train.hrt, epochs, checkpoints=Checkpoints(directory), resume=resume)
    return run


def test_a_killed_sharded_run_resumes_at_its_last_round(tmp_path) -> None:
    """Close, not bit-exact: the rounds before the kill ran in another process."""
    reference = fit_umls(str(tmp_path / "ref"), 4)
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_sharded as t; "
            f"t.fit_umls({str(tmp_path / 'killed')!r}, 4)")
    kill_when_saved(code, tmp_path / "killed", "epoch-000001-batch-*")  # a round of the second epoch saved
    resumed = fit_umls(str(tmp_path / "killed"), 4, resume=True)
    for (name, x), (_, y) in zip(reference.model.state_dict().items(), resumed.model.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=name)


def test_a_round_checkpoint_resumes_only_under_the_layout_that_wrote_it(tmp_path) -> None:
    hrt = load_dataset("umls").train.hrt
    with pytest.raises(TrainingInterrupted):
        trainer(sampler_at=5).fit(hrt, 2, checkpoints=Checkpoints(tmp_path))
    with pytest.raises(CheckpointError, match="4 partitions and 2 bucket pass"):
        trainer(partitions=2).fit(hrt, 2, checkpoints=Checkpoints(tmp_path), resume=True)
    plain = trainer()
    plain.partitions = None
    with pytest.raises(CheckpointError, match="of a run sharded"):
        plain.fit(hrt, 2, checkpoints=Checkpoints(tmp_path), resume=True)


def test_a_mixed_table_trains_sharded_exactly_as_the_plain_one() -> None:
    hrt = load_dataset("umls").train.hrt
    plain, mixed = trainer(negatives="bucket"), trainer(negatives="bucket", mixed=True)
    assert plain.fit(hrt, 2).losses == mixed.fit(hrt, 2).losses
    assert torch.equal(plain.model.entity.weight, mixed.model.entity.weight)


def test_sharded_training_refuses_what_it_cannot_shard() -> None:
    ds = load_dataset("nations")
    model = build_model("complex", ds.num_entities, ds.num_relations, 8, inverse=True)
    adam = build_optimizer("adam", model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="rowadagrad"):
        Trainer(model, SLCWA(NegativeSampler(4)), LOSSES.get("softplus")(), adam, partitions=2)
    with pytest.raises(ConfigError, match="'graph' or the 'bucket'"):
        Trainer(model, SLCWA(NegativeSampler(4)), LOSSES.get("softplus")(),
                build_optimizer("rowadagrad", model.parameters(), lr=0.1), partitions=2, shard_negatives="near")
    with pytest.raises(ConfigError, match="between 1 and the number of entities"):
        Partitions(14, 15, seed=0)


UMLS = [sys.executable, "-m", "kgem", "train", "--dataset", "umls", "--model", "complex", "--dim", "64",
        "--approach", "slcwa", "--optimizer", "rowadagrad", "--lr", "0.3", "--num-negatives", "64", "--loss",
        "softplus", "--epochs", "40", "-q", "--set", "training.regularizer=null", "--set", "training.frequency=5",
        "--set", "training.patience=100"]


def best_validation(out: Path) -> float:
    return float(pd.read_csv(out / "losses.csv")["valid_mrr"].max())


def test_two_sharded_processes_reach_the_single_process_validation_mrr_on_umls(tmp_path) -> None:
    runs = {"one": [], "two": ["--nproc", "2", "--distributed", "sharded", "--bucket-passes", "16"]}
    for name, extra in runs.items():
        done = subprocess.run([*UMLS, *extra, "--output", str(tmp_path / name)], capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = best_validation(tmp_path / "one"), best_validation(tmp_path / "two")
    assert one > 0.85
    assert two >= one - 0.02, (one, two)


NATIONS = [sys.executable, "-m", "kgem", "train", "--dataset", "nations", "--model", "transe", "--dim", "8",
           "--approach", "slcwa", "--optimizer", "rowadagrad", "--lr", "0.1", "--num-negatives", "8", "--epochs",
           "2", "-q", "--set", "training.early_stopping=false", "--nproc", "2", "--distributed", "sharded"]


@pytest.mark.parametrize("extra", [["--shard-negatives", "bucket"], ["--mixed"]], ids=["bucket", "mixed"])
def test_two_sharded_processes_exchange_bucket_rows_and_cpu_tables(extra: list[str], tmp_path) -> None:
    """Bucket negatives broadcast their rows; a mixed table (CPU memory) merges through the same collectives."""
    done = subprocess.run([*NATIONS, *extra, "--output", str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    losses = pd.read_csv(tmp_path / "run" / "losses.csv")["loss"]
    assert len(losses) == 2 and losses.notna().all() and losses.iloc[1] < losses.iloc[0]
