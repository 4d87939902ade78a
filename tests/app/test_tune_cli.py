"""`brainvq tune` end to end on the tiny config (seconds per trial): a study writes every
output and its best.yaml trains as is; a prior study on a VQ-VAE run adds a section to the
run's report; a SIGKILLed worker's study continues; two workers share one study; a planted
bad learning rate is pruned and a NaN loss fails without stopping the study."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from tiny import TINY_CONFIG

from brainvq.app.cli import main
from brainvq.run_config import load_run_config
from brainvq.training.search_space import parse_space
from brainvq.training.study import open_study

SPACE = {
    "vqvae_train.lr": {"low": 1e-3, "high": 1e-2, "log": True},
    "vqvae.res_channels": [4, 8],
}


def tune_yaml(tmp_path: Path, epochs: int = 1, space: dict | None = None, **tune) -> Path:
    """tests/configs/tiny.yaml with `epochs` per trial and a small `tune:` section."""
    doc = yaml.safe_load(TINY_CONFIG.read_text(encoding="utf-8"))
    doc["vqvae_train"]["epochs"] = epochs
    doc["tune"] = {"vqvae": space or SPACE, "startup_trials": 2, **tune}
    path = tmp_path / f"tune_{epochs}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def tune_args(run: Path, config: Path, trials: int, *flags: str) -> list[str]:
    return [
        "tune",
        "--stage",
        "vqvae",
        "--data",
        "demo",
        "--config",
        str(config),
        "--out",
        str(run),
        "--trials",
        str(trials),
        "--accelerator",
        "cpu",
        *flags,
    ]


def load(run: Path, name: str = "vqvae") -> optuna.Study:
    url = f"sqlite:///{(run / 'tune' / 'study.db').as_posix()}"
    return optuna.load_study(study_name=name, storage=url)


def states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.trials]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_a_tiny_study_writes_every_output_and_best_yaml_trains(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(tune_args(run, tune_yaml(tmp_path), 3)) == 0
    tune = run / "tune"
    study = load(run)
    assert states(study) == ["COMPLETE"] * 3
    assert study.trials[0].user_attrs["baseline"]  # the base config's own values first
    assert study.trials[0].params == {"vqvae_train.lr": 0.003, "vqvae.res_channels": 8}
    rows = read_csv(tune / "trials.csv")
    assert [r["number"] for r in rows] == ["0", "1", "2"]
    assert set(rows[0]) >= {"state", "objective", "minutes", "epochs", "vqvae_train.lr", "note"}
    assert all(0 < float(r["objective"]) <= 1 and r["epochs"] == "1" for r in rows)
    summary = json.loads((tune / "summary.json").read_text(encoding="utf-8"))
    assert summary["metric"] == "val/ssim" and summary["counts"]["complete"] == 3
    best = max(study.trials, key=lambda t: t.value)
    assert summary["best"]["number"] == best.number
    assert summary["baseline"]["number"] == 0
    for name in ("tune_history.png", "tune_importances.png", "tune_top_params.png"):
        assert (tune / "figures" / name).stat().st_size > 1000, name
    for number in range(3):  # each trial a run of its own; checkpoints are for resuming only
        trial_run = tune / "trials" / str(number)
        assert (trial_run / "vqvae" / "VQVAE_Model" / "model.safetensors").is_file()
        assert not (trial_run / "vqvae" / "checkpoints").exists()
    out = capsys.readouterr().out
    assert f"best: trial {best.number}" in out and "optuna-dashboard sqlite:///" in out

    # best.yaml is the base config with the best values, and trains as it is
    best_yaml = tune / "best.yaml"
    config = load_run_config(best_yaml)
    assert config.vqvae_train.lr == best.params["vqvae_train.lr"]
    assert config.vqvae.res_channels == best.params["vqvae.res_channels"]
    again = tmp_path / "again"
    cmd = [
        "train",
        "vqvae",
        "--config",
        str(best_yaml),
        "--out",
        str(again),
        "--accelerator",
        "cpu",
    ]
    assert main(cmd) == 0
    trained = load_run_config(again / "config.yaml")
    assert trained.vqvae_train.lr == config.vqvae_train.lr
    assert trained.vqvae.res_channels == config.vqvae.res_channels

    # the same arguments again: the study is done, nothing more runs
    assert main(tune_args(run, tune_yaml(tmp_path), 3)) == 0
    assert len(load(run).trials) == 3
    assert "the study has its 3 trials" in capsys.readouterr().out


def test_a_prior_study_on_a_vqvae_run_and_the_report_section(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train = ["train", "vqvae", "--data", "demo", "--config", str(TINY_CONFIG), "--out", str(run)]
    assert main([*train, "--accelerator", "cpu"]) == 0
    assert main(["report", "--run", str(run)]) == 0
    space = {"prior_train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}
    doc = load_run_config(run / "config.yaml")
    assert doc.tune.prior == {}
    config = tmp_path / "prior.yaml"
    base = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    base["tune"]["prior"] = space
    config.write_text(yaml.safe_dump(base))
    args = ["tune", "--stage", "prior", "--out", str(run), "--config", str(config)]
    assert main([*args, "--trials", "2", "--accelerator", "cpu"]) == 0
    study = load(run, "prior")
    assert states(study) == ["COMPLETE", "COMPLETE"]
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert all(0 < t.value < 4 for t in study.trials)  # bits per code of a 16-code codebook
    trial_run = run / "tune" / "trials" / "1"
    assert (trial_run / "prior" / "PixelCNN_Model" / "model.safetensors").is_file()
    vqvae_weights = "vqvae/VQVAE_Model/model.safetensors"
    assert (trial_run / vqvae_weights).read_bytes() == (run / vqvae_weights).read_bytes()
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "Tuning: study &#x27;prior&#x27; of the prior stage" in html
    assert "figures/tune_history.png" in html
    assert (run / "figures" / "tune_history.png").is_file()


def test_sigkill_mid_trial_then_rerun_continues_the_study(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = tune_args(run, tune_yaml(tmp_path, epochs=4), 3, "--threads", "1")
    cmd = [sys.executable, "-m", "brainvq.app.cli", *args]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = run / "tune" / "study.db"
    deadline = time.monotonic() + 300
    killed_at = None
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        if not db.is_file():
            continue
        try:
            found = states(load(run))
        except Exception:  # the study is being created, or the database is busy
            continue
        if "COMPLETE" in found and found[-1] == "RUNNING":
            # mid-trial: the running trial has written its run's config and is training
            if (run / "tune" / "trials" / str(len(found) - 1) / "config.yaml").is_file():
                proc.send_signal(signal.SIGKILL)
                killed_at = len(found) - 1
                break
    proc.wait()  # reaped, so its pid is gone
    assert killed_at is not None, proc.stderr.read().decode()[-2000:]
    before = load(run)
    complete = {t.number: t.value for t in before.trials if t.state == TrialState.COMPLETE}
    assert before.trials[killed_at].state == TrialState.RUNNING

    assert main(args) == 0  # the same arguments: the study continues
    after = load(run)
    assert after.trials[killed_at].state == TrialState.FAIL
    assert "interrupted" in after.trials[killed_at].user_attrs["fail_reason"]
    for number, value in complete.items():  # finished trials kept as they were
        assert after.trials[number].state == TrialState.COMPLETE
        assert after.trials[number].value == value
    finished = [t for t in after.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    rows = read_csv(run / "tune" / "trials.csv")
    assert rows[killed_at]["state"] == "fail" and "interrupted" in rows[killed_at]["note"]


def test_two_workers_share_one_study(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = tune_args(run, tune_yaml(tmp_path, epochs=3), 4, "--threads", "1")
    cmd = [sys.executable, "-m", "brainvq.app.cli", *args]
    workers = [
        subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    errors = [w.communicate(timeout=600)[1].decode() for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [e[-2000:] for e in errors]
    study = load(run)
    numbers = [t.number for t in study.trials]
    assert numbers == sorted(set(numbers))  # distinct trial numbers
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 4  # the total asked for, both workers together
    pids = {t.user_attrs["worker"]["pid"] for t in finished}
    assert pids == {w.pid for w in workers}  # both worked on it
    # a trial either worker refused as surplus is the only kind of failure allowed here
    assert all(t.user_attrs.get("surplus") for t in study.trials if t.state == TrialState.FAIL)


def test_a_planted_bad_lr_is_pruned_and_a_nan_loss_fails(tmp_path: Path) -> None:
    space = {"vqvae_train.lr": [0.003, 1e-7, 1e6]}  # the base value, and two planted ones
    config_file = tune_yaml(tmp_path, epochs=4, space=space, startup_trials=1, prune_after=0.0)
    run = tmp_path / "run"
    base = load_run_config(config_file, {"data": {"source": "demo"}})
    space = parse_space("vqvae", base)
    (run / "tune").mkdir(parents=True)
    url = f"sqlite:///{(run / 'tune' / 'study.db').as_posix()}"
    study = open_study(url, "vqvae", space, base.tune, None, seed=0, baseline=space.baseline(base))
    study.enqueue_trial({"vqvae_train.lr": 1e-7})  # learns nothing: pruned after an epoch
    study.enqueue_trial({"vqvae_train.lr": 1e6})  # the loss leaves the finite numbers
    assert main(tune_args(run, config_file, 3)) == 0
    study = load(run)
    found = states(study)
    assert found[:3] == ["COMPLETE", "PRUNED", "FAIL"], found
    assert study.trials[1].user_attrs["epochs"] < 4
    assert "pruned after" in study.trials[1].user_attrs["note"]
    assert "NonFiniteLossError" in study.trials[2].user_attrs["fail_reason"]
    assert found.count("COMPLETE") + found.count("PRUNED") == 3  # the study went on
    assert found[-1] in ("COMPLETE", "PRUNED")


def test_a_bad_space_is_one_line_error_before_any_trial(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    config = tune_yaml(tmp_path, space={"vqvae_train.lr": {"low": 0.01, "high": 0.001}})
    assert main(tune_args(run, config, 2)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "tune.vqvae.vqvae_train.lr: empty range" in err
    assert not (run / "tune").exists()


def test_a_run_holds_one_study(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(tune_args(run, tune_yaml(tmp_path), 1)) == 0
    capsys.readouterr()
    assert main([*tune_args(run, tune_yaml(tmp_path), 1), "--study", "other"]) == 2
    assert "holds the study 'vqvae'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--trials", "0"], "--trials: expected an integer in [1,"),
        (["--trial-minutes", "0"], "--trial-minutes: expected a number of minutes in (0,"),
    ],
)
def test_bad_flags_are_one_line_errors(tmp_path: Path, capsys, flags, message) -> None:
    with pytest.raises(SystemExit) as e:
        main([*tune_args(tmp_path / "run", tune_yaml(tmp_path), 1), *flags])
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_refused_study_leaves_its_out_usable(tmp_path: Path, capsys) -> None:
    """A budget of inf or nan minutes is refused before any study is stored (a stored one
    would refuse every later valid budget as another study's)."""
    from brainvq.app.tune import TuneJob, base_config, tune_stage

    run, config = tmp_path / "run", tune_yaml(tmp_path)
    with pytest.raises(SystemExit) as e:
        main([*tune_args(run, config, 1), "--trial-minutes", "inf"])
    assert e.value.code == 2 and "--trial-minutes" in capsys.readouterr().err
    job = TuneJob(run, "vqvae", trials=1, config=config, data="demo", accelerator="cpu")
    base = base_config(job).config
    for minutes in (float("nan"), float("inf"), -1.0):
        bad = replace(job, trial_minutes=minutes)
        with pytest.raises(ValueError, match="--trial-minutes"):
            tune_stage(bad, base)
        with pytest.raises(ValueError, match="--trial-minutes"):
            base_config(bad)
    assert not run.exists()
    assert main([*tune_args(run, config, 1), "--trial-minutes", "0.5"]) == 0
    assert load(run).user_attrs["brainvq"]["trial_minutes"] == 0.5
