"""`python predict.py` as a user runs it (a subprocess in a folder holding runs/), and
`brainvq.app.predict.predict` for a model that lives outside any run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny import TINY_CONFIG

from brainvq.app.cli import main
from brainvq.app.predict import DEFAULT_OUT, predict
from brainvq.io.bundle import load_vqvae

PREDICT_SCRIPT = Path(__file__).resolve().parents[2] / "predict.py"
MODEL = Path("runs") / "tiny" / "vqvae" / "VQVAE_Model"  # relative to the work folder


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding runs/tiny, a tiny run with both stages trained (one epoch each)."""
    work = tmp_path_factory.mktemp("predict_work")
    # The tiny config without the generation metrics' classifier: predict does not need them.
    config = yaml.safe_load(TINY_CONFIG.read_text(encoding="utf-8"))
    config["sample"]["n_generation_eval"] = 0
    config_file = work / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(config))
    run = work / "runs" / "tiny"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BRAINVQ_CACHE", cache_dir(tmp_path_factory))
        args = ["--data", "demo", "--config", str(config_file), "--out", str(run)]
        assert main(["train", "vqvae", *args]) == 0
        assert main(["train", "prior", "--run", str(run)]) == 0
    return work


def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.getbasetemp() / "brainvq-cache")


def run_predict(cwd: Path, *args: str, cache: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BRAINVQ_CACHE": cache, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, str(PREDICT_SCRIPT), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=300,
    )


def test_predict_with_a_model_path_writes_figures_and_the_run_metrics(
    work: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    result = run_predict(work, "-m", str(MODEL), cache=cache_dir(tmp_path_factory))
    assert result.returncode == 0, result.stderr
    out = work / "runs" / "tiny" / "predict"
    for name in (
        "reconstructions.png",
        "ssim_distribution.png",
        "code_usage.png",
        "codebook_pca.png",
        "samples.png",
        "samples_by_level.png",
        "completions.png",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    trained = json.loads((work / "runs" / "tiny" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["vqvae"]["split"] == "test" and metrics["vqvae"]["n_images"] == 32
    assert metrics["vqvae"]["ssim"] == pytest.approx(trained["vqvae"]["ssim"], rel=1e-6)
    assert metrics["prior"]["nll_bits_per_code_test"] == pytest.approx(
        trained["prior"]["nll_bits_per_code_test"], rel=1e-4
    )
    assert f"{metrics['vqvae']['ssim']:.4f}" in result.stdout  # the results table
    assert f"{metrics['prior']['nll_bits_per_code_test']:.3f}" in result.stdout


def test_bad_model_path_falls_back_to_the_latest_run_with_a_warning(
    work: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    bad = Path("nowhere") / "VQVAE_Model"
    cache = cache_dir(tmp_path_factory)
    result = run_predict(work, "-m", str(bad), "--out", "fallback_out", cache=cache)
    assert result.returncode == 0, result.stderr
    assert "WARNING" in result.stderr and str(bad) in result.stderr
    assert "model bundle not found" in result.stderr  # the reason
    assert str(MODEL) in result.stderr  # the model used instead
    metrics = json.loads((work / "fallback_out" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["model"] == str(MODEL)


def test_strict_bad_model_path_is_an_error(
    work: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    bad = Path("nowhere") / "VQVAE_Model"
    result = run_predict(
        work, "-m", str(bad), "--strict", "--out", "strict_out", cache=cache_dir(tmp_path_factory)
    )
    assert result.returncode != 0
    assert "error" in result.stderr and str(bad) in result.stderr
    assert not (work / "strict_out").exists()


def test_no_trained_model_tells_to_train_first(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    result = run_predict(tmp_path, cache=cache_dir(tmp_path_factory))
    assert result.returncode != 0
    assert "no trained model" in result.stderr and "train" in result.stderr
    assert not (tmp_path / DEFAULT_OUT).exists()


def test_model_outside_a_run_uses_its_recorded_source_and_predict_out(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(work / MODEL, tmp_path / "VQVAE_Model")
    monkeypatch.chdir(tmp_path)
    metrics = predict(load_vqvae(tmp_path / "VQVAE_Model")).metrics
    assert metrics["data"] == "demo" and "prior" not in metrics
    assert (tmp_path / DEFAULT_OUT / "reconstructions.png").is_file()
    assert not (tmp_path / DEFAULT_OUT / "samples.png").exists()


def test_model_without_run_or_recorded_source_needs_data(work: Path, tmp_path: Path) -> None:
    folder = tmp_path / "VQVAE_Model"
    shutil.copytree(work / MODEL, folder)
    doc = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    del doc["meta"]["data_source"]
    (folder / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="--data"):
        predict(load_vqvae(folder), out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
