"""Hyper-parameter search on Optuna: ``hpo(config)`` and ``kgem optimize CONFIG``.

The search space is part of the config (``hpo.search_space``): ranges for any config key by its dotted name, as
PyKEEN's ``*_kwargs_ranges``::

    hpo:
      search_space:
        model.dim: {type: int, low: 16, high: 128, log: true}
        training.lr: {type: float, low: 0.001, high: 0.3, log: true}
        training.loss: {type: categorical, choices: [softplus, cross_entropy]}

Every trial is a normal run folder (``trials/trial-0007``: checkpoints, model, metrics), ranked by its best
validation MRR, which it reports at every early-stopping check so that a pruner can stop a poor trial there. The
study lives in SQLite in the output folder (``study.db``), so a search that was killed resumes where it stopped:
run the same command again. A trial that was cut short continues from its newest checkpoint, in its own folder.
The best trial's config is written to ``best_config.yaml``; training it again gives the same metrics.

Optuna is an optional extra: ``pip install 'kgem[hpo]'``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from kgem.config import apply_overrides, from_dict, load_config, save_config, to_dict, yaml_value
from kgem.configs import HpoConfig, PipelineConfig
from kgem.errors import ConfigError, EvaluationError, TrainingError
from kgem.lock import FolderLock
from kgem.pipeline import absolute_paths, pipeline, resolve_config
from kgem.training import Checkpoints

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("kgem")

HINT = "hyper-parameter search needs optuna: pip install 'kgem[hpo]'"
STUDY = "kgem"  # the study's name inside study.db
BASE = "search.yaml"  # the searched config, kept to refuse resuming a folder with another one
BEST = "best_config.yaml"
TRIALS = "trials"
KINDS = ("int", "float", "categorical")


@dataclass
class HpoResult:
    """A finished search: the Optuna study, one row per trial (``trials``: number, state, validation MRR, the
    sampled values by config key, run folder, test metrics), the best trial's number and config, and the output
    folder."""

    study: optuna.Study
    trials: pd.DataFrame
    best_trial: int
    best_config: PipelineConfig
    output: Path


def hpo(config: PipelineConfig | dict[str, Any] | str | os.PathLike[str],
        search_space: dict[str, dict[str, Any]] | None = None, *, output: str | os.PathLike[str],
        n_trials: int | None = None, sampler: str | None = None, pruner: str | None = None,
        pruner_args: dict[str, Any] | None = None, timeout: float | None = None, seed: int | None = None,
        overrides: list[str] | None = None, progress: bool = True) -> HpoResult:
    """Search ``search_space`` (default: the config's ``hpo.search_space``) for ``config`` into the folder
    ``output`` until ``n_trials`` trials have finished (completed or pruned).

    The other arguments, where given, replace the config's ``hpo`` settings: ``sampler`` (tpe, random, grid),
    ``pruner`` (none, median, percentile, successive_halving, hyperband, threshold) with ``pruner_args``,
    ``timeout`` (seconds after which no trial starts) and the sampler's ``seed``. Calling it again on the same
    ``output`` resumes the search; the folder is locked while a search runs there.
    """
    cfg = absolute_paths(resolve_config(config, overrides))
    given = {"search_space": search_space, "trials": n_trials, "sampler": sampler, "pruner": pruner,
             "pruner_args": pruner_args, "timeout": timeout, "seed": seed}
    cfg = from_dict(PipelineConfig, {**to_dict(cfg), "hpo": {**to_dict(cfg.hpo),
                                                             **{k: v for k, v in given.items() if v is not None}}})
    space = check_space(cfg)
    if not cfg.training.early_stopping:
        raise ConfigError("kgem optimize ranks trials by validation MRR: set training.early_stopping: true (with a "
                          "dataset that has a valid split)")
    optuna = import_optuna()
    folder = Path(output)
    with FolderLock(folder), quiet(optuna):
        check_same_search(cfg, folder)
        study = open_study(optuna, cfg.hpo, space, folder)
        resume_cut_short(optuna, study, folder)
        remaining = cfg.hpo.trials - len(finished(optuna, study))
        if remaining > 0:
            study.optimize(Objective(cfg, space, folder, progress), n_trials=remaining, timeout=cfg.hpo.timeout,
                           catch=(TrainingError, EvaluationError, ConfigError))
        return result(optuna, study, cfg, folder)


def import_optuna() -> Any:
    try:
        import optuna
    except ImportError as e:
        raise ConfigError(HINT) from e
    return optuna


@contextlib.contextmanager
def quiet(optuna: Any) -> Iterator[None]:
    """Optuna's per-trial INFO lines off while the search runs (kgem reports trials itself)."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def check_space(cfg: PipelineConfig) -> dict[str, dict[str, Any]]:
    """The search space, each range checked and each key tried on the config (an unknown key, a value of the wrong
    type or a range the config refuses is a ConfigError naming the key), before any trial runs."""
    space = cfg.hpo.search_space
    if not space:
        raise ConfigError("hpo.search_space is empty: give ranges by config key, e.g. "
                          "{training.lr: {type: float, low: 0.001, high: 0.1, log: true}}")
    for key, spec in space.items():
        check_range(key, spec)
        for value in corner_values(spec):
            try:
                apply_overrides(cfg, [f"{key}={yaml_value(value)}"])
            except ConfigError as e:
                raise ConfigError(f"hpo.search_space.{key}: {e}") from e
    return space


def check_range(key: str, spec: Mapping[str, Any]) -> None:
    where = f"hpo.search_space.{key}"
    kind = spec.get("type")
    if kind not in KINDS:
        raise ConfigError(f"{where}: type must be one of {', '.join(KINDS)}, got {kind!r}")
    allowed = {"int": {"type", "low", "high", "step", "log"}, "float": {"type", "low", "high", "step", "log"},
               "categorical": {"type", "choices"}}[kind]
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)} for type {kind}; known: "
                          f"{', '.join(sorted(allowed))}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choices must be a non-empty list")
        return
    low, high = spec.get("low"), spec.get("high")
    number = int if kind == "int" else (int, float)
    if not isinstance(low, number) or not isinstance(high, number) or isinstance(low, bool) or \
            isinstance(high, bool) or not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"{where}: low and high must be {kind}s with low <= high, got {low!r} and {high!r}")
    if spec.get("log") and low <= 0:
        raise ConfigError(f"{where}: a log range must be positive, got low {low}")
    step = spec.get("step")
    if spec.get("log") and step is not None and not (kind == "int" and step == 1):
        raise ConfigError(f"{where}: a log range takes no step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, number) or not step > 0):
        raise ConfigError(f"{where}: step must be a positive {kind}, got {step!r}")


def corner_values(spec: Mapping[str, Any]) -> list[Any]:
    return list(spec["choices"]) if spec["type"] == "categorical" else [spec["low"], spec["high"]]


def grid_values(key: str, spec: Mapping[str, Any]) -> list[Any]:
    """The values a grid search tries for ``key``: a categorical's choices, or an int range by its step."""
    if spec["type"] == "categorical":
        return list(spec["choices"])
    if spec["type"] == "int" and not spec.get("log"):
        return list(range(spec["low"], spec["high"] + 1, spec.get("step") or 1))
    raise ConfigError(f"hpo.search_space.{key}: a grid search needs finite values: a categorical, or an int range "
                      f"without log")


def suggest(trial: optuna.Trial, key: str, spec: Mapping[str, Any]) -> Any:
    if spec["type"] == "categorical":
        return trial.suggest_categorical(key, spec["choices"])
    if spec["type"] == "int":
        return trial.suggest_int(key, spec["low"], spec["high"], step=spec.get("step") or 1,
                                 log=bool(spec.get("log")))
    return trial.suggest_float(key, spec["low"], spec["high"], step=spec.get("step"), log=bool(spec.get("log")))


def open_study(optuna: Any, cfg: HpoConfig, space: dict[str, dict[str, Any]], folder: Path) -> optuna.Study:
    """The study in ``folder/study.db``, created or loaded, with the configured sampler and pruner. The sampler's
    seed is offset by the trials the study already holds, so that a resumed search draws new values."""
    study = optuna.create_study(study_name=STUDY, storage=study_url(folder), load_if_exists=True,
                                direction="maximize", pruner=make_pruner(optuna, cfg))
    seed = cfg.seed + len(study.get_trials(deepcopy=False))
    if cfg.sampler == "grid":  # the grid skips the combinations the study has run
        study.sampler = optuna.samplers.GridSampler({key: grid_values(key, spec) for key, spec in space.items()},
                                                    seed=seed)
    elif cfg.sampler == "random":
        study.sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        study.sampler = optuna.samplers.TPESampler(seed=seed)
    return study


def study_url(folder: Path) -> str:
    """The SQLite URL of the study kept in ``folder``."""
    return f"sqlite:///{(folder / 'study.db').resolve()}"


def make_pruner(optuna: Any, cfg: HpoConfig) -> Any:
    pruners = {"none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
               "percentile": optuna.pruners.PercentilePruner,
               "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
               "hyperband": optuna.pruners.HyperbandPruner, "threshold": optuna.pruners.ThresholdPruner}
    try:
        return pruners[cfg.pruner](**cfg.pruner_args)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"hpo.pruner_args for the {cfg.pruner} pruner: {e}") from e


