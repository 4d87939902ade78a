"""`brainvq anomaly` end to end on a tiny trained run: a PNG, a folder and a NIfTI volume, a
planted lesion mapped where it is, the calibration made once and kept outside the run, the run's
own calibration (`anomaly calibrate`) used and re-thresholded without writing, the settings from
the run config, the notebook API, the naive sampler, and every bad input ending in one line and
exit code 2."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from anomaly_run import plant_disc, tree_hashes
from data.files import write_png
from PIL import Image

import brainvq
from brainvq.app.anomaly.files import BAR
from brainvq.app.cli import main
from brainvq.app.run_data import run_slices
from brainvq.evaluation.anomaly_decisions import SLICE_SCORE
from brainvq.inference.anomaly_maps import brain_mask
from brainvq.run import RunLayout, load_run

ALPHA = "0.1"  # the tiny run has 32 validate slices: enough for 0.1, not for 0.01


@pytest.fixture(scope="module")
def slices(anomaly_tiny_run: Path) -> np.ndarray:
    """Real test-split slices of the run's cohort (32x32 uint8)."""
    return run_slices(load_run(anomaly_tiny_run), progress=False).require_split("test").images


def cli(argv: list, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr stripped) of `brainvq argv` in this process."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


def scores(folder: Path) -> list[dict[str, str]]:
    with open(folder / "scores.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_png_writes_maps_masks_scores_pngs_and_calibrates_once(
    anomaly_tiny_run: Path,
    slices: np.ndarray,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("BRAINVQ_CACHE", str(cache))
    shutil.rmtree(RunLayout(anomaly_tiny_run).anomaly, ignore_errors=True)
    png = write_png(tmp_path / "case_9_slice_16.nii.png", slices[16])
    out = tmp_path / "out"
    argv = ["anomaly", "--run", anomaly_tiny_run, "--input", png, "--out", out, "--alpha", ALPHA]
    code, stdout, err = cli(argv, capsys)
    assert code == 0, err
    with np.load(out / "anomaly_maps.npz", allow_pickle=False) as f:
        assert f["maps"].shape == (1, 32, 32) and f["maps"].dtype == np.float32
        assert f["masks"].dtype == bool and f["names"].tolist() == [png.name]
        assert (f["maps"] >= 0).all()
        maps, masks = f["maps"], f["masks"]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    calibration = summary["calibration"]
    np.testing.assert_array_equal(masks, maps > calibration["pixel_threshold"])
    assert calibration["alpha"] == 0.1 and calibration["n_slices"] == 32
    assert calibration["scan_alpha"] == 0.1 and calibration["slice_score"] == SLICE_SCORE
    assert calibration["calibration_flagged_share"] <= 0.1
    assert not RunLayout(anomaly_tiny_run).anomaly.exists()  # a plain call never writes the run
    assert [p.name for p in (cache / "anomaly").iterdir()] == [f"{calibration['key']}.npz"]
    assert summary["calibration_stored_in"] == str(cache / "anomaly" / f"{calibration['key']}.npz")
    assert set(summary["guarantee"]) == {"pixels", "slices", "scans"}
    rows = scores(out)
    assert rows[0]["level"] == "16" and rows[0]["level_from"] == "input"
    assert list(rows[0]) == [
        "name",
        "level",
        "score",
        "p_value",
        "flagged",
        "scan",
        "level_from",
        "output",
    ]
    p_value = float(rows[0]["p_value"])
    assert 1 / 33 <= p_value <= 1 and rows[0]["flagged"] == str(int(p_value <= 0.1))
    triptych = Image.open(out / rows[0]["output"])
    assert triptych.size == (3 * 32 + 4, 32 + BAR) and triptych.mode == "RGB"
    assert (out / "grid.png").is_file()
    assert "calibrated on 32 healthy slices" in stdout and str(cache) in stdout
    code, stdout, err = cli(argv, capsys)  # the calibration is reused
    assert code == 0 and "calibrated" not in stdout, stdout


def test_the_api_and_the_naive_sampler_give_the_same_maps(
    anomaly_tiny_run: Path, slices: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = write_png(tmp_path / "case_9_slice_12.nii.png", slices[12])
    result = brainvq.anomaly(anomaly_tiny_run, png, alpha=0.1, seed=3)
    assert result.maps.shape == (1, 32, 32) and result.levels.tolist() == [12]
    out = tmp_path / "naive"
    argv = ["anomaly", "--run", anomaly_tiny_run, "--input", png, "--out", out, "--alpha", ALPHA]
    code, _, err = cli([*argv, "--seed", "3", "--sampler", "naive"], capsys)
    assert code == 0, err
    with np.load(out / "anomaly_maps.npz") as f:
        np.testing.assert_array_equal(f["maps"], result.maps)
    assert result.maps.any()  # the comparisons below would hold for all-zero maps too
    other = brainvq.anomaly(anomaly_tiny_run, png, alpha=0.1, seed=4)
    assert not np.array_equal(other.maps, result.maps)


def test_a_planted_lesion_makes_a_map_where_it_is(
    anomaly_tiny_run: Path, slices: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dark disc of radius 5 planted in a healthy slice (a cavity: the tiny VQ-VAE codes the
    brightest tissue and a bright disc alike): the map is nonzero inside the disc, higher there
    than over the rest of the brain (measured 1.7-2.4x on the tiny run's slices, where healing
    also redraws codes around it), and many times the same slice's map there without the disc
    (measured 29x or more); the slice is flagged (p 0.03 at levels 8-20 of the test subject),
    the same slice without the disc is not (p 0.18-0.85)."""
    image = slices[16]
    brain = brain_mask(image[None], 0.02)[0]
    centre = tuple(int(c) for c in np.argwhere(brain).mean(axis=0))
    disc = plant_disc(np.zeros_like(image), centre, 5, 1).astype(bool)
    folder = tmp_path / "in"
    write_png(folder / "case_8_slice_16.nii.png", image)
    write_png(folder / "case_9_slice_16.nii.png", plant_disc(image, centre, 5, 0))
    out = tmp_path / "out"
    argv = ["anomaly", "--run", anomaly_tiny_run, "--input", folder, "--out", out, "--alpha", ALPHA]
    code, _, err = cli(argv, capsys)
    assert code == 0, err
    with np.load(out / "anomaly_maps.npz") as f:
        maps = dict(zip(f["names"].tolist(), f["maps"], strict=True))
    sick, healthy = maps["case_9_slice_16.nii.png"], maps["case_8_slice_16.nii.png"]
    inside, around = sick[disc].mean(), sick[brain & ~disc].mean()
    print(
        f"map inside the disc {inside:.4f}, over the rest of the brain {around:.4f}, "
        f"inside without the disc {healthy[disc].mean():.4f}"
    )
    assert inside > 0
    assert inside > around
    assert inside > 5 * healthy[disc].mean()
    # the slice decision follows the map: the disc's slice is flagged, the same slice without not
    flagged = {r["name"]: (r["flagged"], float(r["p_value"])) for r in scores(out)}
    assert flagged["case_9_slice_16.nii.png"][0] == "1", flagged
    assert flagged["case_8_slice_16.nii.png"][0] == "0", flagged
    assert flagged["case_8_slice_16.nii.png"][1] > flagged["case_9_slice_16.nii.png"][1]


def test_a_folder_takes_levels_from_the_flag_or_the_classifier(
    anomaly_tiny_run: Path, slices: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    for i, name in enumerate(("a.png", "b.png", "sub/c.png")):
        write_png(folder / name, slices[8 + 4 * i])
    out = tmp_path / "out"
    argv = ["anomaly", "--run", anomaly_tiny_run, "--input", folder, "--out", out, "--alpha", ALPHA]
    code, stdout, err = cli(argv, capsys)
    assert code == 0, err
    assert "level classifier" in stdout
    rows = scores(out)
    assert [r["name"] for r in rows] == ["a.png", "b.png", "sub/c.png"]
    assert {r["level_from"] for r in rows} == {"classifier"}
    assert all(0 <= int(r["level"]) < 32 for r in rows)
    assert (out / "sub" / "c.png").is_file()
    assert "level classifier" in " ".join(
        json.loads((out / "summary.json").read_text(encoding="utf-8"))["notes"]
    )
    code, stdout, err = cli([*argv, "--level", "7"], capsys)
    assert code == 0, err
    assert {(r["level"], r["level_from"]) for r in scores(out)} == {("7", "--level")}


def test_the_runs_own_calibration_is_used_at_any_alpha_and_settings_go_to_the_cache(
    anomaly_tiny_run: Path,
    slices: np.ndarray,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("BRAINVQ_CACHE", str(cache))
    run = tmp_path / "run"
    shutil.copytree(anomaly_tiny_run, run)
    shutil.rmtree(RunLayout(run).anomaly, ignore_errors=True)
    code, stdout, err = cli(["anomaly", "calibrate", "--run", run, "--alpha", ALPHA], capsys)
    assert code == 0, err
    assert "calibrated on 32 healthy slices" in stdout
    own = json.loads(RunLayout(run).anomaly_calibration.read_text(encoding="utf-8"))
    assert own["alpha"] == 0.1 and own["key"]
    assert (RunLayout(run).anomaly_calibrations / f"{own['key']}.npz").is_file()
    assert not RunLayout(run).anomaly_calibration_maps.exists()
    before = tree_hashes(run)
    png = write_png(tmp_path / "case_9_slice_16.nii.png", slices[16])
    argv = ["anomaly", "--run", run, "--input", png, "--out", tmp_path / "o"]
    code, stdout, err = cli([*argv, "--alpha", "0.2"], capsys)
    assert code == 0, err
    assert "calibrated" not in stdout, stdout  # alpha only re-thresholds the run's maps
    summary = json.loads((tmp_path / "o" / "summary.json").read_text(encoding="utf-8"))
    assert summary["calibration"]["alpha"] == 0.2 and summary["calibration"]["key"] == own["key"]
    code, stdout, err = cli([*argv, "--alpha", "0.2", "--n-heal", "2"], capsys)
    assert code == 0, err
    assert "calibrated on 32 healthy slices" in stdout and str(cache) in stdout
    # without --n-heal, the settings are the run config's anomaly: section: n_heal 2's, cached
    config = yaml.safe_load(RunLayout(run).config.read_text(encoding="utf-8"))
    config["anomaly"]["n_heal"] = 2
    RunLayout(run).config.write_text(yaml.safe_dump(config))
    code, stdout, err = cli([*argv, "--alpha", "0.2"], capsys)
    assert code == 0, err
    assert "calibrated" not in stdout, stdout
    summary = json.loads((tmp_path / "o" / "summary.json").read_text(encoding="utf-8"))
    assert summary["calibration"]["settings"]["n_heal"] == 2
    assert summary["calibration_stored_in"].startswith(str(cache))
    after = tree_hashes(run)
    assert {k: v for k, v in after.items() if k != "config.yaml"} == {
        k: v for k, v in before.items() if k != "config.yaml"
    }
    config["anomaly"]["n_heal"] = 0
    RunLayout(run).config.write_text(yaml.safe_dump(config))
    code, _, err = cli([*argv, "--alpha", "0.2"], capsys)
    assert code == 2 and "anomaly.n_heal" in err, err


BAD = {
    "no --input": (["--out", "{out}"], "--input"),
    "missing input": (["--input", "{tmp}/nope.png", "--out", "{out}"], "nope.png"),
    "unsupported file": (["--input", "{tmp}/notes.txt", "--out", "{out}"], "unsupported"),
    "alpha 0": (["--input", "{png}", "--out", "{out}", "--alpha", "0"], "--alpha"),
    "alpha above 1": (["--input", "{png}", "--out", "{out}", "--alpha", "1.5"], "--alpha"),
    "no healings": (["--input", "{png}", "--out", "{out}", "--n-heal", "0"], "--n-heal"),
    "level out of range": (["--input", "{png}", "--out", "{out}", "--level", "99"], "--level 99"),
    "out is a file": (["--input", "{png}", "--out", "{tmp}/notes.txt"], "--out"),
    "alpha too small for the calibration": (["--input", "{png}", "--out", "{out}"], "99"),
    "calibrate with an input": (["calibrate", "--input", "{png}"], "calibrate"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_exit_2(
    case: str,
    anomaly_tiny_run: Path,
    slices: np.ndarray,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_png(tmp_path / "plain.png", slices[3])
    (tmp_path / "notes.txt").write_text("not an image")
    flags, name = BAD[case]
    values = {"tmp": tmp_path, "out": tmp_path / "out", "png": tmp_path / "plain.png"}
    argv = ["anomaly", "--run", anomaly_tiny_run, *(f.format(**values) for f in flags)]
    if case == "calibrate with an input":
        argv = ["anomaly", "calibrate", "--run", anomaly_tiny_run, "--input", values["png"]]
    code, _, err = cli(argv, capsys)
    assert code == 2, f"exit {code}, stderr: {err}"
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("brainvq anomaly: error: "), err
    assert name in err, f"{name!r} not named in: {err}"
    assert not (tmp_path / "out" / "anomaly_maps.npz").exists()


def test_a_run_without_models_and_a_broken_calibration_are_named(
    anomaly_tiny_run: Path, slices: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = write_png(tmp_path / "case_9_slice_16.nii.png", slices[16])
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli(["anomaly", "--run", empty, "--input", png, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "not a brainvq run" in err and "\n" not in err, err
    run = tmp_path / "run"
    shutil.copytree(anomaly_tiny_run, run)
    RunLayout(run).anomaly.mkdir(exist_ok=True)
    RunLayout(run).anomaly_calibration.write_text("{broken")
    argv = ["anomaly", "--run", run, "--input", png, "--out", tmp_path / "o", "--alpha", ALPHA]
    code, _, err = cli(argv, capsys)
    assert code == 2 and "calibration.json" in err and "\n" not in err, err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"alpha": 1.0}, "--alpha: expected a number in (0, 1), got 1.0"),
        ({"scan_alpha": 0.0}, "--scan-alpha: expected a number in (0, 1), got 0.0"),
        ({"n_heal": 0}, "--n-heal: expected an integer in [1, "),
        ({"seed": 2**32}, "--seed: expected an integer seed in [0, 4294967295], got 4294967296"),
    ],
)
def test_the_api_holds_its_numbers_to_the_rules_of_their_flags(
    tmp_path: Path, options: dict, message: str
) -> None:
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=re.escape(message)):
        brainvq.anomaly(tmp_path / "no_run", tmp_path / "no_input.png", out=out, **options)
    assert not out.exists()
