"""An Optuna study of one training stage: its storage, its seeded TPE sampler and median
pruner, what all its workers must agree on, and the failing of trials whose worker died.

A study lives in an Optuna storage (SQLite by default, or any URL Optuna takes, e.g.
PostgreSQL for many machines). A worker that is killed leaves its trial RUNNING; the next
worker on the same machine marks it failed at once (its process is gone), and any worker does
so once its heartbeat is older than GRACE_S.
"""

from __future__ import annotations

import json
import math
import os
import random
import socket
import time
import warnings
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState

from brainvq.run_config import TuneConfig
from brainvq.training.objectives import OBJECTIVES
from brainvq.training.search_space import SearchSpace

# A trial reports its best value so far at every 1/PRUNE_STEPS of its budget (time or epochs,
# whichever is further along), so the pruner compares trials at equal shares of their budget
# whatever their speed, rather than at equal epochs.
PRUNE_STEPS = 20
HEARTBEAT_S = 30  # a running trial records a heartbeat this often
GRACE_S = 120  # a trial without a heartbeat for this long is failed by any worker
CREATE_TRIES = 5  # attempts to open a storage whose tables another worker is creating
CREATE_WAIT_S = 1.0  # between them (plus up to as much again at random)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def worker_id() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would end the process there; rely on heartbeats
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def shown_storage(url: str) -> str:
    """`url` with any password hidden, for files and messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: no password it could hide
        return url


def _storage_error(url: str, error: Exception) -> ValueError:
    message = " ".join(str(error).split())
    hint = ""
    if isinstance(error, ImportError):
        hint = " (install the database's driver, e.g. psycopg2-binary)"
    return ValueError(
        f"--storage {shown_storage(url)}: cannot open this Optuna storage: {message}{hint}"
    )


def make_storage(url: str) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage for `url` with heartbeats; SQLite waits for its lock up to 60 s,
    so several workers on one machine can share a study.db.

    Workers started together on a new storage race to create its tables (one finds a table
    the other just made: SQLite's OperationalError; PostgreSQL's duplicate type or table, an
    IntegrityError or ProgrammingError): a worker that loses tries again, up to CREATE_TRIES
    times after a jittered wait, and then finds the tables made."""
    import sqlalchemy.exc

    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    race = (
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.IntegrityError,
        sqlalchemy.exc.ProgrammingError,
    )
    try:
        for attempt in range(1, CREATE_TRIES + 1):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ExperimentalWarning)
                    return optuna.storages.RDBStorage(
                        url,
                        engine_kwargs=engine_kwargs,
                        heartbeat_interval=HEARTBEAT_S,
                        grace_period=GRACE_S,
                    )
            except race:
                if attempt == CREATE_TRIES:
                    raise
                time.sleep(CREATE_WAIT_S * (1 + random.random()))
    except (ImportError, sqlalchemy.exc.SQLAlchemyError, ValueError) as e:
        raise _storage_error(url, e) from None


class TrialSeededTPE(optuna.samplers.BaseSampler):
    """TPE whose random draws for trial n come from `seed + n`: a study run twice with one
    seed samples the same values, and two workers started together on one study do not
    propose the same configurations (as two TPE samplers with one seed would)."""

    def __init__(self, seed: int, n_startup_trials: int) -> None:
        self.seed = seed
        self.n_startup_trials = n_startup_trials
        self._tpe = self._make(seed)

    def _make(self, seed: int) -> optuna.samplers.TPESampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            # constant_liar: trials running in other workers count as bad ones, so that
            # parallel workers spread out instead of sampling around the same best point
            return optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=self.n_startup_trials, constant_liar=True
            )

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._tpe = self._make(self.seed + trial.number)
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._tpe.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._tpe.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._tpe.reseed_rng()


def study_identity(stage: str, space: SearchSpace, trial_minutes: float | None) -> dict:
    """What every worker of one study must agree on (kept in the study's user attributes)."""
    objective = OBJECTIVES[stage]
    return {
        "stage": stage,
        "metric": objective.metric,
        "direction": objective.direction,
        "space": space.describe(),
        "trial_minutes": trial_minutes,
    }


def open_study(
    storage: str,
    name: str,
    space: SearchSpace,
    tune: TuneConfig,
    trial_minutes: float | None,
    seed: int,
    baseline: dict[str, Any] | None = None,
) -> optuna.Study:
    """Create the study `name` in `storage`, or load it when it exists (a resume, or another
    worker). A study made with another stage, space or trial budget is refused. A new study
    starts with `baseline` (the base config's own values) as its first trial, so the study
    shows what tuning gains over the base config at the same budget."""
    direction = OBJECTIVES[space.stage].direction
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if tune.prune:
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=tune.startup_trials,
            n_warmup_steps=round(tune.prune_after * PRUNE_STEPS),
        )
    store = make_storage(storage)
    sampler = TrialSeededTPE(seed, tune.startup_trials)
    try:
        study = optuna.create_study(
            storage=store, study_name=name, direction=direction, sampler=sampler, pruner=pruner
        )
        created = True
    except optuna.exceptions.DuplicatedStudyError:  # a resume, or another worker made it
        study = optuna.load_study(study_name=name, storage=store, sampler=sampler, pruner=pruner)
        created = False
    identity = json.loads(json.dumps(study_identity(space.stage, space, trial_minutes)))
    found = study.user_attrs.get("brainvq")
    if found is None:
        study.set_user_attr("brainvq", identity)
    elif found != identity:
        key = next(k for k in identity if found.get(k) != identity[k])
        raise ValueError(
            f"study {name!r} in this storage was made with another {key} "
            f"({found.get(key)!r}, now {identity[key]!r}): run it with the arguments and "
            "config it was made with, or name a new one with --study"
        )
    if created and baseline is not None:  # only the worker that made the study adds it
        study.enqueue_trial(
            baseline, user_attrs={"baseline": True, "note": "baseline: the base config's values"}
        )
    return study


def _trial_id(study: optuna.Study, number: int) -> int:
    storage = study._storage  # the study's own storage; Optuna has no public accessor
    return storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), number
    )


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Mark failed the RUNNING trials whose worker ran on this machine and is gone (killed,
    or crashed); returns their numbers. Trials of other machines are left to the heartbeat."""
    me = worker_id()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker") or {}
        if worker.get("host") != me["host"]:
            continue
        pid = int(worker.get("pid", -1))
        if pid != me["pid"] and _alive(pid):
            continue
        trial_id = _trial_id(study, trial.number)
        try:
            study._storage.set_trial_user_attr(
                trial_id,
                "fail_reason",
                f"interrupted: its worker (pid {pid} on {me['host']}) stopped mid-trial",
            )
            study._storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        failed.append(trial.number)
    return failed


def state_counts(study: optuna.Study) -> dict[TrialState, int]:
    counts = dict.fromkeys(TrialState, 0)
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state] += 1
    return counts


def param_importances(study: optuna.Study) -> dict[str, float]:
    """Each parameter's importance for the objective over the completed trials (Optuna's
    default evaluator, normalised to sum 1); {} with fewer than 3 completed trials or when
    no parameter varied."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 3:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}
    return {k: float(v) for k, v in found.items() if math.isfinite(v)}


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The completed trial with the best objective (None before the first)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    sign = 1 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1
    return max(complete, key=lambda t: (sign * t.value, -t.number))