def check_same_search(cfg: PipelineConfig, folder: Path) -> None:
    """Keep the searched config in ``folder``; a folder holding another search is refused, not mixed."""
    path = folder / BASE
    if path.is_file():
        if searched(load_config(PipelineConfig, path)) != searched(cfg):
            raise ConfigError(f"{folder} holds a search of another config ({path}); resume it with that config or "
                              f"choose a new output folder")
    else:
        save_config(cfg, path)


def searched(cfg: PipelineConfig) -> dict[str, Any]:
    """What makes two searches the same: the config and the space, sampler and pruner, not the budget (the trials
    and the timeout, which a resumed search may change)."""
    return to_dict(replace(cfg, hpo=replace(cfg.hpo, trials=1, timeout=None)))


def finished(optuna: Any, study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=done)


def resume_cut_short(optuna: Any, study: optuna.Study, folder: Path) -> None:
    """Mark the trials a killed search left running as failed, and queue each trial that was cut short (its run
    folder holds checkpoints, no finished trial claims it, it did not fail on its own) to continue there."""
    state = optuna.trial.TrialState
    storage = optuna.storages.RDBStorage(study_url(folder))
    study_id = storage.get_study_id_from_name(STUDY)
    for trial in study.get_trials(deepcopy=False, states=(state.RUNNING,)):  # the folder lock: nobody runs them
        storage.set_trial_state_values(storage.get_trial_id_from_study_id_trial_number(study_id, trial.number),
                                       state.FAIL)
    trials = study.get_trials(deepcopy=False)
    claimed = {t.user_attrs.get("run_folder") for t in trials if t.state in (state.COMPLETE, state.PRUNED)}
    claimed |= {t.user_attrs.get("resumes") for t in trials if t.state == state.WAITING}
    for trial in trials:
        run = trial.user_attrs.get("run_folder")
        if trial.state == state.FAIL and run and run not in claimed and "error" not in trial.user_attrs and \
                Checkpoints(folder / run / "checkpoints").all():
            study.enqueue_trial(trial.params, user_attrs={"resumes": run})
            claimed.add(run)
            log.info("trial %d was cut short: it continues from its checkpoint in %s", trial.number, run)


