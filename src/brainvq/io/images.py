"""Image grids of 8-bit slices, and saving 8-bit PNGs atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from brainvq.atomic import atomic_path

LABEL_HEIGHT = 12
PAD_VALUE = 0
LABEL_VALUE = 255


def image_grid(
    images: np.ndarray, ncols: int, pad: int = 2, labels: list[str] | None = None
) -> np.ndarray:
    """Tile images into a grid, row by row.

    Args:
        images: (N, H, W) uint8.
        ncols: images per row (the grid has ceil(N / ncols) rows; empty cells are black).
        pad: black pixels between tiles and around the grid.
        labels: N strings written in a white strip above each tile (None: no strips).
    Returns:
        (rows * (H + strip + pad) + pad, ncols * (W + pad) + pad) uint8, strip = 12 with
        labels else 0.
    """
    if not isinstance(images, np.ndarray) or images.ndim != 3 or images.dtype != np.uint8:
        got = (
            f"{images.shape} {images.dtype}"
            if isinstance(images, np.ndarray)
            else type(images).__name__
        )
        raise ValueError(f"image_grid expects images (N, H, W) uint8, got {got}")
    n, h, w = images.shape
    if n == 0:
        raise ValueError("image_grid needs at least one image, got 0")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if labels is not None and len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for {n} images; expected one label per image")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    strip = LABEL_HEIGHT if labels is not None else 0
    cell_h, cell_w = h + strip + pad, w + pad
    grid = np.full((nrows * cell_h + pad, ncols * cell_w + pad), PAD_VALUE, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, ncols)
        top, left = r * cell_h + pad + strip, c * cell_w + pad
        grid[top : top + h, left : left + w] = images[i]
    if labels is not None:
        canvas = Image.fromarray(grid)
        draw = ImageDraw.Draw(canvas)
        font = ImageFont.load_default()
        for i, text in enumerate(labels):
            r, c = divmod(i, ncols)
            draw.text(
                (c * cell_w + pad + 1, r * cell_h + pad), str(text), fill=LABEL_VALUE, font=font
            )
        grid = np.asarray(canvas, dtype=np.uint8)
    return grid


def save_png(path: str | Path, array: np.ndarray) -> Path:
    """Write a 2D uint8 array (grayscale) or (H, W, 3|4) uint8 (RGB/RGBA) as PNG, atomically."""
    if (
        not isinstance(array, np.ndarray)
        or array.dtype != np.uint8
        or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)))
    ):
        got = (
            f"{array.shape} {array.dtype}"
            if isinstance(array, np.ndarray)
            else type(array).__name__
        )
        raise ValueError(f"save_png({path}) expects (H, W) or (H, W, 3|4) uint8, got {got}")
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return path
