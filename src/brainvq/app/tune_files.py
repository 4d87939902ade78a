"""The files a tuning study keeps in RUN/tune/ (brainvq.run.RunLayout), rewritten from the
study's storage after every trial so that they show every worker's trials: trials.csv (one row
per trial), summary.json (the study, its best trial and the parameters' importances, which the
figures and the report read) and best.yaml (the base config with the best values)."""

from __future__ import annotations

import csv
import io
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from brainvq.atomic import atomic_write_json, atomic_write_text
from brainvq.config import to_dict
from brainvq.run import RunLayout
from brainvq.run_config import RunConfig, load_run_config, merge
from brainvq.training.objectives import OBJECTIVES
from brainvq.training.search_space import SearchSpace, nested
from brainvq.training.study import best_trial, param_importances, shown_storage, state_counts


def trial_note(trial: FrozenTrial) -> str:
    attrs = trial.user_attrs
    if trial.state == TrialState.FAIL:
        return attrs.get("fail_reason", "no reason recorded (its worker lost its heartbeat)")
    if trial.state == TrialState.RUNNING:
        worker = attrs.get("worker") or {}
        return f"running (pid {worker.get('pid', '?')} on {worker.get('host', '?')})"
    return attrs.get("note", "")


def minutes_taken(trial: FrozenTrial) -> float | None:
    return None if trial.duration is None else trial.duration.total_seconds() / 60


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def trials_csv(trials: list[FrozenTrial], space: SearchSpace) -> str:
    """One row per trial: number, state, objective, minutes, epochs, sampled values, note."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    keys = [p.key for p in space.params]
    writer.writerow(["number", "state", "objective", "minutes", "epochs", *keys, "note"])
    for t in trials:
        writer.writerow(
            [
                t.number,
                t.state.name.lower(),
                _cell(t.value if t.state in (TrialState.COMPLETE, TrialState.PRUNED) else None),
                _cell(None if minutes_taken(t) is None else round(minutes_taken(t), 3)),
                _cell(t.user_attrs.get("epochs")),
                *(_cell(t.params.get(k)) for k in keys),
                trial_note(t),
            ]
        )
    return out.getvalue()


def best_yaml(base: RunConfig, space: SearchSpace, best: FrozenTrial, name: str) -> str:
    """The base config with the best trial's values, as a YAML file `--config` takes."""
    metric = OBJECTIVES[space.stage].metric
    config = load_run_config(None, merge(to_dict(base), nested(space.values(best.params))))
    header = (
        f"# brainvq tune: the base config with the best values of study {name!r}\n"
        f"# (trial {best.number}: {metric} {best.value:.4f}). Train with\n"
        "#   brainvq train all --config best.yaml --out NEW_RUN\n"
    )
    return header + yaml.safe_dump(to_dict(config), sort_keys=False)


def write_outputs(
    layout: RunLayout,
    study: optuna.Study,
    space: SearchSpace,
    base: RunConfig,
    *,
    name: str,
    storage: str | None,
    trials_target: int,
    trial_minutes: float | None,
) -> dict[str, Any]:
    """RUN/tune/trials.csv, summary.json and (once a trial completed) best.yaml, from every
    trial in the storage of study `name` (storage None: the default SQLite file). Returns
    summary.json."""
    objective = OBJECTIVES[space.stage]
    trials = study.get_trials(deepcopy=False)
    atomic_write_text(layout.tune_trials, trials_csv(trials, space))
    best = best_trial(study)
    if best is not None:
        atomic_write_text(layout.tune_best, best_yaml(base, space, best, name))
    baseline = next((t for t in trials if t.user_attrs.get("baseline")), None)
    counts = state_counts(study)
    summary = {
        "study": name,
        "stage": space.stage,
        "metric": objective.metric,
        "direction": objective.direction,
        "storage": None if storage is None else shown_storage(storage),
        "trials_target": trials_target,
        "trial_minutes": trial_minutes,
        "space": space.describe(),
        "counts": {state.name.lower(): n for state, n in counts.items()},
        "best": None
        if best is None
        else {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            "run": str(layout.tune_trial(best.number).relative_to(layout.root)),
        },
        "baseline": None
        if baseline is None
        else {
            "number": baseline.number,
            "state": baseline.state.name.lower(),
            "value": baseline.value,
        },
        "importances": param_importances(study),
    }
    atomic_write_json(layout.tune_summary, summary)
    return summary
