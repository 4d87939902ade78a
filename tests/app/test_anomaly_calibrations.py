"""Calibrations keyed by their settings, stored once, never written into a run by a plain
`brainvq anomaly`: a read-only run answers as a writable one and stays byte for byte the same, a
refused call leaves nothing anywhere, calibrations of different settings coexist and are each
made once, a cache that cannot be written sends the calibration to the output folder, and a run
calibrated by the previous version (calibration.json + calibration_maps.npz, version 2) loads and
scores as before."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import yaml
from anomaly_run import tree_hashes, uncalibrated_copy
from data.files import write_png

from app.test_anomaly_cli import ALPHA, cli, scores
from brainvq.app.anomaly import calibration_store
from brainvq.app.anomaly.calibration import (
    LEGACY_NOTE,
    anomaly_settings,
    make_calibration,
    models_fingerprint,
    prior_name,
)
from brainvq.app.anomaly.find import find_anomalies
from brainvq.app.anomaly.healthy_pool import healthy_slices, validate_source
from brainvq.app.run_data import run_slices
from brainvq.config import to_dict
from brainvq.evaluation.anomaly_decisions import LEGACY_SCORE
from brainvq.evaluation.conformal import conformal_quantile, risk_control_threshold
from brainvq.inference.anomaly_maps import slice_scores
from brainvq.inference.run_models import load_run_models
from brainvq.run import RunLayout, load_run
from brainvq.run_config import LEGACY_ANOMALY


@pytest.fixture
def run(anomaly_tiny_run: Path, tmp_path: Path) -> Path:
    """A copy of the tiny run without any calibration."""
    return uncalibrated_copy(anomaly_tiny_run, tmp_path)


@pytest.fixture
def folder(run: Path, tmp_path: Path) -> Path:
    """Four test slices of two subjects, named as OASIS names them."""
    images = run_slices(load_run(run), progress=False).require_split("test").images
    out = tmp_path / "in"
    for k in (6, 14):
        write_png(out / f"case_8_slice_{k}.nii.png", images[k])
        write_png(out / f"case_9_slice_{k}.nii.png", images[k + 1])
    return out


def read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if not path.is_symlink():
            path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.lstat().st_mode | stat.S_IWUSR)


def cached(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "anomaly").glob("*.npz"))


def test_a_read_only_run_answers_as_a_writable_one_and_stays_the_same(
    run: Path, folder: Path, cache: Path, tmp_path: Path
) -> None:
    twin = tmp_path / "twin"
    shutil.copytree(run, twin)
    writable_answer = find_anomalies(twin, folder, alpha=0.1, progress=False)
    shutil.rmtree(cache)  # the read-only run calibrates again, into the cache
    before = tree_hashes(run)
    read_only(run)
    try:
        first = find_anomalies(run, folder, alpha=0.1, progress=False)
        again = find_anomalies(run, folder, alpha=0.1, progress=False)
    finally:
        writable(run)
    assert tree_hashes(run) == before
    assert any("calibrated on 32" in n for n in first.notes)
    assert not any("calibrated" in n for n in again.notes)
    assert len(cached(cache)) == 1
    for answer in (first, again):
        for name in ("maps", "masks", "scores", "p_values", "flagged"):
            np.testing.assert_array_equal(getattr(answer, name), getattr(writable_answer, name))
        assert [a.p for a in answer.scans] == [a.p for a in writable_answer.scans]


def test_a_cache_that_cannot_be_written_sends_the_calibration_to_the_output_folder(
    run: Path, folder: Path, cache: Path, tmp_path: Path, capsys
) -> None:
    cache.mkdir()
    (cache / "anomaly").write_text("a file where the calibrations' folder would be")
    before = tree_hashes(run)
    out = tmp_path / "out"
    code, stdout, err = cli(
        ["anomaly", "--run", run, "--input", folder, "--out", out, "--alpha", ALPHA], capsys
    )
    assert code == 0, err
    assert tree_hashes(run) == before
    kept = list((out / "calibration").glob("*.npz"))
    assert len(kept) == 1 and str(kept[0]) in stdout and "cannot be written" in stdout
    stored = calibration_store.load(kept[0])
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert stored.key.name == summary["calibration"]["key"] and stored.n_slices == 32


@pytest.mark.parametrize("action", [[], ["calibrate"]])
def test_a_refused_call_leaves_nothing_behind(
    run: Path, folder: Path, cache: Path, tmp_path: Path, capsys, action: list
) -> None:
    before = tree_hashes(run)
    out = tmp_path / "out"
    flags = [] if action else ["--input", folder, "--out", out]
    code, _, err = cli(["anomaly", *action, "--run", run, *flags, "--alpha", "0.01"], capsys)
    assert code == 2 and "99" in err, err  # 32 calibration slices cannot promise 1%
    assert tree_hashes(run) == before
    assert not (cache / "anomaly").exists()
    assert not out.exists() or not any(out.iterdir())


def test_calibrations_of_other_settings_coexist_and_are_each_made_once(
    run: Path, folder: Path, cache: Path
) -> None:
    made = {}
    for n_heal in (1, 2):
        answer = find_anomalies(run, folder, alpha=0.1, n_heal=n_heal, progress=False)
        assert any("calibrated on 32" in n for n in answer.notes)
        made[n_heal] = answer
    assert len(cached(cache)) == 2
    hashes = tree_hashes(cache / "anomaly")
    for n_heal in (1, 2):
        again = find_anomalies(run, folder, alpha=0.2, n_heal=n_heal, progress=False)
        assert not any("calibrated" in n for n in again.notes)
        assert again.calibration.key == made[n_heal].calibration.key
        assert again.calibration.settings.n_heal == n_heal
        np.testing.assert_array_equal(again.maps, made[n_heal].maps)  # alpha: no new healing
    assert tree_hashes(cache / "anomaly") == hashes
    assert made[1].calibration.key != made[2].calibration.key


def as_saved_before(run: Path) -> None:
    """RUN/config.yaml as brainvq saved it before the LEGACY_ANOMALY keys existed."""
    path = RunLayout(run).config
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key in LEGACY_ANOMALY:
        del doc["anomaly"][key]
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def write_previous_version(run: Path, alpha: float) -> dict:
    """RUN/anomaly/calibration.json and calibration_maps.npz as brainvq wrote them before
    calibrations had keys (MAPS_VERSION 2; the file layout and key of that version, the maps
    made the same way: a run config without the keys added since, its maps made as then).
    Returns the calibration.json document."""
    as_saved_before(run)
    config = load_run(run)
    assert all(getattr(config.anomaly, k) == v for k, v in LEGACY_ANOMALY.items())
    settings = anomaly_settings(config)
    models = load_run_models(run)
    slices = healthy_slices(run, config, settings, models, None, None, False)
    key = calibration_store.CalibrationKey(
        models_fingerprint(models), prior_name(run, models), slices.source, settings
    )
    stored = make_calibration(run, key, slices, models, progress=False)
    maps = stored.maps.maps()
    scores = slice_scores(maps, settings.score_share)
    source = validate_source(config)
    earlier = {k: v for k, v in to_dict(settings).items() if k not in LEGACY_ANOMALY}
    legacy_key = json.dumps(
        {"version": 2, "models": key.models, "source": source, "settings": earlier}
    )
    layout = RunLayout(run)
    layout.anomaly.mkdir()
    with open(layout.anomaly_calibration_maps, "wb") as f:
        np.savez_compressed(
            f,
            values=stored.maps.values,
            counts=stored.maps.counts,
            scores=scores,
            nll_medians=stored.slices.nll_medians,
            code_threshold=np.float64(stored.code_threshold),
            n_code_maps=np.int64(stored.n_code_maps),
            key=np.array(legacy_key),
        )
    pixel = risk_control_threshold(stored.maps.values, stored.maps.counts, alpha)
    slice_t = conformal_quantile(scores, alpha)
    doc = {
        "alpha": alpha,
        "code_threshold": stored.code_threshold,
        "pixel_threshold": pixel,
        "slice_threshold": slice_t,
        "n_code_maps": stored.n_code_maps,
        "n_slices": stored.n_slices,
        "calibration_flagged_share": 0.0,
        "calibration_flagged_slices": float((scores > slice_t).mean()),
        "models": key.models,
        "source": source,
        "settings": earlier,
    }
    layout.anomaly_calibration.write_text(json.dumps(doc, indent=2, sort_keys=True))
    return doc


def test_a_run_calibrated_by_the_previous_version_loads_and_scores_as_before(
    run: Path, folder: Path, cache: Path, tmp_path: Path, capsys
) -> None:
    doc = write_previous_version(run, 0.1)
    before = tree_hashes(run)
    out = tmp_path / "out"
    code, stdout, err = cli(
        ["anomaly", "--run", run, "--input", folder, "--out", out, "--alpha", ALPHA], capsys
    )
    assert code == 0, err
    assert "calibrated on" not in stdout and "earlier brainvq" in stdout, stdout
    assert tree_hashes(run) == before and not (cache / "anomaly").exists()
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["calibration"]["slice_score"] == LEGACY_SCORE
    for name in ("pixel_threshold", "slice_threshold", "code_threshold"):
        assert summary["calibration"][name] == doc[name]
    with np.load(out / "anomaly_maps.npz") as f:
        maps, masks = f["maps"], f["masks"]
    np.testing.assert_array_equal(masks, maps > doc["pixel_threshold"])
    expected = slice_scores(maps, load_run(run).anomaly.score_share)  # the earlier score
    rows = scores(out)
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected, rtol=1e-5)
    assert [r["flagged"] for r in rows] == [str(int(s > doc["slice_threshold"])) for s in expected]
    answer = find_anomalies(run, folder, alpha=0.1, progress=False)
    assert LEGACY_NOTE in answer.notes
    np.testing.assert_array_equal(answer.flagged, expected > doc["slice_threshold"])
    assert os.access(run, os.W_OK)  # writable, and still not written
    assert tree_hashes(run) == before


def test_a_calibration_on_the_users_scans_is_kept_and_not_replaced_silently(
    run: Path, folder: Path, cache: Path, tmp_path: Path, capsys
) -> None:
    """Calibrated on the user's own healthy slices, a run answers with that calibration; asked
    for other settings it refuses (one line, exit 2) instead of judging against the validate
    split."""
    code, stdout, err = cli(
        ["anomaly", "calibrate", "--run", run, "--healthy", folder, "--alpha", "0.3"], capsys
    )
    assert code == 0 and "healthy scans" in stdout, err
    argv = ["anomaly", "--run", run, "--input", folder, "--out", tmp_path / "o", "--alpha", "0.3"]
    code, stdout, err = cli(argv, capsys)
    assert code == 0 and "calibrated on" not in stdout, err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text(encoding="utf-8"))
    assert summary["calibration"]["source"].startswith("healthy scans")
    assert "too few calibration slices" in " ".join(summary["notes"])  # 4: the check abstains
    code, _, err = cli([*argv, "--n-heal", "2"], capsys)
    assert code == 2 and "\n" not in err, err
    assert "calibration.json" in err and "other models or settings" in err and "--healthy" in err
    assert not (cache / "anomaly").exists()
