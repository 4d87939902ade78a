"""`brainvq anomaly` with a tiny 3D run, on real NIfTI scans: answers in the scan's own space with
each volume coded, healed and decoded whole, a planted lesion mapped where it is, calibrations
of whole healthy volumes stored under their key (a read-only run answering the same), the shift
check on a calibration of the user's healthy scans, and slices refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from anomaly_run import tree_hashes, uncalibrated_copy
from data.files import brain_scan
from scipy import ndimage
from tiny import TINY_3D, brainvq_cli, run_ok, train_cmd

from app.test_anomaly_calibrations import read_only, writable
from app.test_anomaly_cli import cli, scores
from app.test_anomaly_volumes import assert_in_scan_space
from brainvq.app.anomaly import calibration_store
from brainvq.app.anomaly.calibration import (
    anomaly_settings,
    models_fingerprint,
    prior_name,
)
from brainvq.app.anomaly.find import find_anomalies
from brainvq.app.anomaly.healthy_pool import validate_source
from brainvq.evaluation.synthetic_anatomy import Lesion
from brainvq.inference.codes import decode_codes
from brainvq.inference.run_models import load_run_models
from brainvq.io.images import save_png
from brainvq.run import RunLayout, load_run

LEVELS, SIZE, STRIDE = 16, 32, 2  # tiny_3d.yaml: 16 levels of 32x32, level_downsample 2
ALPHA = "0.1"  # one validate subject: 16 calibration slices, enough for 0.1
# a cavity through the band's levels (MNI mm): the tiny VQ-VAE codes a bright lesion as it
# codes the brightest tissue (as the 2D tests' tiny run does), so its healing has nothing to
# redraw there; a dark one it cannot code as tissue
CAVITY = Lesion("ellipsoid", (0.0, -15.0, 13.0), 35.0, 0.0)


@pytest.fixture(scope="module")
def run_3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 3D run with its prior of latent levels: tiny_3d.yaml on 8 training subjects,
    `train vqvae` for 30 epochs and `train prior` for 10 (about a minute and a half): with 3
    subjects, or 2 epochs, the VQ-VAE codes every brain as one blur and the prior has seen 24
    code maps, and no map tells a lesion from tissue."""
    root = tmp_path_factory.mktemp("anomaly3d")
    config = yaml.safe_load(TINY_3D.read_text(encoding="utf-8"))
    config["data"]["demo_subjects"] = [8, 1, 1]
    path = root / "tiny_3d_8.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    run = root / "run"
    run_ok(train_cmd(run, "--epochs", "30", config=path))
    prior = [*train_cmd(run)[:4], "prior", "--run", str(run), "--epochs", "10"]
    run_ok([*prior, "--accelerator", "cpu"])
    return run


@pytest.fixture
def run(run_3d: Path, tmp_path: Path) -> Path:
    """A copy of the tiny 3D run without any calibration."""
    return uncalibrated_copy(run_3d, tmp_path)


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    """The same synthetic T1 scan (3 mm voxels, a tilted pose) without and with the cavity."""
    folder = tmp_path_factory.mktemp("scans")
    return {
        "clean": brain_scan(folder / "clean" / "sub-01_T1w.nii.gz", seed=5),
        "lesion": brain_scan(folder / "lesion" / "sub-01_T1w.nii.gz", seed=5, lesions=[CAVITY]),
    }