class Objective:
    """One trial: the config with the sampled values, trained in its run folder, reporting every validation to the
    pruner; its value is the best validation MRR."""

    def __init__(self, cfg: PipelineConfig, space: dict[str, dict[str, Any]], folder: Path, progress: bool) -> None:
        self.cfg, self.space, self.folder, self.progress = cfg, space, folder, progress

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        values = {key: suggest(trial, key, spec) for key, spec in self.space.items()}
        cfg = apply_overrides(self.cfg, [f"{key}={yaml_value(value)}" for key, value in values.items()])
        resumes = trial.user_attrs.get("resumes")
        run = resumes or f"{TRIALS}/trial-{trial.number:04d}"
        trial.set_user_attr("run_folder", run)

        def report(epoch: int, loss: float, valid: float | None) -> None:
            if valid is not None:
                trial.report(valid, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"validation MRR {valid:.4f} at epoch {epoch}")

        try:
            outcome = pipeline(cfg, output=self.folder / run, resume=resumes is not None, progress=self.progress,
                               callbacks=[report])
        except (TrainingError, EvaluationError, ConfigError) as e:
            trial.set_user_attr("error", " ".join(str(e).split()))
            raise
        if not outcome.history.validation:
            raise ConfigError(f"trial {trial.number} validated no epoch: kgem optimize needs a valid split and "
                              f"training.frequency <= training.epochs")
        for side, row in outcome.metrics().iterrows():
            if side == "both":
                for key, value in row.items():
                    trial.set_user_attr(f"test_{key}", float(value))
        return max(outcome.history.validation.values())


def result(optuna: Any, study: optuna.Study, cfg: PipelineConfig, folder: Path) -> HpoResult:
    """The search's table and best config (written to ``best_config.yaml``: a plain training config)."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise TrainingError(f"no trial of the search in {folder} completed (see the failed trials' errors with "
                            f"kgem optimize --table)")
    best = max(complete, key=lambda t: (t.value, -t.number))
    best_cfg = replace(apply_overrides(cfg, [f"{k}={yaml_value(v)}" for k, v in best.params.items()]),
                       hpo=HpoConfig())
    save_config(best_cfg, folder / BEST)
    return HpoResult(study, trials_table(study), best.number, best_cfg, folder)


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value (best validation MRR), the sampled values, run folder, test metrics
    and, for a trial that failed on its own, the error."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"number": t.number, "state": t.state.name.lower(), "valid_mrr": t.value, **t.params,
                     "run_folder": t.user_attrs.get("run_folder"),
                     **{k: v for k, v in t.user_attrs.items() if k.startswith("test_")},
                     **({"error": t.user_attrs["error"]} if "error" in t.user_attrs else {}),
                     "seconds": t.duration.total_seconds() if t.duration is not None else None})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).set_index("number")
    first = [c for c in ("state", "valid_mrr", "test_mrr") if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]
