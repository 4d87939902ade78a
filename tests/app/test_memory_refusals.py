"""Requests that cannot fit are refused before any work: each is one line `brainvq <command>:
error: ...` naming the flag and the largest count that fits, exit code 2, nothing written to
--out (and no store built); the notebook API refuses the same way with a ValueError. The
limits are computed from the sizes involved (brainvq.values.check_memory / check_disk /
HEALINGS), so a billion of anything is refused here."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import brainvq
from brainvq.app.cli import main
from brainvq.run_config import load_run_config
from brainvq.training.trainer import batch_item_bytes

BILLION = "1000000000"


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], flag: str) -> str:
    """Run the command line; assert one error line naming `flag`, exit 2, within seconds."""
    start = time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as stop:  # refused while the command line is parsed
        code = stop.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "error:" in err and flag in err, err
    assert time.perf_counter() - start < 30  # no drawing, no training
    return err


@pytest.mark.parametrize(
    ("run", "extra"),
    [("fake_run", ["--n", BILLION]), ("fake_subject_run", ["--levels", "all", "--n", "10000000"])],
    ids=["n", "levels all"],
)
def test_sample_too_many(request, tmp_path: Path, capsys, run: str, extra: list[str]) -> None:
    out = tmp_path / "out"
    run_dir = request.getfixturevalue(run)
    err = refused(capsys, ["sample", "--run", str(run_dir), *extra, "--out", str(out)], "--n")
    assert "expected at most" in err and "free at" in err
    assert not list(out.glob("*.png"))


def test_subjects_too_many(fake_subject_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    argv = ["sample", "--run", str(fake_subject_run), "--subjects", BILLION, "--out", str(out)]
    assert "expected at most" in refused(capsys, argv, "--subjects")
    assert not out.exists() or not list(out.iterdir())


def test_completions_too_many(fake_run: Path, tmp_path: Path, capsys) -> None:
    from PIL import Image

    png = tmp_path / "case_1_slice_12.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(png)
    out = tmp_path / "out"
    argv = ["complete", "--run", str(fake_run), "--input", str(png), "--keep-rows", "2"]
    refused(capsys, [*argv, "--n", BILLION, "--out", str(out)], "--n")
    assert not list(out.glob("*.png"))


def test_healings_too_many(fake_run: Path, tmp_path: Path, capsys) -> None:
    argv = ["anomaly", "--run", str(fake_run), "--input", str(tmp_path), "--n-heal", BILLION]
    assert "--n-heal: expected an integer in [1, " in refused(capsys, argv, "--n-heal")


def test_a_batch_too_large_is_refused_before_the_data_is_read(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tiny import TINY_CONFIG

    monkeypatch.setenv("BRAINVQ_CACHE", str(tmp_path / "cache"))
    for stage in ("vqvae", "all"):
        argv = ["train", stage, "--data", "demo", "--config", str(TINY_CONFIG)]
        argv += ["--out", str(tmp_path / stage), "--batch-size", BILLION]
        assert "expected at most" in refused(capsys, argv, "--batch-size")
    assert not (tmp_path / "cache").exists()  # no store was built


def test_the_api_refuses_the_same_way(fake_run: Path, fake_subject_run: Path) -> None:
    with pytest.raises(ValueError, match=r"^n: expected at most [\d,]+ here, got 1,000,000,000"):
        brainvq.sample(fake_run, n=10**9)
    with pytest.raises(ValueError, match="^n: expected at most"):
        brainvq.sample_subjects(fake_subject_run, n=10**9)
    with pytest.raises(ValueError, match="^n: expected at most"):
        brainvq.complete(fake_run, np.zeros((2, 32, 32), np.uint8), 2, n=10**9, levels=[1, 2])
    with pytest.raises(ValueError, match=r"^--n-heal: expected an integer in \[1, "):
        brainvq.anomaly(fake_run, fake_run, n_heal=10**9)
    codes, images = brainvq.sample(fake_run, n=3)  # what fits is drawn
    assert codes.shape[0] == images.shape[0] == 3


def test_a_3d_items_memory_counts_its_levels() -> None:
    flat = load_run_config(None, {"vqvae": {"dims": 2}})
    deep = load_run_config(None, {"vqvae": {"dims": 3}, "data": {"n_levels": 32}})
    assert batch_item_bytes(deep, "vqvae") == 32 * batch_item_bytes(flat, "vqvae")
    assert batch_item_bytes(deep, "prior") == batch_item_bytes(flat, "prior")
