"""End-to-end runs of the CLI on a tiny demo cohort: training both stages, evaluation,
reconstruction, sampling and completion. Real training steps, real files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from tiny import PRIOR_KEYS, TINY_CONFIG, VQVAE_KEYS, train_cmd

from brainvq.app.cli import main
from brainvq.app.run_data import run_slices
from brainvq.inference.codes import encode_images
from brainvq.inference.generate import complete_slices
from brainvq.inference.run_models import load_run_models
from brainvq.inference.sampling_options import SamplingOptions
from brainvq.io.bundle import load_prior, load_vqvae
from brainvq.run import load_run
from brainvq.run_config import TrainConfig
from brainvq.training.trainer import resolve_precision


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained by `brainvq train vqvae` then `brainvq train prior` (one epoch each)."""
    run = tmp_path_factory.mktemp("run") / "tiny"
    assert (
        main(["train", "vqvae", "--data", "demo", "--config", str(TINY_CONFIG), "--out", str(run)])
        == 0
    )
    assert main(["train", "prior", "--run", str(run)]) == 0
    return run


def test_vqvae_stage_writes_checkpoints_frames_logs_and_bundle(tiny_run: Path) -> None:
    assert (tiny_run / "vqvae" / "checkpoints" / "last.ckpt").is_file()
    assert (tiny_run / "vqvae" / "checkpoints" / "best.ckpt").is_file()
    frames = sorted((tiny_run / "vqvae" / "frames").glob("epoch_*.png"))
    assert [f.name for f in frames] == ["epoch_000.png"]
    assert Image.open(frames[0]).size[0] > 32
    assert list((tiny_run / "logs" / "tensorboard" / "vqvae").glob("events.out.tfevents.*"))
    csv = (tiny_run / "logs" / "csv" / "vqvae" / "metrics.csv").read_text(encoding="utf-8")
    for column in (
        "train/loss",
        "train/recon",
        "train/mse",
        "train/vq",
        "val/ssim",
        "val/psnr",
        "train/perplexity",
    ):
        assert column in csv
    history = json.loads((tiny_run / "vqvae" / "history.json").read_text(encoding="utf-8"))
    assert (
        history[0]["epoch"] == 0 and "val/ssim" in history[0] and "train/codes_used" in history[0]
    )
    bundle = load_vqvae(tiny_run / "vqvae" / "VQVAE_Model")
    assert bundle.config.codebook_size == 16 and bundle.meta["epochs_trained"] >= 1
    assert bundle.meta["precision"] == resolve_precision(TrainConfig())  # "auto", resolved
    saved = yaml.safe_load((tiny_run / "config.yaml").read_text(encoding="utf-8"))
    assert saved["vqvae"]["codebook_size"] == 16 and saved["data"]["size"] == 32


def test_metrics_json_has_documented_keys(tiny_run: Path) -> None:
    metrics = json.loads((tiny_run / "metrics.json").read_text(encoding="utf-8"))
    vq = metrics["vqvae"]
    assert all(key in vq for key in VQVAE_KEYS)
    assert vq["split"] == "test" and vq["n_images"] == 32
    assert 0 < vq["ssim"] <= 1 and vq["ssim_min"] <= vq["ssim"]
    assert vq["bits_per_pixel"] == pytest.approx(8 * 8 * 4 / (32 * 32))
    prior = metrics["prior"]
    assert all(key in prior for key in PRIOR_KEYS)
    # The prior starts at the code histogram (independent positions) and trains from there:
    # worse than that, or than a uniform prior, would be a broken prior or a broken NLL.
    assert prior["uniform_bits_per_code"] == pytest.approx(np.log2(16))
    assert 0 < prior["nll_bits_per_code_val"] < prior["uniform_bits_per_code"]
    assert prior["nll_bits_per_code_val"] < prior["independent_bits_per_code"] + 0.1


def test_prior_is_conditional_on_demo_levels_and_codes_are_cached(tiny_run: Path) -> None:
    prior = load_prior(tiny_run)
    assert prior.config.n_levels == 32 and prior.config.codebook_size == 16
    codes = np.load(tiny_run / "codes" / "train.npy")
    assert codes.dtype == np.int16 and codes.shape == (96, 8, 8)
    assert set(np.unique(np.load(tiny_run / "codes" / "train.level.npy"))) == set(range(32))


