"""Coverage said plainly, and anomaly maps of a whole-brain run (issue 31): every scan's answer
states the share of its brain the run judges (summary.json, the command's line, the check
figure); a band run says once that a whole-brain run would judge the rest; NaN stays NaN beyond
the run's levels; a tiny whole-brain run (the demo cohort over 152 levels) scores a scan at
every level its brain reaches, calibrates on a site's whole healthy volumes within a bounded
pool, and answers from a run folder it does not change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from anomaly_run import tree_hashes
from data.files import brain_scan, write_nifti
from tiny import TINY_CONFIG

from app.test_anomaly_cli import cli, scores
from brainvq.app.anomaly.coverage import WHOLE_BRAIN_CONFIG
from brainvq.app.anomaly.healthy_pool import _Pool
from brainvq.app.anomaly.inputs import Inputs
from brainvq.app.cli import main
from brainvq.data.space.check_figure import mark_levels, within_levels
from brainvq.data.space.frame import oasis_frame
from brainvq.data.space.run_space import coverage
from brainvq.inference.run_models import load_run_models

WHOLE_BRAIN_MM = [-72.0, 85.0]  # as configs/whole_brain.yaml
ALPHA = "0.1"


@pytest.fixture(scope="module")
def whole_brain_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny config over the whole brain (data.z_range_mm: 152 levels of the demo cohort,
    one validate subject: 152 calibration slices), VQ-VAE 8 epochs and prior 3. About a minute."""
    root = tmp_path_factory.mktemp("whole")
    config = yaml.safe_load(TINY_CONFIG.read_text(encoding="utf-8"))
    config["data"]["z_range_mm"] = WHOLE_BRAIN_MM
    path = root / "whole.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    run = root / "run"
    argv = ["train", "vqvae", "--data", "demo", "--config", str(path), "--out", str(run)]
    assert main([*argv, "--epochs", "8"]) == 0
    assert main(["train", "prior", "--run", str(run), "--epochs", "3"]) == 0
    return run


