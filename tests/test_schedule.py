"""Learning-rate schedules: the rates the Trainer trains with, epoch by epoch, against hand-computed values; warm-up;
plateau; exact resume; the config and the command line reach them."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import pytest
import torch

from kgem.cli import build_parser
from kgem.cli.train import overrides_from_flags
from kgem.configs import TrainingConfig
from kgem.errors import ConfigError
from kgem.factory import trainer_from_config
from kgem.models import build_model
from kgem.pipeline import pipeline, resolve_config
from kgem.training import (
    LOSSES,
    SCHEDULERS,
    Checkpoints,
    EarlyStopping,
    EpochSchedule,
    OneVsAll,
    Trainer,
    TrainingInterrupted,
    build_optimizer,
    build_scheduler,
)

E, R = 12, 3
HRT = torch.tensor([[h, h % R, (3 * h + 1) % E] for h in range(E)])
C = math.cos(math.pi / 4)


def make_trainer(name: str | None, args: dict, warmup: int, epochs: int, seed: int = 0) -> tuple[Trainer, list]:
    """A tiny trainer (one batch per epoch) and the list that records the learning rate of every optimizer step."""
    torch.manual_seed(seed)
    model = build_model("distmult", E, R, 4, inverse=True)
    optimizer = build_optimizer("sgd", model.parameters(), lr=0.1)
    seen: list[float] = []
    optimizer.register_step_pre_hook(lambda opt, *_: seen.append(opt.param_groups[0]["lr"]))
    scheduler = build_scheduler(name, optimizer, warmup_epochs=warmup, epochs=epochs, **args)
    trainer = Trainer(model, OneVsAll(), LOSSES.get("cross_entropy")(), optimizer, scheduler=scheduler,
                      batch_size=1000, seed=seed, progress=False)
    return trainer, seen


@pytest.mark.parametrize(("name", "args", "warmup", "expected"), [
    ("step", {"step_size": 2, "gamma": 0.5}, 2, [0.1 / 3, 0.2 / 3, 0.1, 0.1, 0.05, 0.05, 0.025]),
    ("multistep", {"milestones": [1, 3], "gamma": 0.1}, 1, [0.05, 0.1, 0.01, 0.01, 0.001]),
    ("exponential", {"gamma": 0.5}, 0, [0.1, 0.05, 0.025, 0.0125]),
    ("cosine", {}, 1, [0.05, 0.1, 0.05 * (1 + C), 0.05, 0.05 * (1 - C)]),  # T_max = 5 epochs - 1 of warm-up
    ("cosine", {"T_max": 2, "eta_min": 0.01}, 0, [0.1, 0.055, 0.01, 0.01]),
    ("linear", {}, 0, [0.1, 0.075, 0.05, 0.025]),  # to 0 over the 4 epochs
    ("linear", {"total_iters": 2, "end_factor": 0.5}, 1, [0.05, 0.1, 0.075, 0.05, 0.05]),
    (None, {}, 3, [0.025, 0.05, 0.075, 0.1, 0.1]),
])
def test_trainer_trains_each_epoch_with_the_hand_computed_rate(name, args, warmup, expected) -> None:
    trainer, seen = make_trainer(name, args, warmup, epochs=len(expected))
    trainer.fit(HRT, len(expected))
    assert seen == pytest.approx(expected, rel=1e-12, abs=0)


def test_plateau_reduces_after_patience_validations_without_improvement() -> None:
    trainer, seen = make_trainer("plateau", {"factor": 0.5, "patience": 1}, 1, epochs=7)
    metrics = iter([9.0, 1.0, 2.0, 2.0, 1.5, 3.0, 3.0])  # epoch 1 is warm-up: its validation does not count
    trainer.fit(HRT, 7, EarlyStopping(lambda m: next(metrics), frequency=1, patience=100))
    # reductions after epochs 4 (no rise over 2.0) and 5; 6 sets a new best; 7 reduces again, after training
    assert seen == pytest.approx([0.05, 0.1, 0.1, 0.1, 0.05, 0.025, 0.025], rel=1e-12, abs=0)
    assert trainer.scheduler.get_last_lr() == pytest.approx([0.0125])


def test_plateau_needs_validation() -> None:
    trainer, _ = make_trainer("plateau", {}, 0, epochs=2)
    with pytest.raises(ConfigError, match="plateau.*validation"):
        trainer.fit(HRT, 2)


def test_the_pipeline_refuses_plateau_without_validation_before_training(tmp_path) -> None:
    """One check (the Trainer's) serves the pipeline too: nothing trains, nothing is left in the run folder."""
    toy = Path(__file__).parent / "data" / "toy"
    for setting in ("training.early_stopping=false", "data.files=[train.txt]"):  # the second: no valid split
        with pytest.raises(ConfigError, match="plateau scheduler steps on the validation metric.*early_stopping"):
            pipeline(data=toy, overrides=["model.dim=4", "training.scheduler=plateau", setting],
                     output=tmp_path / "run", progress=False)
        assert not (tmp_path / "run").exists()


def test_bad_scheduler_settings_are_config_errors() -> None:
    optimizer = build_optimizer("sgd", build_model("distmult", E, R, 4).parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="unknown scheduler 'cosinus'"):
        build_scheduler("cosinus", optimizer)
    with pytest.raises(ConfigError, match="scheduler step needs step_size"):
        build_scheduler("step", optimizer)
    with pytest.raises(ConfigError, match="scheduler cosine takes no argument 'gamma'; known: T_max, eta_min"):
        build_scheduler("cosine", optimizer, T_max=3, gamma=0.5)
    with pytest.raises(ConfigError, match="scheduler None takes no argument 'gamma'"):
        build_scheduler(None, optimizer, warmup_epochs=2, gamma=0.5)
    with pytest.raises(ConfigError, match="scheduler exponential: gamma must be positive"):
        build_scheduler("exponential", optimizer, gamma=0)
    with pytest.raises(ConfigError, match="scheduler plateau: factor"):
        build_scheduler("plateau", optimizer, factor=2)
    with pytest.raises(ConfigError, match="training.scheduler"):
        resolve_config({"training": {"scheduler": "cosinus"}})
    with pytest.raises(ConfigError, match="training.warmup_epochs must not be negative"):
        resolve_config({"training": {"warmup_epochs": -1}})
    with pytest.raises(ConfigError, match="training.scheduler_args.mode: scheduler plateau takes no argument 'mode'; "
                                          "known: factor, patience, threshold, min_lr$"):
        trainer_from_config(TrainingConfig(scheduler="plateau", scheduler_args={"mode": "max"}),
                            build_model("distmult", E, R, 4))
    with pytest.raises(ConfigError, match="training.scheduler_args: scheduler step needs step_size"):
        trainer_from_config(TrainingConfig(scheduler="step"), build_model("distmult", E, R, 4))


@pytest.mark.parametrize(("name", "args", "problem"), [
    ("cosine", {"eta_min": "0"}, "training.scheduler_args.eta_min: expected float, got '0'"),  # was a TypeError
    ("multistep", {"milestones": [1.5, 3]}, r"training.scheduler_args.milestones\[0\]: expected int, got 1.5"),
    ("plateau", {"factor": "0.5"}, "training.scheduler_args.factor: expected float, got '0.5'"),
    ("step", {"step_size": True}, "training.scheduler_args.step_size: expected int, got True"),
    (None, {"gamma": 0.5}, r"training.scheduler_args.gamma: no scheduler \(training.scheduler: null\) takes no"),
])
def test_scheduler_args_are_checked_by_name_and_type_as_every_args_section(name, args, problem) -> None:
    """As model.args, loss_args and optimizer_args: a string where a number belongs was a raw TypeError (eta_min),
    a fractional milestone was truncated to an integer epoch without a word."""
    cfg = TrainingConfig(scheduler=name, scheduler_args=args, warmup_epochs=1, epochs=4)
    with pytest.raises(ConfigError, match=problem):
        trainer_from_config(cfg, build_model("distmult", E, R, 4))


def test_config_names_every_scheduler() -> None:
    import typing

    hint = typing.get_type_hints(TrainingConfig)["scheduler"]
    assert {a for arg in typing.get_args(hint) for a in typing.get_args(arg)} == set(SCHEDULERS)


def run(directory, name: str, args: dict, stop_after: int | None = None) -> tuple[Trainer, list, list]:
    trainer, seen = make_trainer(name, args, 2, epochs=6)
    validated = []

    def validate(m) -> float:  # deterministic, and a signal once ``stop_after`` epochs are done
        validated.append(1)
        if len(validated) == stop_after:
            os.kill(os.getpid(), signal.SIGTERM)
        return -float(m.entity.weight.detach().norm())

    history = trainer.fit(HRT, 6, EarlyStopping(validate, frequency=1, patience=100),
                          checkpoints=Checkpoints(directory), resume=stop_after is None)
    return trainer, seen, history.losses


@pytest.mark.parametrize(("name", "args"), [("cosine", {}), ("plateau", {"factor": 0.5, "patience": 1})])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, name, args) -> None:
    reference, ref_seen, ref_losses = run(tmp_path / "ref", name, args)
    with pytest.raises(TrainingInterrupted, match="after epoch 3"):
        run(tmp_path / "cut", name, args, stop_after=3)
    resumed, seen, losses = run(tmp_path / "cut", name, args)
    assert seen == ref_seen[-len(seen):] and len(seen) == 3  # the rates of epochs 4..6, exactly
    assert losses == ref_losses
    assert resumed.scheduler.state_dict() == reference.scheduler.state_dict()
    for (key, a), b in zip(reference.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), key


