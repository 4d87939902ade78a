"""With no --config, a run starts from the packaged config that fits the machine, says which
and why, and records it in RUN/config.yaml."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from data.files import write_png

from brainvq.app.presets import ConfigChoice, choose_preset, resolve_config_file
from brainvq.run import packaged_config, prepare_run
from brainvq.run_config import load_run_config


def test_the_cpu_preset_is_chosen_said_and_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on this CPU machine
    source = tmp_path / "pngs"
    write_png(source / "a.png", np.zeros((16, 16), np.uint8))
    run = tmp_path / "run"
    choice = resolve_config_file(run, None, str(source))
    path, preset = choice.path, choice.preset
    assert path == packaged_config("oasis_cpu") and preset.name == "oasis_cpu"
    assert capsys.readouterr().out == ""  # the command says it, not the library
    said = choice.note
    assert said.startswith("no --config given: using configs/oasis_cpu.yaml (")
    assert "no CUDA GPU" in said and "CPU cores" in said
    config = prepare_run(run, path, {"data": {"source": str(source)}}, preset=preset)
    saved = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    assert saved["preset"] == {"name": "oasis_cpu", "reason": preset.reason}
    cpu = load_run_config(packaged_config("oasis_cpu"))
    assert config.vqvae.channels == cpu.vqvae.channels == (32, 64)
    # A continued run keeps its config and its recorded preset; a given file is recorded too.
    assert resolve_config_file(run, None, str(source)) == ConfigChoice(None, None)
    given = resolve_config_file(tmp_path / "other", packaged_config("quick"), None)
    assert given.note is None  # nothing picked: nothing to say
    assert given.preset.reason == "given with --config"
    assert given.preset.name.endswith("quick.yaml")


def test_the_demo_and_the_gpu_have_their_own_presets(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_preset("demo").name == "demo"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Some GPU")
    gpu = choose_preset("/data/oasis")
    assert gpu.name == "oasis" and "Some GPU" in gpu.reason


def test_the_train_command_says_the_config_it_picked_and_what_it_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library returns the note (ConfigChoice.note) and the stages without a checkpoint
    (pipeline.resume_notes); `brainvq train` prints them before it trains."""
    from brainvq.app import pipeline, run_data
    from brainvq.app.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(run_data, "run_slices", lambda config, **kwargs: None)
    monkeypatch.setattr(pipeline, "train_vqvae", lambda *args, **kwargs: {})  # no training
    source = tmp_path / "pngs"
    write_png(source / "a.png", np.zeros((16, 16), np.uint8))
    run = tmp_path / "run"
    assert main(["train", "vqvae", "--data", str(source), "--out", str(run), "--resume"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("brainvq train: no --config given: using configs/oasis_cpu.yaml (")
    last = run / "vqvae" / "checkpoints" / "last.ckpt"
    assert lines[1:] == [f"--resume: no checkpoint at {last} yet; starting from scratch"]
