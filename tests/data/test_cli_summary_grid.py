"""`brainvq data inspect/preview`, the per-split summary, and image grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from brainvq.app.cli import main
from brainvq.data import load_slices
from brainvq.data.summary import format_summary, summarize
from brainvq.io.images import LABEL_HEIGHT, image_grid, save_png

from .files import OASIS_SLICES, make_oasis_tree


def test_summary_rows_per_split(tmp_path: Path, cache_dir: Path) -> None:
    make_oasis_tree(tmp_path / "src", splits=("train", "validate"))
    s = load_slices(tmp_path / "src", 32, cache_dir=cache_dir, progress=False)
    rows = summarize(s)
    assert [r["split"] for r in rows] == ["train", "validate", "test"]
    train, val, test = rows
    assert (train["images"], train["subjects"], train["slices_per_subject"]) == (
        3 * OASIS_SLICES,
        3,
        "4",
    )
    assert train["levels"] == OASIS_SLICES and train["size"] == 32
    expected_mean = s.images[s.split == "train"].mean() / 255
    assert train["mean"] == pytest.approx(expected_mean) and 0 < train["std"] < 1
    assert (
        val["present"]
        and not test["present"]
        and test["mean"] is None
        and test["notes"] == ["MISSING"]
    )
    console = Console(width=100, record=True)
    console.print(format_summary(rows, title="t", notes=s.notes))
    text = console.export_text()
    assert "MISSING" in text and "segmentation folders skipped" in text


def test_cli_inspect(oasis_tree: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "data",
        "inspect",
        str(oasis_tree),
        "--size",
        "64",
        "--cache-dir",
        str(cache_dir),
        "--no-progress",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for word in (
        "train",
        "validate",
        "test",
        "images",
        "subjects",
        "mean",
        "std",
        "note: segmentation",
    ):
        assert word in out
    assert list(cache_dir.glob("oasis-*.store"))


def test_cli_preview_writes_a_labelled_grid(
    oasis_tree: Path, cache_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "figs" / "grid.png"
    argv = [
        "data",
        "preview",
        str(oasis_tree),
        "--out",
        str(out),
        "--split",
        "train",
        "--n",
        "6",
        "--ncols",
        "3",
        "--size",
        "32",
        "--cache-dir",
        str(cache_dir),
        "--no-progress",
    ]
    assert main(argv) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    grid = np.asarray(Image.open(out))
    assert grid.dtype == np.uint8 and grid.ndim == 2
    assert grid.shape == (2 * (32 + LABEL_HEIGHT + 2) + 2, 3 * (32 + 2) + 2)


def test_cli_preview_rejects_bad_n(
    oasis_tree: Path, cache_dir: Path, tmp_path: Path, capsys
) -> None:
    argv = [
        "data",
        "preview",
        str(oasis_tree),
        "--out",
        str(tmp_path / "g.png"),
        "--n",
        "0",
        "--cache-dir",
        str(cache_dir),
    ]
    with pytest.raises(SystemExit) as e:  # refused while parsing the flags
        main(argv)
    assert e.value.code == 2
    assert "--n: expected an integer in [1," in capsys.readouterr().err
    assert not cache_dir.exists()


def test_image_grid_places_tiles_row_by_row() -> None:
    images = np.stack([np.full((4, 5), 10 * (i + 1), dtype=np.uint8) for i in range(5)])
    grid = image_grid(images, ncols=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 6 + 1) and grid.dtype == np.uint8
    assert (
        (grid[1:5, 1:6] == 10).all()
        and (grid[1:5, 7:12] == 20).all()
        and (grid[6:10, 7:12] == 50).all()
    )
    assert (grid[6:10, 13:18] == 0).all()  # empty cell
    assert grid[0].max() == 0 and grid[:, 6].max() == 0  # padding


def test_image_grid_labels_and_errors() -> None:
    images = np.zeros((2, 16, 16), dtype=np.uint8)
    grid = image_grid(images, ncols=2, pad=2, labels=["a1", "b2"])
    assert grid.shape == (16 + LABEL_HEIGHT + 4, 2 * 18 + 2)
    assert grid[2 : 2 + LABEL_HEIGHT].max() > 200 and grid[2 + LABEL_HEIGHT :].max() == 0
    with pytest.raises(
        ValueError, match=r"expects images \(N, H, W\) uint8, got \(2, 16, 16\) float64"
    ):
        image_grid(images.astype(float), ncols=2)
    with pytest.raises(ValueError, match="got 1 labels for 2 images"):
        image_grid(images, ncols=2, labels=["x"])
    with pytest.raises(ValueError, match="ncols must be >= 1"):
        image_grid(images, ncols=0)


def test_save_png_round_trip_and_atomic(tmp_path: Path) -> None:
    a = np.arange(64, dtype=np.uint8).reshape(8, 8)
    path = save_png(tmp_path / "sub" / "a.png", a)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), a)
    assert [p.name for p in path.parent.iterdir()] == ["a.png"]
    with pytest.raises(ValueError, match=r"save_png\(.*b\.png\) expects"):
        save_png(tmp_path / "b.png", a.astype(np.float32))
    assert not (tmp_path / "b.png").exists()
