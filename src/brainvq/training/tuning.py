"""Hyperparameter tuning trials: the objective that trains one trial, pruning at epoch ends,
and the worker loop that any number of processes or machines run on one study
(brainvq.training.study).

Each trial trains one stage from the base config with sampled values (brainvq.training.
search_space) for a budget of minutes, in its own run directory RUN/tune/trials/<number>/,
and its objective is the best validation value the trainer logged: val/ssim for the VQ-VAE
(higher is better), val/nll_bits for the prior (lower is better). The test split is never
looked at.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import optuna
import torch
from lightning.pytorch.callbacks import Timer
from optuna.trial import FrozenTrial, TrialState

from brainvq.config import to_dict
from brainvq.data.sliceset import SliceSet
from brainvq.run import RunLayout
from brainvq.run_config import RunConfig, load_run_config, merge, save_run_config
from brainvq.training.guards import NonFiniteLossError
from brainvq.training.objectives import OBJECTIVES, Objective
from brainvq.training.search_space import SearchSpace, nested
from brainvq.training.study import (
    FINISHED,
    PRUNE_STEPS,
    fail_dead_trials,
    state_counts,
    worker_id,
)


class TrialFailed(Exception):
    """A trial that could not finish (NaN loss, out of memory, no validation result): the
    study records it as failed, with its reason in the trial's user attribute fail_reason,
    and goes on."""


def trial_progress(trainer: L.Trainer) -> float:
    """Share of the trial's budget spent (0..1): epochs or minutes, whichever is further."""
    progress = (trainer.current_epoch + 1) / max(1, trainer.max_epochs or 1)
    for callback in trainer.callbacks:
        if isinstance(callback, Timer):
            elapsed = callback.time_elapsed("train")
            remaining = callback.time_remaining("train") or 0.0
            progress = max(progress, elapsed / max(elapsed + remaining, 1e-9))
    return min(1.0, progress)


class EpochEndPruning(L.Callback):
    """After each validation: report the trial's best value so far at every step of
    PRUNE_STEPS its budget has passed, and ask the pruner. A pruned trial stops the trainer
    cleanly at this epoch's end (`pruned_at` is then the share of its budget it had spent)."""

    def __init__(self, trial: optuna.Trial, objective: Objective) -> None:
        self.trial = trial
        self.metric = objective.metric
        self.better = objective.better
        self.best: float | None = None
        self.reported = 0
        self.pruned_at: float | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.metric])
        if not math.isfinite(value):
            return
        self.best = value if self.best is None else self.better(self.best, value)
        progress = trial_progress(trainer)
        step = min(PRUNE_STEPS, math.floor(progress * PRUNE_STEPS + 1e-9))
        for s in range(self.reported + 1, step + 1):
            self.trial.report(self.best, s)
        self.reported = max(self.reported, step)
        if 0 < step < PRUNE_STEPS and self.trial.should_prune():
            self.pruned_at = progress
            trainer.should_stop = True


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (MemoryError, torch.cuda.OutOfMemoryError)):  # any device in torch >= 2.5
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link (else copy) every file of `src` into `dst`. Bundles and code maps are only
    ever replaced by renames, never written in place, so a link cannot change under a trial."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link)


@dataclass
class TrialSetup:
    """What every trial of one worker shares."""

    base: RunConfig
    space: SearchSpace
    sliceset: SliceSet
    layout: RunLayout  # the tuning run: trials go to RUN/tune/trials/<number>/
    trials: int  # finished (complete or pruned) trials the study aims for
    trial_minutes: float | None
    vqvae_bundle: Path | None = None  # prior studies: the VQ-VAE every trial trains on
    on_start: Callable[[int, dict[str, Any]], None] | None = None

    @property
    def stage(self) -> str:
        return self.space.stage


def trial_config(setup: TrialSetup, values: dict[str, Any]) -> RunConfig:
    """The base config with a trial's `values` (dotted key -> value) and the trial budget."""
    doc = merge(to_dict(setup.base), nested(values))
    doc = merge(doc, {f"{setup.stage}_train": {"max_minutes": setup.trial_minutes}})
    return load_run_config(None, doc)


def best_logged(history: Path, objective: Objective) -> tuple[float | None, int]:
    """The best finite value of the objective's metric in a stage's history.json, and its
    number of rows."""
    rows = json.loads(history.read_text(encoding="utf-8")) if history.is_file() else []
    metric = objective.metric
    values = [r[metric] for r in rows if metric in r and math.isfinite(r[metric])]
    if not values:
        return None, len(rows)
    return functools.reduce(objective.better, values), len(rows)


