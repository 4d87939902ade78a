"""The reference space: registration recovers known transforms, frame <-> scan round trips, and
the OASIS level table places real OASIS slices within its stated error."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from brainvq.data.space.frame import BASE_SIZE, Frame, oasis_frame
from brainvq.data.space.registration import RegistrationSettings, register_volume
from brainvq.data.space.resample import frame_to_scan, scan_to_frame
from brainvq.data.space.template import load_reference
from brainvq.evaluation.synthetic_scans import Acquisition, make_scan

OASIS = Path(__file__).resolve().parents[3] / "shared" / "oasis"
# The stated error of the registration on these small synthetic scans (mm over brain voxels);
# benchmarks/bench_registration.py measures it on realistic ones.
MEAN_ERROR_MM, P95_ERROR_MM = 1.5, 3.0
# a raw research head: skull, face, neck and shoulders (its centre of mass ~6 cm below the
# brain), pitched 20 degrees, a small atrophied brain, noise, the origin at the volume's corner
RAW_HEAD = Acquisition(
    "PIR",
    (2.0, 2.0, 2.0),
    rotation_deg=(-20, 4, -3),
    scale=(0.9, 0.88, 0.9),
    shift_mm=(40, -90, 120),
    skull=True,
    warp_mm=2.0,
    bias=0.25,
    noise=0.04,
    neck_to_mm=-175.0,
    atrophy=0.8,
    corner_origin=True,
)


def errors_mm(scan, registration) -> np.ndarray:
    """Distance between where the registration and the truth put the template's brain voxels."""
    reference = load_reference()
    idx = np.argwhere(reference.mask)[::97]
    points = (reference.affine[:3, :3] @ idx.T + reference.affine[:3, 3:4]).astype(np.float64)
    found = registration.to_scan[:3, :3] @ points + registration.to_scan[:3, 3:4]
    return np.linalg.norm(found - scan.true_scan_points(points), axis=0)


@pytest.mark.parametrize(
    "acquisition",
    [
        Acquisition("RAS", (2.0, 2.0, 2.0), rotation_deg=(12, -8, 5), shift_mm=(25, -60, 40)),
        Acquisition(
            "LPS",
            (2.0, 2.0, 2.0),
            rotation_deg=(-6, 10, -12),
            scale=(1.08, 0.93, 1.05),
            shift_mm=(-30, 20, -50),
            gamma=1.3,
        ),
        Acquisition("PIR", (1.0, 1.0, 5.0), rotation_deg=(8, 4, -3), oblique_deg=10.0),
        Acquisition("LAS", (2.0, 2.0, 2.0), rotation_deg=(5, 5, 5), skull=True, bias=0.2),
        RAW_HEAD,
    ],
    ids=["rigid-RAS", "affine-LPS", "thick-oblique-PIR", "skull-LAS", "raw-head-neck-corner"],
)
def test_registration_recovers_a_known_transform(acquisition: Acquisition) -> None:
    scan = make_scan(acquisition, seed=3)
    data = np.asarray(scan.image.dataobj, dtype=np.float32)
    registration = register_volume(data, scan.image.affine)
    e = errors_mm(scan, registration)
    assert e.mean() < MEAN_ERROR_MM and np.percentile(e, 95) < P95_ERROR_MM, (
        e.mean(),
        np.percentile(e, 95),
    )
    assert registration.metric < -0.3


def test_the_wide_search_finds_a_brain_that_the_first_starts_miss() -> None:
    """Step 5 of the registration: starts placed far from the brain (a grid 15 cm below every
    start) find no brain; the wide search over the field of view does, and says it was made."""
    scan = make_scan(RAW_HEAD, seed=4)
    data = np.asarray(scan.image.dataobj, dtype=np.float32)
    misled = RegistrationSettings(grid_x_mm=(0.0,), grid_y_mm=(0.0,), grid_z_mm=(-150.0,))
    registration = register_volume(data, scan.image.affine, settings=misled)
    assert len(registration.tried) == 2 and "wide" in registration.tried[1]
    assert registration.found_brain
    assert errors_mm(scan, registration).mean() < MEAN_ERROR_MM


def test_the_wide_searchs_vectorised_ranking_agrees_with_simpleitks_metric() -> None:
    """The wide search ranks its thousands of starts by a vectorised histogram MI and scores
    only the best `exact_starts` by SimpleITK: on an oblique PIR head with a skull (so the
    voxel-to-world direction is no symmetric matrix), over 432 starts scored both ways, the two
    rankings agree and SimpleITK's best start is among the histogram's best few."""
    from scipy.stats import spearmanr

    from brainvq.data.space import registration as reg

    head = Acquisition("PIR", (3.0, 3.0, 3.0), rotation_deg=(-15, 5, 0), skull=True, noise=0.03)
    scan = make_scan(head, seed=3)
    data = np.asarray(scan.image.dataobj, dtype=np.float32)
    settings = RegistrationSettings(exact_starts=10**6)
    moving, points = reg._pyramid(data, scan.image.affine, settings)
    fixed, mask = reg._fixed(load_reference(), 8, 8.0, settings.mask_margin_mm)
    centre = points.mean(axis=1) - np.asarray(reg.BRAIN_CENTRE_MM)
    steps = np.arange(-37.5, 37.6, 15.0)
    shifts = centre + np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3)
    pitches = (0.0, 20.0)
    approx = reg._histogram_mi(fixed, mask, moving[4], settings, shifts, pitches)
    exact = reg._score_starts(fixed, mask, moving[4], settings, shifts, pitches)
    order = {(p, tuple(s)): i for i, (p, s) in enumerate((p, s) for p in pitches for s in shifts)}
    truth = np.empty(len(order))
    for value, pitch, shift in exact:
        truth[order[(pitch, tuple(shift))]] = value
    assert len(exact) == len(approx) == 432
    assert spearmanr(approx, truth).correlation > 0.7
    best = order[(exact[0][1], tuple(exact[0][2]))]
    assert int((approx < approx[best]).sum()) < 10  # its rank in the histogram's order


