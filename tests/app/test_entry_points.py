"""`python train.py` and `python predict.py` as a user runs them: the default data source, and
errors reported as `brainvq` reports them (one line, exit code 2, nothing written)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from brainvq.app.entry_points import DEFAULT_OASIS, default_source

ROOT = Path(__file__).resolve().parents[2]


def run_script(script: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BRAINVQ_CACHE": str(cwd / "cache"), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=300,
    )


def test_default_source_prefers_oasis_at_a_default_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_source()[0] == "demo" and "using the demo cohort" in default_source()[1]
    (tmp_path / "data" / "keras_png_slices_data").mkdir(parents=True)
    assert default_source() == (
        "data/keras_png_slices_data",
        "found OASIS data at data/keras_png_slices_data",
    )
    (tmp_path / "keras_png_slices_data.zip").write_bytes(b"")
    assert default_source()[0] == str(DEFAULT_OASIS[0])  # the first default path wins


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "no/such/folder"], "no/such/folder"),
        (["--data", "demo", "--out", "a_file"], "a_file is not a folder"),
        (["--data", "demo", "--config", "missing.yaml"], "config file not found: missing.yaml"),
        (["--data", "demo", "--epochs", "0", "--out", "r"], "--epochs: expected an integer in [1,"),
    ],
)
def test_train_py_errors_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    result = run_script("train.py", tmp_path, *args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("train.py: error:")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_predict_py_without_a_model_is_one_line(tmp_path: Path) -> None:
    result = run_script("predict.py", tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("predict.py: error: no trained model found")
    assert "Traceback" not in result.stderr
