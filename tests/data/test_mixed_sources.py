"""Mixed sources: OASIS slices beside volumes over a wider range of the same grid, in one run.
Each source keeps its levels (moved onto the run's frame: OASIS's level k is the run's level
k + offset) and its subjects' splits; a source whose frame is not a range of the run's, or a
subject in two sources, is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brainvq.app.cli import main
from brainvq.app.run_data import run_slices
from brainvq.data import load_slices
from brainvq.data.space.frame import oasis_frame
from brainvq.data.space.run_space import spanning_frame
from brainvq.run_config import load_run_config
from data.files import brain_scan, make_oasis_tree, write_png

Z_RANGE = [-20.0, 40.0]  # holds OASIS's band (-2.7 to +29.3 mm)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("mixed")
    for i in range(2):
        brain_scan(root / "heads" / f"head{i}.nii.gz", voxel_mm=6.0, seed=40 + i)
    make_oasis_tree(root / "oasis", seg=False)
    return root / "heads", root / "oasis"


def test_each_source_keeps_its_levels_and_splits(sources: tuple[Path, Path]) -> None:
    heads, oasis = sources
    data = {"source": str(heads), "sources": [str(oasis)], "z_range_mm": Z_RANGE, "size": 32}
    mixed = run_slices(load_run_config(None, {"data": data}), progress=False)
    frame = spanning_frame(tuple(Z_RANGE))
    offset = frame.level_offset(oasis_frame())
    assert mixed.n_levels == frame.n_levels and offset > 0
    for alone, shift in (
        (load_slices(oasis, 32, progress=False), offset),
        (load_slices(heads, 32, z_range_mm=tuple(Z_RANGE), progress=False), 0),
    ):
        rows = np.flatnonzero(np.isin(mixed.filename, alone.filename))
        assert len(rows) == len(alone)
        by_name = {f: i for i, f in enumerate(alone.filename.tolist())}
        own = np.array([by_name[f] for f in mixed.filename[rows].tolist()])
        np.testing.assert_array_equal(mixed.level[rows], alone.level[own] + shift)
        np.testing.assert_array_equal(mixed.split[rows], alone.split[own])
        np.testing.assert_array_equal(mixed.subject[rows], alone.subject[own])
        np.testing.assert_array_equal(mixed.images[rows], alone.images[own])


def test_a_source_off_the_run_s_grid_is_one_line(
    sources: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    heads, _ = sources
    write_png(tmp_path / "pngs" / "a.png", np.zeros((16, 16), np.uint8))
    config = tmp_path / "mixed.yaml"
    config.write_text(
        f"data:\n  n_levels: 16\n  z_range_mm: {Z_RANGE}\n  sources: ['{tmp_path / 'pngs'}']\n",
        encoding="utf-8",
    )
    run = tmp_path / "run"
    argv = ["train", "vqvae", "--data", str(heads), "--config", str(config), "--out", str(run)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "frames disagree" in err and "16 levels" in err, err
    assert not (run / "config.yaml").exists()


def test_a_subject_in_two_sources_is_refused() -> None:
    data = {"source": "demo", "sources": ["demo"], "demo_subjects": [1, 1, 1], "size": 32}
    with pytest.raises(ValueError, match="subject 'demo_000' is in both demo and demo"):
        run_slices(load_run_config(None, {"data": data}), progress=False)
