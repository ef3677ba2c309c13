"""Checkpoints resume exactly: after SIGTERM (bit for bit), after SIGKILL (to float rounding: the killed run was
another process), and from the previous one when the newest is corrupt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kgem.data import load_dataset
from kgem.models import build_model
from kgem.training import (
    LOSSES,
    REGULARIZERS,
    CheckpointError,
    Checkpoints,
    EarlyStopping,
    OneVsAll,
    Trainer,
    TrainingInterrupted,
    build_optimizer,
    build_scheduler,
)
from signals import sigterm_at


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def make_trainer(validate_hook=None) -> tuple[Trainer, EarlyStopping]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ds = load_dataset("umls")
    model = build_model("complex", ds.num_entities, ds.num_relations, 16, inverse=True)
    optimizer = build_optimizer("adam", model.parameters(), lr=0.01)
    trainer = Trainer(model, OneVsAll(), LOSSES.get("cross_entropy")(), optimizer,
                      regularizer=REGULARIZERS.get("n3")(weight=1e-3),
                      scheduler=build_scheduler("step", optimizer, step_size=2, gamma=0.5),
                      batch_size=512, seed=0, progress=False)

    def validate(m) -> float:  # a deterministic stand-in for validation MRR
        if validate_hook is not None:
            validate_hook()
        return -float(m.entity.weight.detach().norm())

    return trainer, EarlyStopping(validate, frequency=1, patience=100)


def run(directory: str, epochs: int, resume: bool = False) -> tuple[Trainer, list[float]]:
    trainer, stopper = make_trainer()
    hrt = load_dataset("umls").train.hrt
    history = trainer.fit(hrt, epochs, stopper, checkpoints=Checkpoints(directory), resume=resume)
    return trainer, history.losses


def assert_same(a: Trainer, b: Trainer) -> None:
    """Bit-exact: both runs in this process, on tensors PyTorch allocates (64-byte aligned, so every kernel reduces
    in the same order); a resume copies the checkpoint's weights into such tensors and uses its optimizer state only
    elementwise, which no alignment changes."""
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(x, y), name


def assert_close(a: Trainer, b: Trainer) -> None:
    """Close, not bit-exact: for runs partly computed in another process."""
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=name)


def test_resume_after_sigkill_gives_the_uninterrupted_result(tmp_path) -> None:
    """Losses and weights close, not bit-exact: the epochs before the kill ran in another process."""
    reference, ref_losses = run(str(tmp_path / "ref"), 6)
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_checkpoint as t; " \
           f"t.run({str(tmp_path / 'killed')!r}, 6)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 120
    while not (tmp_path / "killed" / "epoch-000002").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in (tmp_path / "killed").iterdir() if p.name.startswith("epoch-"))
    assert done[-1] < "epoch-000006"
    resumed, losses = run(str(tmp_path / "killed"), 6, resume=True)
    assert losses == pytest.approx(ref_losses, rel=1e-5)
    assert_close(resumed, reference)


def test_sigterm_checkpoints_then_stops_and_resume_matches(tmp_path) -> None:
    """Bit-exact losses and weights: every run in this process (see ``assert_same``)."""
    reference, ref_losses = run(str(tmp_path / "ref"), 4)
    trainer, stopper = make_trainer(validate_hook=lambda: os.kill(os.getpid(), signal.SIGTERM))
    hrt = load_dataset("umls").train.hrt
    with pytest.raises(TrainingInterrupted, match="after epoch 1"):
        trainer.fit(hrt, 4, stopper, checkpoints=Checkpoints(tmp_path / "term"))
    assert [p.name for p in Checkpoints(tmp_path / "term").all()] == ["epoch-000001"]
    resumed, losses = run(str(tmp_path / "term"), 4, resume=True)
    assert losses == ref_losses
    assert_same(resumed, reference)


def test_sigterm_mid_epoch_checkpoints_the_batch_and_resume_matches(tmp_path) -> None:
    """Bit-exact losses and weights: every run in this process (see ``assert_same``)."""
    reference, ref_losses = run(str(tmp_path / "ref"), 3)
    trainer, stopper = make_trainer()
    # UMLS has 2 * 5216 rows with inverses: 21 batches of 512 per epoch
    trainer.approach = sigterm_at(OneVsAll(), at=17)
    with pytest.raises(TrainingInterrupted, match="in epoch 1 after batch 17"):
        trainer.fit(load_dataset("umls").train.hrt, 3, stopper, checkpoints=Checkpoints(tmp_path / "mid"))
    assert [p.name for p in Checkpoints(tmp_path / "mid").all()] == ["epoch-000000-batch-000000017"]
    resumed, losses = run(str(tmp_path / "mid"), 3, resume=True)
    assert losses == ref_losses
    assert_same(resumed, reference)


def test_corrupt_latest_is_named_and_fallback_uses_the_one_before(tmp_path) -> None:
    run(str(tmp_path), 3)
    latest = Checkpoints(tmp_path).all()[-1]
    (latest / "tensors.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="epoch-000003"):
        run(str(tmp_path), 3, resume=True)
    state = Checkpoints(tmp_path).load_latest(fallback=True)
    assert state is not None and state["epoch"] == 2


def test_resume_from_the_early_stop_checkpoint_trains_no_further(tmp_path) -> None:
    hrt = load_dataset("umls").train.hrt
    reference, stopper = make_trainer()
    stopper.min_delta, stopper.patience = 1e9, 2  # the first validation is the best: stops at epoch 3
    history = reference.fit(hrt, 10, stopper, checkpoints=Checkpoints(tmp_path))
    assert history.stopped_early and len(history.losses) == 3 and history.best_epoch == 1
    # a crash after this checkpoint, before the caller saved the model: resume must end the same way
    validations = []
    resumed, again = make_trainer(validate_hook=lambda: validations.append(1))
    again.min_delta, again.patience = 1e9, 2
    after = resumed.fit(hrt, 10, again, checkpoints=Checkpoints(tmp_path), resume=True)
    assert after.losses == history.losses and after.validation == history.validation and validations == []
    assert after.stopped_early and after.best_epoch == 1
    assert_same(resumed, reference)  # the best (epoch 1) weights restored
    assert [p.name for p in Checkpoints(tmp_path).all()] == ["epoch-000002", "epoch-000003"]
