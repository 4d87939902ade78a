"""The whole brain on OASIS's grid: the packaged range holds all of the template's brain, the demo
cohort renders over it (brain stem and cerebellum at the bottom, the vertex at the top), and a
range with no brain, outside the template, or asked of a source with its own band is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brainvq.data import load_slices
from brainvq.data.demo import build_demo
from brainvq.data.loader import resolve_source
from brainvq.data.space.frame import oasis_frame
from brainvq.data.space.run_space import coverage, frame_for_source, spanning_frame
from brainvq.run import packaged_config
from brainvq.run_config import load_run_config
from data.files import write_png

WHOLE = tuple(load_run_config(packaged_config("whole_brain")).data.z_range_mm)


def test_the_packaged_range_covers_the_brain_on_the_band_s_grid() -> None:
    frame = spanning_frame(WHOLE)
    band = oasis_frame()
    assert frame.n_levels >= 150
    assert frame.level_spacing_mm == pytest.approx(band.level_spacing_mm)
    # the same grid: OASIS's level 0 is one of the whole brain's levels
    dz = frame.level_z([1])[0] - frame.level_z([0])[0]
    offset = round((band.level_z([0])[0] - frame.level_z([0])[0]) / dz)
    shifted = frame.matrix[:, 3] + offset * frame.matrix[:, 2]
    np.testing.assert_allclose(shifted, band.matrix[:, 3], atol=1e-9)
    np.testing.assert_allclose(frame.matrix[:, :3], band.matrix[:, :3])
    assert coverage(frame)["template_brain_share"] >= 0.999
    assert coverage(band)["template_brain_share"] < 0.4
    assert coverage(frame)["levels"] == frame.n_levels


def test_the_demo_renders_the_whole_brain(tmp_path: Path) -> None:
    s = build_demo(size=32, subjects=(1, 0, 0), show_progress=False, z_range_mm=WHOLE)
    n = spanning_frame(WHOLE).n_levels
    assert s.n_levels == n and s.level.tolist() == list(range(n))
    head = (s.images > 40).reshape(n, -1).sum(axis=1)  # brain and its rim, per level
    middle = head[n // 2 - 10 : n // 2 + 10].mean()
    # brain at every level; the brain stem and the vertex far smaller than the middle
    assert (head > 0).all()
    assert head[:5].mean() < 0.3 * middle and head[-3:].mean() < 0.3 * middle
    band = build_demo(size=32, subjects=(1, 0, 0), show_progress=False)
    assert band.n_levels == 32
    # a cache entry per range: the band's cohort is not the whole brain's
    cache = tmp_path / "cache"
    whole = load_slices("demo", 32, cache_dir=cache, demo_subjects=(1, 1, 1), progress=False)
    wide = load_slices(
        "demo", 32, cache_dir=cache, demo_subjects=(1, 1, 1), z_range_mm=WHOLE, progress=False
    )
    assert (whole.n_levels, wide.n_levels) == (32, n)


@pytest.mark.parametrize(
    ("z_range", "message"),
    [
        ((-90.0, 20.0), r"z_range_mm \[-90, 20\]: outside the MNI152 template, which spans z -72"),
        ((10.0, 130.0), "outside the MNI152 template"),
        ((90.0, 110.0), r"z_range_mm \[90, 110\]: no brain there; the template's brain spans z"),
    ],
)
def test_a_range_outside_the_template_or_without_brain_is_refused(
    z_range: tuple[float, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        spanning_frame(z_range)
    with pytest.raises(ValueError, match=message):
        build_demo(size=32, subjects=(1, 0, 0), show_progress=False, z_range_mm=z_range)


def test_a_range_is_refused_for_sources_with_their_own_band(tmp_path: Path) -> None:
    write_png(tmp_path / "pngs" / "a.png", np.zeros((16, 16), np.uint8))
    with pytest.raises(ValueError, match=r"pngs: a folder of slices lies on OASIS's band"):
        resolve_source(tmp_path / "pngs", z_range_mm=WHOLE)
    with pytest.raises(ValueError, match="only volumes and the demo cohort"):
        frame_for_source("oasis", 32, WHOLE)


def test_the_band_s_levels_map_onto_the_whole_brain_s_matching_levels() -> None:
    """Mixed sources: OASIS's level k is the whole-brain run's level k + offset, the same
    anatomy (the same MNI points at every pixel)."""
    whole, band = spanning_frame(WHOLE), oasis_frame()
    offset = whole.level_offset(band)
    k = np.arange(band.n_levels)
    np.testing.assert_allclose(whole.points(16, k + offset), band.points(16, k), atol=1e-6)
    assert whole.level_offset(whole) == 0
    with pytest.raises(ValueError, match="frames disagree: .* is not on the grid of"):
        whole.level_offset(band.resampled(16))  # the band in 16 levels: another spacing
    with pytest.raises(ValueError, match=r"frames disagree: the levels of .* \(-3 to 28 here\)"):
        spanning_frame((0.0, 20.0)).level_offset(band)