def test_a_map_carried_to_the_scan_and_back_is_unchanged() -> None:
    """Frame -> scan -> frame within interpolation error, on a smooth map over the brain."""
    scan = make_scan(Acquisition("LAS", (1.5, 1.5, 1.5), rotation_deg=(7, -5, 9)), seed=1)
    to_scan = scan.to_scan  # the truth: this test is about resampling, not registration
    frame = oasis_frame()
    size, levels = 64, np.arange(4, 28)
    r, c = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    smooth = np.stack([np.sin(r / 9.0 + k / 5.0) * np.cos(c / 11.0) for k in levels])
    shape = tuple(scan.image.shape)
    in_scan = frame_to_scan(smooth, levels, frame, scan.image.affine, shape, to_scan)
    back, inside = scan_to_frame(
        np.nan_to_num(in_scan, nan=0.0),
        scan.image.affine,
        to_scan,
        frame,
        size,
        levels,
        antialias=False,
    )
    core = (
        inside
        & (np.abs(np.arange(len(levels)) - len(levels) / 2) < len(levels) / 2 - 2)[:, None, None]
    )
    assert np.abs(back - smooth)[core].mean() < 0.03
    assert np.abs(back - smooth)[core].max() < 0.25


def test_voxels_beyond_the_frames_levels_are_nan() -> None:
    scan = make_scan(Acquisition("RAS", (3.0, 3.0, 3.0)), seed=2)
    frame = oasis_frame()
    values = np.ones((frame.n_levels, 32, 32), np.float32)
    out = frame_to_scan(
        values,
        np.arange(frame.n_levels),
        frame,
        scan.image.affine,
        scan.image.shape,
        scan.to_scan,
    )
    ijk = np.indices(scan.image.shape).reshape(3, -1)
    world = scan.image.affine[:3, :3] @ ijk + scan.image.affine[:3, 3:4]
    mni = np.linalg.inv(scan.to_scan)[:3, :3] @ world + np.linalg.inv(scan.to_scan)[:3, 3:4]
    grid = frame.to_grid(mni, 32)
    level = grid[2].reshape(scan.image.shape)
    assert np.isnan(out[(level < -1) | (level > frame.n_levels)]).all()
    assert np.isfinite(out[(level > 1) & (level < frame.n_levels - 2)]).all()


def test_frame_affine_at_other_sizes_covers_the_same_square() -> None:
    frame = oasis_frame()
    corner_base = frame.affine_at(BASE_SIZE) @ [-0.5, -0.5, 3, 1]
    corner_small = frame.affine_at(32) @ [-0.5, -0.5, 3, 1]
    np.testing.assert_allclose(corner_base, corner_small, atol=1e-9)
    assert Frame.from_dict(frame.to_dict()) == frame
    assert frame.resampled(16).level_z([15])[0] == pytest.approx(frame.level_z([31])[0])


@pytest.mark.skipif(not OASIS.is_dir(), reason="the OASIS slices (../shared/oasis) are absent")
def test_oasis_level_table_places_real_validate_slices_within_its_stated_error() -> None:
    """Registering real OASIS validate subjects (not used to make the table) puts each of
    their levels within 3 standard deviations of the table's height for it."""
    spec = importlib.util.spec_from_file_location(
        "measure_oasis_frame",
        Path(__file__).resolve().parents[2] / "benchmarks" / "measure_oasis_frame.py",
    )
    measure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(measure)
    from scipy import ndimage

    from brainvq.data.space.registration import sitk_image

    reference = load_reference()
    moving = sitk_image(
        ndimage.gaussian_filter(reference.t1, 1.0)[::2, ::2, ::2],
        reference.affine @ np.diag([2, 2, 2, 1]),
    )
    validate = measure.stacks(str(OASIS))["validate"]
    frame = oasis_frame()
    table = frame.level_z(np.arange(32))
    sd = np.asarray(frame.level_sd_mm)
    for subject in sorted(validate)[:3]:
        affine, _ = measure.register(validate[subject], moving)
        heights = measure.level_heights(affine)
        assert (np.abs(heights - table) <= 3 * sd).all(), (subject, heights - table)