@pytest.fixture(scope="module")
def whole_scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A skull-stripped scan whose field of view holds the whole brain, its background NaN (as
    some pipelines write it)."""
    folder = tmp_path_factory.mktemp("scan")
    still = {"rotation_deg": (0, 0, 0), "shift_mm": (0, 0, 0), "scale": (1, 1, 1)}
    _, scan = brain_scan(folder / "made.nii.gz", "LPS", seed=7, **still)
    data = np.asarray(scan.image.dataobj, dtype=np.float32).copy()
    data[~scan.brain] = np.nan
    return write_nifti(folder / "whole_T1w.nii.gz", data, scan.image.affine)


def answer(run: Path, scan: Path, out: Path, capsys) -> tuple[str, dict, dict]:
    """(stdout, summary.json, its volume) of `brainvq anomaly` on one scan."""
    argv = ["anomaly", "--run", run, "--input", scan, "--out", out, "--alpha", ALPHA]
    code, stdout, err = cli(argv, capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return stdout, summary, summary["volumes"][0]


def scan_volume(out: Path, what: str) -> np.ndarray:
    return np.asarray(nib.load(str(out / f"whole_T1w_{what}.nii.gz")).dataobj)


def test_a_band_run_says_how_much_it_judges_and_that_a_whole_brain_run_would_judge_the_rest(
    anomaly_tiny_run: Path, whole_scan: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    stdout, summary, volume = answer(anomaly_tiny_run, whole_scan, out, capsys)
    amap, brain = scan_volume(out, "anomaly"), scan_volume(out, "brain_mask") > 0
    judged = brain & np.isfinite(amap)
    coverage = volume["coverage"]
    assert coverage["brain_voxels"] == int(brain.sum())
    assert coverage["judged_voxels"] == int(judged.sum())
    assert 0.2 < coverage["share"] < 0.6  # OASIS's band: about 40% of a brain
    band = oasis_frame().level_z([0, 31])
    assert coverage["run_levels_mm"] == pytest.approx(band, abs=0.1)
    assert summary["scans"][0]["coverage"] == coverage
    assert f"{coverage['share']:.0%} of its brain judged" in stdout
    assert stdout.count(WHOLE_BRAIN_CONFIG) == 1
    assert any(WHOLE_BRAIN_CONFIG in note for note in summary["notes"])
    # beyond the band (and where the input was NaN) nothing is scored: NaN, never in the mask
    not_judged = ~np.isfinite(amap)
    assert (brain & not_judged).sum() == coverage["brain_voxels"] - coverage["judged_voxels"]
    assert not scan_volume(out, "anomaly_mask")[not_judged].any()
    assert np.isnan(scan_volume(out, "healed")[not_judged]).all()


def test_a_whole_brain_run_scores_every_level_its_brain_reaches(
    whole_brain_run: Path, whole_scan: Path, tmp_path: Path, capsys
) -> None:
    n_levels = oasis_frame().spanning(*WHOLE_BRAIN_MM).n_levels
    assert n_levels >= 150 and load_run_models(whole_brain_run).n_levels == n_levels
    out = tmp_path / "out"
    stdout, summary, volume = answer(whole_brain_run, whole_scan, out, capsys)
    covered = volume["levels_covered"]
    assert [int(r["level"]) for r in scores(out)] == covered  # each covered level scored
    # every level between the lowest and the highest; left out only below and above, where the
    # brain on a level is too small for 32 x 32 pixels (align.MIN_BRAIN_PIXELS) or beyond the
    # scan's field of view
    assert covered == list(range(min(covered), max(covered) + 1))
    assert min(covered) < 20 and max(covered) > n_levels - 15  # cerebellum to vertex
    coverage = volume["coverage"]
    assert coverage["share"] > 0.95  # 0.98 here; at 128 x 128 pixels the small levels count
    amap, brain = scan_volume(out, "anomaly"), scan_volume(out, "brain_mask") > 0
    assert coverage["judged_voxels"] == int((brain & np.isfinite(amap)).sum())
    assert WHOLE_BRAIN_CONFIG not in stdout  # a whole-brain run does not send the user elsewhere
    assert f"{coverage['share']:.0%} of its brain judged" in stdout


def test_a_whole_brain_run_calibrates_on_whole_healthy_volumes_and_answers_read_only(
    whole_brain_run: Path, whole_scan: Path, tmp_path: Path, capsys
) -> None:
    """`anomaly calibrate --healthy` on two whole healthy volumes with a pool of 120 slices (of
    about 280): the pool holds 120, from both; then a plain `anomaly` reads the run and leaves
    it as it was."""
    run = tmp_path / "run"
    shutil.copytree(whole_brain_run, run)
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    config["anomaly"]["calibration_slices"] = 120
    (run / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    for i in range(2):
        brain_scan(tmp_path / "healthy" / f"h{i}.nii.gz", seed=30 + i)
    argv = ["anomaly", "calibrate", "--run", run, "--healthy", tmp_path / "healthy"]
    code, stdout, err = cli([*argv, "--alpha", ALPHA], capsys)
    assert code == 0, err
    assert "calibrated on 120 healthy slices" in stdout and "2 volumes, 120 slices" in stdout
    before = tree_hashes(run)
    stdout, summary, volume = answer(run, whole_scan, tmp_path / "out", capsys)
    assert tree_hashes(run) == before
    assert "healthy scans" in summary["calibration"]["source"]
    assert volume["coverage"]["share"] > 0.95
    assert "shift_check" in volume and "the calibration" in volume["summary"]


def slices_of(n: int, volume: int) -> Inputs:
    images = np.full((n, 4, 4), volume, np.uint8)
    return Inputs(
        images,
        [f"v{volume}#level{k}" for k in range(n)],
        np.arange(n),
        Path("."),
        volume_of=np.full(n, volume),
        foreground=np.ones((n, 4, 4), bool),
    )


def test_the_healthy_pool_keeps_the_slices_with_the_smallest_keys_and_no_more() -> None:
    rng = np.random.default_rng(0)
    pool, keys = _Pool(most=50, context=False), []
    for volume in range(6):
        k = rng.random(40)
        keys.append(k)
        pool.add(k, slices_of(40, volume))
        assert sum(len(p[0]) for p in pool.parts) <= 50  # bounded while reading
    chosen = pool.inputs(Path("."))
    every = np.concatenate(keys)
    expected = np.sort(np.argsort(every)[:50])  # the 50 smallest keys, in reading order
    assert (chosen.volume_of * 40 + chosen.levels).tolist() == expected.tolist()


def test_the_healthy_pool_in_3d_context_keeps_whole_volumes() -> None:
    pool = _Pool(most=100, context=True)
    for volume, key in enumerate([0.9, 0.2, 0.5, 0.1]):
        pool.add(np.full(40, key), slices_of(40, volume))
    chosen = pool.inputs(Path("."))
    assert sorted(set(chosen.volume_of.tolist())) == [1, 3]  # keys 0.1 and 0.2; 0.5 would not fit
    assert len(chosen.images) == 80


def test_the_check_figure_dims_what_the_run_does_not_judge() -> None:
    band = oasis_frame()
    whole = band.spanning(*WHOLE_BRAIN_MM)
    z = np.linspace(-70, 80, 151)
    points = np.stack([np.zeros((151, 3)), np.zeros((151, 3)), np.repeat(z[:, None], 3, 1)])
    assert within_levels(whole, points).all()
    inside = within_levels(band, points)
    low, high = band.level_z([0, 31])
    assert not inside[(z < low - 2) | (z > high + 2)].any()
    assert inside[(z > low + 2) & (z < high - 2)].all()
    gray = np.full((151, 3, 3), 200, np.uint8)
    marked = mark_levels(gray, inside)
    outside = marked[~inside]
    assert (outside[:, 2] > outside[:, 0]).all() and (outside.mean(axis=1) < 150).all()
    share = {
        name: coverage(frame)["template_brain_share"]
        for name, frame in (("whole", whole), ("band", band))
    }
    assert share["whole"] > 0.99 and 0.25 < share["band"] < 0.5