def run_trial(trial: optuna.Trial, setup: TrialSetup) -> float:
    """Train one trial and return its objective; raises TrialFailed or optuna.TrialPruned."""
    from brainvq.training.fit_prior import fit_prior
    from brainvq.training.fit_vqvae import fit_vqvae

    stage = setup.stage
    objective = OBJECTIVES[stage]
    metric = objective.metric
    ahead = [
        t
        for t in trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
        if t.number < trial.number
    ]
    if len(ahead) >= setup.trials:  # another worker took the last trial as this one began
        trial.set_user_attr("surplus", True)
        reason = f"not run: the study already had its {setup.trials} trials done or running"
        trial.set_user_attr("fail_reason", reason)
        raise TrialFailed(reason)
    trial.set_user_attr("worker", worker_id())
    values = setup.space.suggest(trial)
    config = trial_config(setup, values)
    run = RunLayout(setup.layout.tune_trial(trial.number))
    if run.root.exists():
        raise ValueError(
            f"{run.root} exists but belongs to no trial of this study (left by another study "
            f"in {setup.layout.tune}?): remove {setup.layout.tune} to start afresh, or use "
            "another --out"
        )
    run.root.mkdir(parents=True)
    save_run_config(config, run.config)
    if stage == "prior":
        _link_tree(setup.vqvae_bundle, run.bundle("vqvae"))
        _link_tree(setup.layout.tune_codes, run.codes)
    if setup.on_start is not None:
        setup.on_start(trial.number, values)
    pruning = EpochEndPruning(trial, objective)
    fit = fit_vqvae if stage == "vqvae" else fit_prior
    start = time.perf_counter()
    try:
        fit(run.root, config, setup.sliceset, callbacks=[pruning], progress_bar=False)
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into SystemExit(1)
        trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
        raise KeyboardInterrupt from None
    except Exception as e:
        reason = f"{type(e).__name__}: {' '.join(str(e).split())}"
        trial.set_user_attr("fail_reason", reason)
        if isinstance(e, NonFiniteLossError) or _is_out_of_memory(e):
            raise TrialFailed(reason) from e
        raise
    finally:
        shutil.rmtree(run.checkpoints(stage), ignore_errors=True)  # for resuming only
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    value, epochs = best_logged(run.history(stage), objective)
    trial.set_user_attr("epochs", epochs)
    trial.set_user_attr("train_minutes", round((time.perf_counter() - start) / 60, 3))
    if value is None:
        reason = f"no finite {metric}: the trial ended before its first validation"
        trial.set_user_attr("fail_reason", reason)
        raise TrialFailed(reason)
    if pruning.pruned_at is not None:
        note = f"pruned after {pruning.pruned_at:.0%} of its budget (best {metric} {value:.4g})"
        trial.set_user_attr("note", note)
        raise optuna.TrialPruned(note)
    return value


def run_worker(
    study: optuna.Study,
    setup: TrialSetup,
    max_minutes: float | None = None,
    max_failed_in_a_row: int = 5,
    on_trial_end: Callable[[FrozenTrial], None] | None = None,
) -> str:
    """Run trials of `study` until it has `setup.trials` finished trials (all workers
    together), or no trial fits in `max_minutes` of this worker. Returns why it stopped.

    Raises ValueError when `max_failed_in_a_row` trials of this worker failed in a row."""
    start = time.monotonic()
    in_a_row = 0
    budget = setup.trial_minutes
    ended: list[FrozenTrial] = []
    while True:
        fail_dead_trials(study)
        counts = state_counts(study)
        done = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
        running = counts[TrialState.RUNNING]
        if done >= setup.trials:
            return f"the study has its {setup.trials} trials"
        if done + running >= setup.trials:
            return f"the study's last {running} trial(s) are running in other workers"
        if max_minutes is not None:
            left = max_minutes - (time.monotonic() - start) / 60
            if left <= 0 or (budget is not None and budget > left):
                return f"--max-minutes {max_minutes:g}: no time left for another trial"
        study.optimize(
            lambda trial: run_trial(trial, setup),
            n_trials=1,
            catch=(TrialFailed,),
            callbacks=[lambda _study, trial: ended.append(trial)],
            gc_after_trial=True,
        )
        trial = ended[-1]
        if on_trial_end is not None:
            on_trial_end(trial)
        if trial.user_attrs.get("surplus"):
            return f"the study has its {setup.trials} trials (done or running)"
        in_a_row = in_a_row + 1 if trial.state == TrialState.FAIL else 0
        if in_a_row >= max_failed_in_a_row:
            raise ValueError(
                f"{in_a_row} trials in a row failed (the last, trial {trial.number}: "
                f"{trial.user_attrs.get('fail_reason', 'no reason recorded')}); check the base "
                "config and the tune: space"
            )
