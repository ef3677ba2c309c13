"""Partitioned training (PyTorch-BigGraph's scheme): only the current bucket's two partitions of the entity table in
memory, the same result whether the table between buckets is in memory or in a file, the affinity order sharing a
partition between consecutive buckets, and a killed run resuming at its last bucket."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import kgem
from kgem.data import load_dataset
from kgem.data.imports import import_triples
from kgem.models import build_model
from kgem.models.storage import mapped, mapped_tables
from kgem.pipeline import pipeline
from kgem.training import LOSSES, SLCWA, Checkpoints, Trainer, build_optimizer, partitioned
from kgem.training.samplers import NegativeSampler
from kgem.training.sharded import Partitions, rounds
from signals import kill_when_saved


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_contiguous_partitions_are_ranges_of_ids() -> None:
    parts = Partitions(10, 3, seed=0, contiguous=True)
    assert parts.bounds == [0, 3, 6, 10]
    assert [m.tolist() for m in parts.members] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    hrt = torch.tensor([[0, 0, 9], [5, 1, 4], [9, 0, 0], [2, 0, 1]])
    buckets = parts.buckets(hrt, block=2)  # the keys computed two rows at a time
    assert {b: rows.tolist() for b, rows in enumerate(buckets) if len(rows)} == {2: [0], 4: [1], 6: [2], 0: [3]}


def test_the_affinity_order_shares_a_partition_between_consecutive_buckets() -> None:
    parts = Partitions(64, 8, seed=0, contiguous=True)
    sizes = [1] * 64

    def shared(schedule: list[list[int | None]]) -> int:
        order = [r[0] for r in schedule]
        return sum(bool(set(parts.touched(a)) & set(parts.touched(b))) for a, b in itertools.pairwise(order))

    affinity = rounds(parts, sizes, 1, torch.Generator().manual_seed(0), "affinity")
    drawn = rounds(parts, sizes, 1, torch.Generator().manual_seed(0), "random")
    assert sorted(r[0] for r in affinity) == list(range(64))  # every bucket once
    assert shared(affinity) >= 60 > shared(drawn) + 20


def build(table_dir: Path | None, order: str = "affinity", seed: int = 0) -> Trainer:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    ds = load_dataset("umls")
    if table_dir is None:
        model = build_model("transe", ds.num_entities, ds.num_relations, 16, p=2)
    else:
        with mapped_tables(table_dir, min_rows=ds.num_entities):
            model = build_model("transe", ds.num_entities, ds.num_relations, 16, p=2)
    optimizer = build_optimizer("rowadagrad", model.parameters(), lr=0.1)
    return Trainer(model, SLCWA(NegativeSampler(8, shared=True)), LOSSES.get("margin_ranking")(margin=1.0),
                   optimizer, batch_size=256, seed=seed, progress=False, partitions=5, shard_negatives="bucket",
                   bucket_order=order, round_checkpoints=1)


def test_only_the_buckets_partitions_are_in_memory_while_it_trains(tmp_path, monkeypatch) -> None:
    run = build(tmp_path / "tables")
    table = run.model.entity.weight
    stored = table.data
    seen: list[tuple[int, list[int | None]]] = []
    step = run.optimizer.step

    def spy(*args, **kwargs):
        resident = run._resident
        assert resident is not None and resident.buffer is not None
        assert table.data_ptr() == resident.buffer.data_ptr()  # the table the step updates: the slots
        seen.append((len(table.data), list(resident.slots)))
        return step(*args, **kwargs)

    monkeypatch.setattr(run.optimizer, "step", spy)
    run.fit(load_dataset("umls").train.hrt, 1)
    capacity = -(-135 // 5)
    assert seen and all(rows == 2 * capacity for rows, _ in seen)
    assert table.data_ptr() == stored.data_ptr() and mapped(table) is not None  # after the epoch: in its file
    assert run._resident is not None and run._resident.slots == [None, None]


def test_a_table_in_a_file_trains_bit_for_bit_as_one_in_memory(tmp_path, monkeypatch) -> None:
    hrt = load_dataset("umls").train.hrt
    plain = build(None)
    monkeypatch.setattr(partitioned, "COPY_ROWS", 7)  # partitions copied in and out 7 rows at a time
    stored = build(tmp_path / "tables")
    assert plain.fit(hrt, 2).losses == stored.fit(hrt, 2).losses
    for (name, x), (_, y) in zip(plain.model.state_dict().items(), stored.model.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    on_disk = np.fromfile(tmp_path / "tables" / "table-0.f32", dtype=np.float32)
    assert np.array_equal(on_disk.reshape(plain.model.entity.weight.shape), plain.model.entity.weight.detach())


def fit_umls(directory: str, table_dir: str, epochs: int, resume: bool = False) -> Trainer:
    """Partitioned training of UMLS, its table in a file, a checkpoint after every bucket (run in a subprocess
    by the kill test)."""
    run = build(Path(table_dir))
    run.fit(load_dataset("umls").train.hrt, epochs, checkpoints=Checkpoints(directory), resume=resume)
    return run


def test_a_killed_partitioned_run_resumes_at_its_last_bucket(tmp_path) -> None:
    reference = fit_umls(str(tmp_path / "ref"), str(tmp_path / "ref-tables"), 3)
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_partitioned as t; "
            f"t.fit_umls({str(tmp_path / 'killed')!r}, {str(tmp_path / 'tables')!r}, 3)")
    kill_when_saved(code, tmp_path / "killed", "epoch-000001-batch-*")  # a bucket of the second epoch saved
    resumed = fit_umls(str(tmp_path / "killed"), str(tmp_path / "tables"), 3, resume=True)
    for (name, x), (_, y) in zip(reference.model.state_dict().items(), resumed.model.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=name)


def write_graph(path: Path, entities: int, triples: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    h, t = rng.integers(entities, size=triples), rng.integers(entities, size=triples)
    r = rng.integers(7, size=triples)
    path.write_text("".join(f"e{a}\tr{b}\te{c}\n" for a, b, c in zip(h, r, t)))
    return path


def test_import_train_evaluate_predict_alike_from_a_partitioned_table_on_disk_and_in_memory(tmp_path) -> None:
    import_triples(write_graph(tmp_path / "graph.tsv", 300, 3000), tmp_path / "data", ratios=[0.9, 0.05, 0.05])
    config = {"data": {"dataset": str(tmp_path / "data")},
              "model": {"name": "transe", "dim": 16, "inverse": False, "args": {"p": 2}},
              "training": {"approach": "slcwa", "optimizer": "rowadagrad", "loss": "margin_ranking", "epochs": 2,
                           "early_stopping": False, "num_negatives": 16, "shared_negatives": True,
                           "distributed": "sharded", "partitions": 4, "shard_negatives": "bucket",
                           "bucket_order": "affinity", "regularizer": None}}
    plain = pipeline(config, progress=False, output=tmp_path / "plain")
    disk = pipeline({**config, "model": {**config["model"], "storage": "mapped"}}, progress=False,
                    output=tmp_path / "disk")
    assert mapped(disk.model.entity.weight) is not None
    assert disk.history.losses == plain.history.losses
    assert disk.metrics().equals(plain.metrics())
    loaded, mapped_load = kgem.load(tmp_path / "plain" / "model"), kgem.load(tmp_path / "disk" / "model", mmap=True)
    assert mapped(mapped_load.model.entity.weight) is not None
    queries = [("e1", "r2"), ("e7", "r0")]
    assert mapped_load.predict_tails(queries, k=5).equals(loaded.predict_tails(queries, k=5))


def test_a_partitioned_table_in_a_file_trains_in_less_memory_than_the_table(tmp_path) -> None:
    """200,000 entities x 128 floats (98 MiB) in 8 partitions: training holds two (25 MiB), not the table."""
    code = f"""
import resource, sys, torch
from kgem.models import build_model
from kgem.models.storage import mapped_tables
from kgem.training import LOSSES, SLCWA, Trainer, build_optimizer
from kgem.training.samplers import NegativeSampler
torch.set_num_threads(1)
with mapped_tables({str(tmp_path)!r}, min_rows=1000):
    model = build_model("transe", 200_000, 3, 128, p=2)
ids = torch.randint(200_000, (2, 50_000))
hrt = torch.stack([ids[0], torch.randint(3, (50_000,)), ids[1]], 1)
trainer = Trainer(model, SLCWA(NegativeSampler(64, shared=True)), LOSSES.get("margin_ranking")(margin=1.0),
                  build_optimizer("rowadagrad", model.parameters(), lr=0.1), batch_size=1000, progress=False,
                  partitions=8, shard_negatives="bucket", bucket_order="affinity")
trainer.fit(hrt[:100], 1)  # warm up the allocator and the kernels
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
trainer.fit(hrt, 1)
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    before, after = (int(v) for v in done.stdout.split())
    table_kib = 200_000 * 128 * 4 // 1024
    assert after - before < table_kib // 2, (before, after, table_kib)
