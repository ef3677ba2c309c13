"""Mapped entity tables (model.storage: mapped): the rows live in a file, start and train bit for bit as in memory,
save as an ordinary model, and give their pages back to the page cache."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import kgem
from kgem.configs import ModelConfig
from kgem.errors import ConfigError
from kgem.models.representation import Embedding
from kgem.models.storage import BLOCK_ROWS, keep_resident_under, mapped, mapped_tables, release_pages
from kgem.pipeline import pipeline

SLCWA = {"approach": "slcwa", "optimizer": "rowadagrad", "loss": "softplus", "epochs": 2, "early_stopping": False}
ONE_VS_ALL = {"epochs": 2, "early_stopping": False, "batch_size": 512}


@pytest.mark.parametrize(("model", "training"), [({"name": "transe", "dim": 16}, SLCWA),
                                                 ({"name": "complex", "dim": 8}, ONE_VS_ALL)],
                         ids=["transe-slcwa-rowadagrad", "complex-1vsall-adagrad"])
def test_a_mapped_table_trains_bit_for_bit_as_the_in_memory_one(model, training, tmp_path) -> None:
    config = {"data": {"dataset": "umls"}, "model": model, "training": training}
    plain = pipeline(config, progress=False)
    stored = pipeline({**config, "model": {**model, "storage": "mapped"}}, progress=False, output=tmp_path / "run")
    assert mapped(stored.model.entity.weight) is not None and mapped(stored.model.relation.weight) is None
    assert stored.history.losses == plain.history.losses
    for (name, x), (_, y) in zip(plain.model.state_dict().items(), stored.model.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert stored.metrics()["mrr"].tolist() == plain.metrics()["mrr"].tolist()
    on_disk = np.fromfile(tmp_path / "run" / "tables" / "table-0.f32", dtype=np.float32)
    assert np.array_equal(on_disk.reshape(stored.model.entity.weight.shape), plain.model.entity.weight.detach())
    loaded = kgem.load(tmp_path / "run" / "model")
    assert mapped(loaded.model.entity.weight) is None  # a saved model is an ordinary one
    assert torch.equal(loaded.model.entity.weight, plain.model.entity.weight)


@pytest.mark.parametrize("initializer", [functools.partial(nn.init.normal_, std=0.1),
                                         functools.partial(nn.init.uniform_, a=-0.5, b=0.5),
                                         nn.init.xavier_uniform_], ids=["normal", "uniform", "xavier-whole"])
def test_block_by_block_initialisation_draws_what_one_call_draws(initializer, tmp_path) -> None:
    rows = BLOCK_ROWS + 1234  # two blocks, the second partial
    torch.manual_seed(3)
    plain = Embedding(rows, 6, initializer=initializer)
    torch.manual_seed(3)
    with mapped_tables(tmp_path, min_rows=1000):
        stored = Embedding(rows, 6, initializer=initializer)
        small = Embedding(999, 6)  # below min_rows: an ordinary table
    assert mapped(stored.weight) is not None and mapped(small.weight) is None
    assert torch.equal(plain.weight, stored.weight)


def resident_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_released_pages_leave_the_process_and_keep_their_data(tmp_path) -> None:
    with mapped_tables(tmp_path, min_rows=1):
        table = Embedding(100_000, 128)  # 51 MB
    release_pages(table)
    with torch.no_grad():
        table.weight.add_(1.0)  # every page resident again, and dirty
    before = resident_kib()
    checksum = float(table.weight.detach().double().sum())
    release_pages(table)
    after = resident_kib()
    assert before - after > 35 * 1024, (before, after)
    assert float(table.weight.detach().double().sum()) == checksum  # paged back in from the file, unchanged


def test_storage_dir_needs_mapped_storage() -> None:
    with pytest.raises(ConfigError, match="model.storage: mapped"):
        ModelConfig(storage_dir="/tmp/x")


def test_a_resident_limit_hands_pages_back_when_passed_and_changes_no_result(tmp_path) -> None:
    with mapped_tables(tmp_path / "limited", min_rows=1, resident_limit=1):  # always passed
        table = Embedding(100_000, 128)
    with torch.no_grad():
        table.weight.add_(1.0)
    before = resident_kib()
    keep_resident_under(table)
    assert before - resident_kib() > 35 * 1024
    config = {"data": {"dataset": "umls"}, "model": {"name": "transe", "dim": 16, "storage": "mapped"},
              "training": {**SLCWA, "batch_size": 64}}  # 82 steps an epoch: the limit is checked in it
    plain = pipeline(config, progress=False)
    limited = pipeline({**config, "model": {**config["model"], "storage_resident_mb": 1}}, progress=False)
    assert limited.history.losses == plain.history.losses
    assert torch.equal(limited.model.entity.weight, plain.model.entity.weight)
    with pytest.raises(ConfigError, match="storage_resident_mb"):
        ModelConfig(storage_resident_mb=100)


EVALUATE_MAPPED = """
import resource, sys, torch
from kgem.data.tensorfile import map_tensors, save_tensors
from kgem.evaluation import evaluate
from kgem.models import build_model
from kgem.models.storage import mapped_tables
torch.set_num_threads(1)
folder, mode = sys.argv[1:]
torch.manual_seed(0)
ids = torch.randint(200_000, (2, 2))
hrt = torch.stack([ids[0], torch.randint(3, (2,)), ids[1]], 1)
budget = 1 << 18  # 256 KiB score blocks: 16,384 entities at a time for the 4 queries
evaluate(build_model("transe", 200_000, 3, 8, p=2), hrt, memory_budget_bytes=budget)  # warm up, in memory
with mapped_tables(folder, min_rows=1000):
    model = build_model("transe", 200_000, 3, 512, p=2)  # the rows are initialised and handed back in blocks
if mode == "save":
    save_tensors({"entity.weight": model.entity.weight.detach()}, folder + "/saved.safetensors")
    sys.exit(0)
if mode == "loaded":  # copy-on-write, as kgem.load(mmap=True) maps a saved model
    model.load_state_dict(map_tensors(folder + "/saved.safetensors"), strict=False, assign=True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
evaluate(model, hrt, memory_budget_bytes=budget)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.parametrize("mode", ["written-through", "loaded"])
def test_evaluation_scans_a_mapped_table_without_holding_it(mode, tmp_path) -> None:
    """An exact evaluation reads every row of the table once per query batch (here, 4 batches of one query); the
    scan hands each block's pages back, so the process never holds the table (391 MiB), written through or loaded
    copy-on-write: it grows by a few blocks of candidate rows (16,384 x 512 floats, 32 MiB each, gathered and
    normalised), 435 MB when the pages stay."""
    steps = ["save", mode] if mode == "loaded" else [mode]
    for step in steps:
        done = subprocess.run([sys.executable, "-c", EVALUATE_MAPPED, str(tmp_path), step], capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
    table_kib = 200_000 * 512 * 4 // 1024
    assert int(done.stdout) < table_kib // 2, (done.stdout, table_kib)