def test_config_builds_the_schedule() -> None:
    cfg = TrainingConfig(optimizer="sgd", lr=0.1, scheduler="exponential", scheduler_args={"gamma": 0.5},
                         warmup_epochs=1, epochs=4)
    trainer = trainer_from_config(cfg, build_model("distmult", E, R, 4), progress=False)
    assert isinstance(trainer.scheduler, EpochSchedule)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)  # warm-up epoch 1 of 1
    trainer.scheduler.step()
    trainer.scheduler.step()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)  # 0.1 * 0.5 in the 2nd epoch after it
    cosine = trainer_from_config(TrainingConfig(scheduler="cosine", epochs=4), build_model("distmult", E, R, 4))
    assert cosine.scheduler.rule(1.0, 2) == pytest.approx(0.5)  # T_max defaults to the 4 epochs


def test_command_line_flags_reach_the_config() -> None:
    args = build_parser().parse_args(["train", "--scheduler", "step", "--warmup-epochs", "2", "--set",
                                      "training.scheduler_args.step_size=3"])
    cfg = resolve_config(None, overrides_from_flags(args))
    assert (cfg.training.scheduler, cfg.training.warmup_epochs) == ("step", 2)
    assert cfg.training.scheduler_args == {"step_size": 3}


@pytest.mark.parametrize(("name", "args", "problem"), [
    ("cosine", {"T_max": float("inf")}, "T_max must be a positive integer"),  # was accepted: a NaN learning rate
    ("step", {"step_size": 0.5}, "step_size must be a positive integer"),
    ("linear", {"total_iters": 3, "end_factor": float("nan")}, "end_factor must not be negative"),
    ("plateau", {"patience": 2.5}, "patience must be a positive integer"),
])
def test_counts_of_epochs_are_positive_integers(name, args, problem) -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ConfigError, match=problem):
        build_scheduler(name, optimizer, epochs=5, **args)
