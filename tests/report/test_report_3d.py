"""The report of a 3D run, drawn from a tiny `train all` on the demo cohort's volumes: real
subjects above their reconstructions and generated subjects beside a real one, each in three
planes with the level axis at its true spacing (millimetres square), and a page that says the
run is 3D with its latent grid, bits per voxel and per-plane SSIM."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from tiny import TINY_3D, run_ok

from brainvq.app.run_data import run_slices
from brainvq.app.subjects import subject_space
from brainvq.data.subject_volumes import subject_volumes
from brainvq.report.plots import DPI, draw_subject_planes
from brainvq.run import load_run

LEVELS, SIZE, STRIDE = 16, 32, 2  # tiny_3d.yaml: 16 levels of 32x32, level_downsample 2
FIGURE_WIDTH_IN, ROW_IN, TITLE_IN = 11.0, 2.0, 0.4  # plot_subject_planes' size per row


@pytest.fixture(scope="module")
def run_3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 3D run: `train all` on tiny_3d.yaml (seconds), which ends with its report."""
    run = tmp_path_factory.mktemp("run3d") / "run"
    cmd = [sys.executable, "-m", "brainvq.app.cli", "train", "all", "--data", "demo"]
    cmd += ["--config", str(TINY_3D), "--out", str(run), "--accelerator", "cpu"]
    run_ok(cmd)
    return run


def figure_rows(path: Path) -> int:
    """Rows of subjects in a three-plane figure, from its size in pixels (one per ROW_IN)."""
    width, height = Image.open(path).size
    assert width == round(FIGURE_WIDTH_IN * DPI), (path, width)
    rows = (height / DPI - TITLE_IN) / ROW_IN
    assert rows == pytest.approx(round(rows), abs=0.02), (path, height)
    return round(rows)


def test_real_subjects_are_shown_whole_beside_their_reconstructions(run_3d: Path) -> None:
    with np.load(run_3d / "evaluation" / "reconstructions.npz") as f:
        subjects, real = f["volume_subjects"], f["volume_originals"]
        recons, stretch = f["volume_recons"], float(f["volume_stretch"])
    # the test split's one subject, whole, as the run's slices hold it
    sliceset = run_slices(load_run(run_3d), progress=False)
    volumes = subject_volumes(sliceset, "test", STRIDE)
    assert list(subjects) == list(volumes.subject)
    assert np.array_equal(real[0], sliceset.images[volumes.rows[0]])
    assert recons.shape == real.shape == (1, LEVELS, SIZE, SIZE) and recons.dtype == np.uint8
    assert not np.array_equal(recons, real)
    assert stretch == pytest.approx(subject_space(run_3d, SIZE, 0).stretch)
    assert 0.1 < stretch < 1  # 1.03 mm levels, 4 mm pixels at 32x32
    figure = run_3d / "figures" / "volume_reconstructions.png"
    assert figure_rows(figure) == 2  # the subject, real then reconstructed


def test_generated_subjects_are_shown_beside_a_real_one(run_3d: Path) -> None:
    # no generation metrics in tiny_3d.yaml: the report's subjects are drawn for it
    assert not (run_3d / "samples" / "generated.npz").exists()
    with np.load(run_3d / "samples" / "subjects.npz") as f:
        generated, real = f["generated"], f["real"]
        assert bool(f["neighbour"])
    assert generated.shape == (2, LEVELS, SIZE, SIZE) and real.shape == (LEVELS, SIZE, SIZE)
    assert figure_rows(run_3d / "figures" / "subjects.png") == 3  # 2 generated, 1 real


def test_three_planes_keep_millimetres_square() -> None:
    stretch = 0.25  # levels a quarter of a pixel apart
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 256, (LEVELS, SIZE, SIZE), dtype=np.uint8)
    fig = Figure(figsize=(FIGURE_WIDTH_IN, 2 * ROW_IN), dpi=DPI, layout="constrained")
    axes = draw_subject_planes(fig, [("a", volume), ("b", volume)], stretch)
    assert axes.shape == (2, 3)
    assert [ax.get_title() for ax in axes[0]] == ["axial", "coronal", "sagittal"]
    FigureCanvasAgg(fig).draw()  # lays the figure out: the aspects are applied
    for ax, shape in zip(axes[0], [(SIZE, SIZE), (LEVELS, SIZE), (LEVELS, SIZE)], strict=True):
        assert ax.get_images()[0].get_array().shape == shape
        box = ax.get_window_extent()
        # drawn height / width = (levels x level mm) / (columns x pixel mm)
        want = shape[0] * (1.0 if shape == (SIZE, SIZE) else stretch) / shape[1]
        assert box.height / box.width == pytest.approx(want, rel=0.03)
    coronal = axes[0, 1].get_images()[0].get_array()
    np.testing.assert_allclose(coronal, volume[::-1, :, SIZE // 2] / 255.0, atol=1e-6)  # top first


def test_the_page_says_the_run_is_3d(run_3d: Path) -> None:
    html = (run_3d / "report.html").read_text(encoding="utf-8")
    vqvae = json.loads((run_3d / "metrics.json").read_text(encoding="utf-8"))["vqvae"]
    assert "(3D VQ-VAE)</title>" in html
    assert f"{LEVELS} levels of {SIZE}x{SIZE} -&gt; a 8x8x8 grid of 16 codes" in html
    assert f"{vqvae['bits_per_voxel']:.4f} bits per voxel" in html
    for plane in ("axial", "coronal", "sagittal"):
        assert f"{plane} {vqvae['planes'][plane]['ssim']:.4f}" in html
    assert 'src="figures/volume_reconstructions.png"' in html
    assert "decoded whole by the 3D VQ-VAE" in html
    assert "through-plane views not to scale" in html  # the training frames