def test_a_scan_is_answered_in_its_own_space_its_volume_healed_whole(
    run: Path, cache: Path, scans: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, scan = scans["clean"]
    out = tmp_path / "out"
    argv = ["anomaly", "--run", run, "--input", path, "--out", out, "--alpha", ALPHA]
    code, stdout, err = cli(argv, capsys)
    assert code == 0, err
    assert_in_scan_space(out, "sub-01_T1w", scan)
    amap = nib.load(str(out / "sub-01_T1w_anomaly.nii.gz")).get_fdata()
    judged = np.isfinite(amap)
    assert judged.any() and (amap[judged] >= 0).all()
    assert np.isnan(amap[scan.brain]).mean() > 0.3  # the band's 16 levels miss most of a brain
    rows = scores(out)
    assert [int(r["level"]) for r in rows] == list(range(LEVELS))
    assert {r["level_from"] for r in rows} == {"frame"}
    with np.load(out / "anomaly_maps.npz") as f:
        assert f["maps"].shape == (LEVELS, SIZE, SIZE)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    volume = summary["volumes"][0]
    assert volume["levels_covered"] == list(range(LEVELS))
    assert {"scan_flagged", "slices_flagged", "shift_check", "coverage"} <= set(volume)
    assert summary["scans"][0]["slices"] == LEVELS and "sub-01_T1w.nii.gz:" in stdout
    # coded whole: the two slices of a latent level share its codes, NLL and healings, and the
    # healed slices are the healed code volume decoded whole
    result = find_anomalies(run, path, alpha=0.1, progress=False)
    details, models = result.details, load_run_models(run)
    assert np.array_equal(details.codes[0::2], details.codes[1::2])
    assert np.array_equal(details.nll[0::2], details.nll[1::2])
    assert np.array_equal(details.healed_codes[0::2], details.healed_codes[1::2])
    volume_codes = details.healed_codes[0::2, 0][None]  # (1, D', h, w): the first healing
    np.testing.assert_array_equal(
        decode_codes(models.vqvae.model, volume_codes)[0], details.healed[:, 0]
    )
    assert details.resampled.any() and not details.resampled.all()
    # the naive sampler heals the same code volumes, code for code
    naive = find_anomalies(run, path, alpha=0.1, progress=False, sampler="naive")
    np.testing.assert_array_equal(naive.details.healed_codes, details.healed_codes)
    np.testing.assert_array_equal(naive.maps, result.maps)


def test_a_planted_lesion_scores_higher_inside_than_around_it(
    run: Path, cache: Path, scans: dict
) -> None:
    maps = {}
    for name, (path, _) in scans.items():
        result = find_anomalies(run, path, alpha=0.1, progress=False)
        maps[name] = result.volumes[0].to_scan(result.maps)  # (scan shape), NaN where not judged
    lesion = scans["lesion"][1].lesion & np.isfinite(maps["lesion"])
    brain = scans["lesion"][1].brain & np.isfinite(maps["lesion"])
    around = ndimage.binary_dilation(lesion, iterations=3) & brain & ~lesion
    assert lesion.sum() > 100 and around.sum() > 100
    inside, beside = maps["lesion"][lesion].mean(), maps["lesion"][around].mean()
    clean = np.nanmean(maps["clean"][lesion])  # its registration may judge a few fewer
    print(f"map inside the cavity {inside:.5f}, around it {beside:.5f}, without it {clean:.5f}")
    assert inside > beside
    assert inside > clean


def test_a_calibration_is_stored_under_its_key_and_a_read_only_run_answers_the_same(
    run: Path, cache: Path, scans: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = scans["clean"]
    code, stdout, err = cli(["anomaly", "calibrate", "--run", run, "--alpha", ALPHA], capsys)
    assert code == 0, err
    models = load_run_models(run)
    settings = anomaly_settings(load_run(run))
    key = calibration_store.CalibrationKey(
        models_fingerprint(models),
        prior_name(run, models),
        validate_source(load_run(run)),
        settings,
    )
    assert prior_name(run, models) == "prior/PixelCNN_Model"  # the prior of latent levels
    stored = calibration_store.load(calibration_store.run_path(run, key))
    assert stored.n_slices == LEVELS  # the validate subject, whole
    assert stored.maps.foreground.shape == (LEVELS, SIZE, SIZE)
    chosen = json.loads(RunLayout(run).anomaly_calibration.read_text(encoding="utf-8"))
    assert chosen["key"] == key.name and f"on {LEVELS} healthy slices" in stdout
    answer = find_anomalies(run, path, alpha=0.1, progress=False)
    assert answer.stored.path == calibration_store.run_path(run, key)
    before = tree_hashes(run)
    read_only(run)
    try:
        again = find_anomalies(run, path, alpha=0.1, progress=False)
    finally:
        writable(run)
    assert tree_hashes(run) == before
    assert not (cache / "anomaly").exists()  # nothing made again
    assert again.calibration == answer.calibration
    # the scan is registered again: its slices on the frame agree to float rounding
    np.testing.assert_allclose(again.maps, answer.maps, atol=1e-5)
    np.testing.assert_array_equal(again.flagged, answer.flagged)
    assert again.scans[0].flagged == answer.scans[0].flagged


def test_the_shift_check_on_a_calibration_of_healthy_scans(
    run: Path, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Calibrated on three healthy scans (48 slices, whole volumes), a fourth healthy one is
    covered by the guarantee; the same brain with its T1 contrast inverted flags more of its
    frame slices than the calibration allows (8 of 16 with the tiny run natively: at the
    warning's border, which needs more than half) and differs in contrast."""
    for i in range(3):
        brain_scan(tmp_path / "healthy" / f"h{i}.nii.gz", seed=20 + i, voxel_mm=4.0)
    argv = ["anomaly", "calibrate", "--run", run, "--healthy", tmp_path / "healthy"]
    code, stdout, err = cli([*argv, "--alpha", ALPHA], capsys)
    assert code == 0, err
    assert "healthy scans" in stdout and f"on {3 * LEVELS} healthy slices" in stdout
    checks = {}
    for name, invert in (("healthy", False), ("inverted", True)):
        path, _ = brain_scan(tmp_path / f"{name}.nii.gz", seed=30, voxel_mm=4.0, invert=invert)
        out = tmp_path / f"out_{name}"
        argv = ["anomaly", "--run", run, "--input", path, "--out", out, "--alpha", ALPHA]
        code, stdout, err = cli(argv, capsys)
        assert code == 0, err
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        assert "healthy scans" in summary["calibration"]["source"]
        checks[name] = summary["volumes"][0]
        print(checks[name]["summary"])
    healthy = checks["healthy"]
    assert healthy["calibration_applies"] and not healthy["shift_check"]["warn"]
    assert healthy["shift_check"]["flagging"]["limit_share"] is not None  # 48 slices judge it
    over = {k: v["shift_check"]["flagging"]["slices_over_limit"] for k, v in checks.items()}
    # how many of the inverted scan's slices the tiny run flags depends on the CPU's kernels
    # (8 of 16 against the healthy scan's 2 natively with bf16; 2 against 0 limited to AVX2
    # in fp32): more than the healthy scan's
    assert over["inverted"] > over["healthy"], over
    distance = {k: v["shift_check"]["contrast"]["distance"] for k, v in checks.items()}
    assert distance["inverted"] > 5 * distance["healthy"], distance


@pytest.mark.parametrize("action", ["anomaly", "calibrate"])
def test_slices_are_refused_by_a_3d_run_in_one_line(
    run: Path, cache: Path, tmp_path: Path, action: str
) -> None:
    folder = tmp_path / "pngs"
    for k in range(2):
        save_png(folder / f"case_001_slice_{k}.nii.png", np.zeros((SIZE, SIZE), dtype=np.uint8))
    out = tmp_path / "out"
    args = ["--input", folder, "--out", out] if action == "anomaly" else ["--healthy", folder]
    head = ["anomaly"] if action == "anomaly" else ["anomaly", "calibrate"]
    done = brainvq_cli(*head, "--run", run, *args)
    assert done.returncode == 2, (done.stdout[-2000:], done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "a 3D run" in lines[0] and "volumes (NIfTI" in lines[0], lines[0]
    assert not RunLayout(run).anomaly.exists()
    assert not out.exists() or not any(out.iterdir())
