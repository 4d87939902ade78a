"""The study machinery of `brainvq tune` on real Optuna storages (no training here; the
trials that train are in tests/app/test_tune_cli.py): seeded sampling, study identity and
resume, marking dead workers' trials failed, storage errors."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from tiny import TINY_CONFIG

from brainvq.run_config import TuneConfig, load_run_config
from brainvq.training.search_space import parse_space
from brainvq.training.study import (
    TrialSeededTPE,
    best_trial,
    fail_dead_trials,
    make_storage,
    open_study,
)

SPACE = {"vqvae_train.lr": {"low": 1e-4, "high": 1e-2, "log": True}, "vqvae.beta": [0.1, 0.25]}


def _space(space: dict | None = None):
    config = load_run_config(TINY_CONFIG, {"tune": {"vqvae": space or SPACE}})
    return parse_space("vqvae", config), config


def _sampled(seed: int, n: int = 4) -> list[dict]:
    study = optuna.create_study(sampler=TrialSeededTPE(seed, n_startup_trials=2))
    study.optimize(
        lambda t: t.suggest_float("x", 0.0, 1.0) + (t.suggest_categorical("c", [1, 2]) > 1),
        n_trials=n,
    )
    return [t.params for t in study.trials]


def test_sampling_is_seeded_per_trial_number() -> None:
    first, again, other = _sampled(3), _sampled(3), _sampled(4)
    assert first == again  # one seed, the same values (TPE's modelled trials included)
    assert first != other
    assert first[0] != first[1]  # trial n draws from seed + n, not all from one seed


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{(tmp_path / 'study.db').as_posix()}"


def test_a_study_is_resumed_with_the_same_arguments_and_refused_with_others(
    tmp_path: Path,
) -> None:
    space, config = _space()
    baseline = space.baseline(config)
    study = open_study(_url(tmp_path), "s", space, TuneConfig(), 2.0, seed=0, baseline=baseline)
    assert [t.state for t in study.trials] == [TrialState.WAITING]  # the baseline, queued
    assert study.trials[0].params == {} and study.trials[0].user_attrs["baseline"]
    again = open_study(_url(tmp_path), "s", space, TuneConfig(), 2.0, seed=0, baseline=baseline)
    assert len(again.trials) == 1  # loaded, and the baseline is queued only once
    with pytest.raises(ValueError, match="made with another trial_minutes"):
        open_study(_url(tmp_path), "s", space, TuneConfig(), 3.0, seed=0)
    other, _ = _space({"vqvae_train.lr": {"low": 1e-4, "high": 1e-1, "log": True}})
    with pytest.raises(ValueError, match="made with another space"):
        open_study(_url(tmp_path), "s", other, TuneConfig(), 2.0, seed=0)
    assert open_study(_url(tmp_path), "t", other, TuneConfig(), 3.0, seed=0).study_name == "t"


def test_dead_local_workers_trials_are_failed_and_others_kept(tmp_path: Path) -> None:
    space, _ = _space()
    study = open_study(_url(tmp_path), "s", space, TuneConfig(), None, seed=0)
    host = socket.gethostname()
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its pid is free
    alive = subprocess.Popen(["sleep", "60"])
    try:
        workers = [
            {"host": host, "pid": gone.pid},  # killed on this machine: failed at once
            {"host": host, "pid": alive.pid},  # still running here: kept
            {"host": "elsewhere", "pid": gone.pid},  # another machine: left to its heartbeat
        ]
        for worker in workers:
            study.ask().set_user_attr("worker", worker)
        assert fail_dead_trials(study) == [0]
    finally:
        alive.kill()
        alive.wait()
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING]
    assert "interrupted" in study.trials[0].user_attrs["fail_reason"]
    assert fail_dead_trials(study) == [1]  # once that worker is gone too


def test_best_trial_follows_the_direction(tmp_path: Path) -> None:
    study = optuna.create_study(direction="minimize")
    for value in (3.0, 1.0, 2.0):
        study.add_trial(optuna.trial.create_trial(value=value))
    assert best_trial(study).value == 1.0
    assert best_trial(optuna.create_study()) is None


def test_a_storage_that_cannot_open_is_one_error_without_its_password(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        make_storage("postgresql://user:s3cret@127.0.0.1:9/db")
    assert "--storage" in str(info.value) and "s3cret" not in str(info.value)
    with pytest.raises(ValueError, match="--storage"):
        make_storage("not a url")
