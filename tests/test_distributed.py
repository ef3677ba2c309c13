"""Multi-process training on torch.distributed (gloo, 127.0.0.1 only), started as a user starts it: ``kgem train
--nproc 2`` (torchrun), and two "machines" meeting at a rendezvous endpoint. A replicated run must equal the single
process with the same global batch; a rank that dies must stop the others with an error, and the run resumes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import kgem
from kgem.training.distributed import Replicas

TRAIN = [sys.executable, "-m", "kgem", "train", "--dataset", "nations", "--dim", "8", "--epochs", "3", "-q",
         "--set", "training.early_stopping=false"]
TRANSE = ["--model", "transe", "--approach", "slcwa", "--loss", "margin_ranking", "--num-negatives", "8",
          "--optimizer", "rowadagrad", "--lr", "0.1", "--set", "training.shared_negatives=true"]


def run(args: list[str], out: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*args, "--output", str(out)], capture_output=True, text=True, timeout=timeout, check=False)


def assert_same_model(a: Path, b: Path) -> None:
    first, second = kgem.load(a / "model").model.state_dict(), kgem.load(b / "model").model.state_dict()
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=1e-5, atol=1e-6)
    assert (a / "losses.csv").read_text().splitlines()[0] == (b / "losses.csv").read_text().splitlines()[0]


def test_a_part_of_every_size_covers_the_batch_once() -> None:
    for world in (1, 2, 3, 5):
        for rows in (0, 1, 2, 7, 10):
            parts = [Replicas(rank, world).part(rows) for rank in range(world)]
            covered = [i for part in parts for i in range(rows)[part]]
            assert covered == list(range(rows))
            assert max(len(range(rows)[p]) for p in parts) - min(len(range(rows)[p]) for p in parts) <= 1


@pytest.mark.parametrize("model", [[], TRANSE], ids=["complex-1vsall", "transe-shared-sparse"])
def test_two_processes_train_as_one_does(model, tmp_path) -> None:
    single = run([*TRAIN, *model, "--threads", "1"], tmp_path / "one")
    assert single.returncode == 0, single.stderr
    double = run([*TRAIN, *model, "--nproc", "2"], tmp_path / "two")
    assert double.returncode == 0, double.stderr
    assert_same_model(tmp_path / "one", tmp_path / "two")
    assert not (tmp_path / "two" / "model" / "rank1").exists()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts its workers in sessions of their own: a process group kill
    would miss them)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(out: Path, extra: list[str]) -> list[subprocess.Popen[str]]:
    """Two 'machines' of one process each, meeting at machine 0's endpoint on 127.0.0.1."""
    endpoint = f"127.0.0.1:{free_port()}"
    args = [*TRAIN, *extra, "--nnodes", "2", "--nproc", "1", "--rdzv-endpoint", endpoint, "--output", str(out)]
    return [subprocess.Popen([*args, "--node-rank", str(rank)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True) for rank in range(2)]


def test_two_machines_meet_at_a_rendezvous_and_train_as_one(tmp_path) -> None:
    single = run([*TRAIN, "--threads", "1"], tmp_path / "one")
    assert single.returncode == 0, single.stderr
    nodes = two_nodes(tmp_path / "two", [])
    errors = [node.communicate(timeout=240)[1] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(error[-3000:] for error in errors)
    assert_same_model(tmp_path / "one", tmp_path / "two")


@pytest.mark.parametrize("mode", [[], [*TRANSE, "--distributed", "sharded"]], ids=["replicated", "sharded"])
def test_a_dead_machine_stops_the_other_with_an_error_and_the_run_resumes(mode, tmp_path) -> None:
    """Kill one 'machine' mid-training: the other's next collective fails within training.peer_timeout, it exits
    with an error naming the lost peer, and ``kgem resume --nproc 2`` finishes the run from the checkpoint."""
    out = tmp_path / "run"
    nodes = two_nodes(out, [*mode, "--epochs", "150", "--set", "training.peer_timeout=10"])
    checkpoints = out / "checkpoints"
    deadline = time.monotonic() + 120
    while not (checkpoints.exists() and any(checkpoints.iterdir())):  # training is under way
        assert time.monotonic() < deadline and all(node.poll() is None for node in nodes), \
            [node.communicate(timeout=30) for node in nodes]
        time.sleep(0.2)
    victim, survivor = nodes
    for pid in [victim.pid, *descendants(victim.pid)]:  # the machine: its kgem, its torchrun agent, its worker
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    victim.wait()
    start = time.monotonic()
    _, err = survivor.communicate(timeout=120)
    assert survivor.returncode != 0
    assert time.monotonic() - start < 60
    assert "another rank stopped answering" in err or "failed" in err
    resumed = subprocess.run([sys.executable, "-m", "kgem", "resume", str(out), "-q", "--nproc", "2"],
                             capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert len((out / "losses.csv").read_text().splitlines()) == 151
