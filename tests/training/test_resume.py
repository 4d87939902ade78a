"""Crashes and resume: a SIGKILLed run resumes to a complete, valid run; an interrupted run
plus its resume reaches the same weights as an uninterrupted one; NaN losses stop loudly."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from tiny import TINY_CONFIG, train_cmd

from brainvq.app.cli import main
from brainvq.io.bundle import load_vqvae

# The tiny config: 3 training subjects x 32 slices, batch size 16.
STEPS_PER_EPOCH = 96 // 16


def _env() -> dict[str, str]:
    """The environment for child runs, read when called (the cache fixture sets BRAINVQ_CACHE)."""
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _assert_complete(run: Path, epochs: int) -> None:
    bundle = load_vqvae(run / "vqvae" / "VQVAE_Model")
    assert bundle.meta["epochs_trained"] == epochs
    ckpt = torch.load(run / "vqvae" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == epochs * STEPS_PER_EPOCH
    history = json.loads((run / "vqvae" / "history.json").read_text(encoding="utf-8"))
    assert [row["epoch"] for row in history] == list(range(epochs))
    frames = sorted(p.name for p in (run / "vqvae" / "frames").glob("epoch_*.png"))
    assert frames == [f"epoch_{e:03d}.png" for e in range(epochs)]
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert 0 < metrics["vqvae"]["ssim"] <= 1
    leftovers = [
        p for p in run.rglob(".*") if p.name.endswith(".tmp") or p.name.startswith(".VQVAE")
    ]
    assert not leftovers, leftovers


def test_sigkill_mid_epoch_then_resume_completes(tmp_path: Path) -> None:
    run = tmp_path / "killed"
    # an epoch of the tiny config can take under 0.1 s on a quiet fast CPU: enough epochs that
    # the kill lands mid-run there too (6 finished within the 0.5 s wait on one CI machine)
    epochs = 30
    proc = subprocess.Popen(
        train_cmd(run, "--epochs", str(epochs)),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = run / "vqvae" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert last.exists(), "the run never wrote its first checkpoint"
    time.sleep(0.2)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_step = torch.load(last, weights_only=True)["global_step"]
    assert killed_step < epochs * STEPS_PER_EPOCH, "the run finished before it could be killed"
    result = subprocess.run(
        train_cmd(run, "--epochs", str(epochs), "--resume"),
        env=_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_complete(run, epochs)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "vqvae" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_interrupted_plus_resume_equals_uninterrupted(tmp_path: Path) -> None:
    # A constant learning rate, so the schedule does not depend on the planned epoch count.
    flags = ["--seed", "3"]
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    over = ["--config", str(_constant_lr_config(tmp_path))]
    assert (
        main(
            [
                "train",
                "vqvae",
                "--data",
                "demo",
                "--out",
                str(straight),
                "--epochs",
                "3",
                *over,
                *flags,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "vqvae",
                "--data",
                "demo",
                "--out",
                str(interrupted),
                "--epochs",
                "2",
                *over,
                *flags,
            ]
        )
        == 0
    )
    assert (
        main(["train", "vqvae", "--out", str(interrupted), "--epochs", "3", "--resume", *flags])
        == 0
    )
    a, b = _weights(straight), _weights(interrupted)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _constant_lr_config(tmp_path: Path) -> Path:
    import yaml

    cfg = yaml.safe_load(TINY_CONFIG.read_text(encoding="utf-8"))
    cfg["vqvae_train"].update(warmup_steps=0, min_lr_ratio=1.0, deterministic=True)
    path = tmp_path / "constant_lr.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "nan"
    assert (
        subprocess.run(train_cmd(run, "--epochs", "1"), env=_env(), capture_output=True).returncode
        == 0
    )
    last = run / "vqvae" / "checkpoints" / "last.ckpt"
    before = hashlib.sha256(last.read_bytes()).hexdigest()
    bundle_before = hashlib.sha256(
        (run / "vqvae" / "VQVAE_Model" / "model.safetensors").read_bytes()
    ).hexdigest()
    result = subprocess.run(
        train_cmd(run, "--epochs", "2", "--lr", "1e30"),
        env=_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=300,
    )
    assert result.returncode != 0
    assert "non-finite loss at step" in result.stderr and "recon=" in result.stderr
    assert hashlib.sha256(last.read_bytes()).hexdigest() == before
    after = hashlib.sha256(
        (run / "vqvae" / "VQVAE_Model" / "model.safetensors").read_bytes()
    ).hexdigest()
    assert after == bundle_before


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_resume_never_unpickles_code_from_a_planted_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "planted"
    marker = tmp_path / "marker.txt"
    assert (
        main(["train", "vqvae", "--data", "demo", "--config", str(TINY_CONFIG), "--out", str(run)])
        == 0
    )
    last = run / "vqvae" / "checkpoints" / "last.ckpt"
    torch.save({"epoch": 0, "exploit": _Exploit(marker)}, last)
    assert main(["train", "vqvae", "--out", str(run), "--epochs", "2", "--resume"]) == 2
    assert "weights_only" in capsys.readouterr().err
    assert not marker.exists()
