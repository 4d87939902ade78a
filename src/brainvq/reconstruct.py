"""Reconstructing user images with a VQ-VAE bundle, written as 8-bit PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainvq.bundle import load_vqvae
from brainvq.data import load_slices
from brainvq.data.imaging import IMAGE_SUFFIXES, prepare_slice
from brainvq.evaluation import reconstruct
from brainvq.report.grid import image_grid, save_png


def reconstruct_to_folder(
    model_path: Path, source: str | Path, out_dir: Path, limit: int | None = None
) -> tuple[list[Path], Path]:
    """Reconstruct every slice of `source` at the model's working size.

    Writes `out_dir/<input file name>.png` per slice (8-bit) and `out_dir/grid.png`
    (originals above reconstructions, at most 8 pairs). Returns (written files, grid path).
    """
    bundle = load_vqvae(model_path)
    size = bundle.config.image_size
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out {out_dir} is a file; expected a folder")
    path = Path(source)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        images = prepare_slice(path.read_bytes(), str(path), size)[0][None]  # (1, H, W)
        names = [path.name]
    else:
        sliceset = load_slices(source, size=size)
        images, names = sliceset.images, [Path(str(n)).name for n in sliceset.filename]
    if limit is not None:
        images, names = images[:limit], names[:limit]
    recons, _ = reconstruct(bundle, images)
    recon_u8 = (recons * 255).round().astype(np.uint8)  # (N, H, W)
    written = []
    for name, img in zip(names, recon_u8, strict=True):
        stem = name[: -len(Path(name).suffix)] if Path(name).suffix else name
        written.append(save_png(out_dir / f"{stem}.png", img))
    n = min(8, len(images))
    grid = save_png(
        out_dir / "grid.png", image_grid(np.concatenate([images[:n], recon_u8[:n]]), ncols=n)
    )
    return written, grid