def test_evaluate_command_on_validate_split(tiny_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", "--run", str(tiny_run), "--split", "validate"]) == 0
    metrics = json.loads((tiny_run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["vqvae"]["split"] == "validate"
    assert f"{metrics['vqvae']['ssim']:.4f}" in capsys.readouterr().out  # the results table


def test_reconstruct_command_writes_pngs_named_like_inputs(tiny_run: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(src / name)
    out = tmp_path / "out"
    assert (
        main(
            [
                "reconstruct",
                "--model",
                str(tiny_run / "vqvae" / "VQVAE_Model"),
                "--input",
                str(src / "a.png"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    img = Image.open(out / "a.png")
    assert img.size == (32, 32) and img.mode == "L"
    assert (out / "grid.png").is_file()


def manifest(folder: Path) -> list[dict[str, str]]:
    with open(folder / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_sample_command_spreads_levels_by_default(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    assert main(["sample", "--run", str(tiny_run), "--n", "4", "--out", str(out)]) == 0
    rows = manifest(out)
    assert [int(r["level"]) for r in rows] == [4, 12, 20, 28]  # the centres of 4 equal parts
    for r in rows:
        assert (out / r["output"]).is_file() and r["output"].endswith(f"_level_{r['level']}.png")


def test_sample_command_all_levels_and_one_level(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    assert (
        main(["sample", "--run", str(tiny_run), "--n", "2", "--levels", "all", "--out", str(out)])
        == 0
    )
    levels = [int(r["level"]) for r in manifest(out)]
    assert sorted(levels) == sorted(list(range(32)) * 2)
    assert len(list(out.glob("sample_*.png"))) == 64
    grid = Image.open(out / "grid.png")
    assert grid.height > 32 * 32  # one row of 2 per level
    out1 = tmp_path / "s1"
    args = ["sample", "--run", str(tiny_run), "--n", "3", "--level", "5", "--seed", "1"]
    assert main([*args, "--sampler", "naive", "--out", str(out1)]) == 0
    assert [int(r["level"]) for r in manifest(out1)] == [5, 5, 5]
    assert main([*args, "--out", str(tmp_path / "s2")]) == 0  # the cached sampler: the same
    for name in (r["output"] for r in manifest(out1)):
        a = np.asarray(Image.open(out1 / name))
        b = np.asarray(Image.open(tmp_path / "s2" / name))
        np.testing.assert_array_equal(a, b)
    bad = ["sample", "--run", str(tiny_run), "--n", "1", "--level", "99", "--out", str(out1)]
    assert main(bad) == 2


def test_complete_keeps_the_input_rows_and_reads_the_level_from_the_name(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    slices = run_slices(load_run(tiny_run), progress=False).require_split("test")
    png = tmp_path / "case_001_slice_12.nii.png"
    Image.fromarray(slices.images[slices.level == 12][0]).save(png)
    out = tmp_path / "c"
    args = ["complete", "--run", str(tiny_run), "--input", str(png), "--keep-rows", "4"]
    assert main([*args, "--n", "2", "--out", str(out)]) == 0
    assert "at level 12 (from the file name)" in capsys.readouterr().out
    assert [int(r["level"]) for r in manifest(out)] == [12, 12]
    assert (out / "completion_0.png").is_file() and (out / "grid.png").is_file()
    models = load_run_models(tiny_run)
    image = np.asarray(Image.open(png))
    codes, images = complete_slices(models, image[None], np.array([12]), 4, 3)
    own = encode_images(models.vqvae.model, image[None])[0]  # (8, 8)
    assert codes.shape == (1, 3, 8, 8) and images.shape == (1, 3, 32, 32)
    for completion in codes[0]:
        np.testing.assert_array_equal(completion[:4], own[:4])  # the kept rows are the input's
    hot_options = SamplingOptions(temperature=5.0, seed=1)
    hot, _ = complete_slices(models, image[None], np.array([12]), 4, 3, options=hot_options)
    np.testing.assert_array_equal(hot[0, :, :4], codes[0, :, :4])
    assert (hot[0, :, 4:] != codes[0, :, 4:]).any()  # the rest is sampled (from other draws)


def test_train_prior_without_a_run_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["train", "prior", "--run", str(tmp_path / "nope")]) == 2
    assert "config.yaml" in capsys.readouterr().err


def test_max_minutes_ends_the_learning_rate_schedule_in_time(tmp_path: Path) -> None:
    # 1000 epochs could never finish in 4 seconds: the cosine must follow the clock instead
    run = tmp_path / "budget"
    flags = ["--epochs", "1000", "--max-minutes", str(4 / 60), "--lr", "0.003"]
    assert main(train_cmd(run, *flags)[3:]) == 0  # without `python -m brainvq.app.cli`
    history = json.loads((run / "vqvae" / "history.json").read_text(encoding="utf-8"))
    assert 1 <= len(history) < 1000
    rows = (run / "logs" / "csv" / "vqvae" / "metrics.csv").read_text(encoding="utf-8").splitlines()
    column = rows[0].split(",").index("lr-AdamW")
    lrs = [float(r.split(",")[column]) for r in rows[1:] if r.split(",")[column]]
    assert max(lrs) == pytest.approx(0.003, rel=0.05)  # reached after warm-up
    assert lrs[-1] < 0.25 * 0.003  # and annealed near the floor (0.05 x lr) when time ran out
