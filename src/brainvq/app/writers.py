"""Writing results to a folder as 8-bit PNGs: reconstructions of user images, generated slices
and completions. Output names are unique and say where each image came from; a
`manifest.csv` maps every output to its input."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import numpy as np

from brainvq.data import load_slices
from brainvq.data.imaging import IMAGE_SUFFIXES, prepare_slice
from brainvq.inference.codes import reconstruct, to_uint8
from brainvq.inference.generate import (
    check_level,
    complete_slices,
    generate_slices,
    level_from_name,
    load_run_models,
    spread_levels,
)
from brainvq.io.atomic import atomic_write_text, output_folder
from brainvq.io.bundle import load_vqvae
from brainvq.io.images import image_grid, save_png

VOLUME_SLICE = "#level"  # NIfTI slices are named "<volume path>#level<frame level>"
MANIFEST = "manifest.csv"
GRID = "grid.png"


def output_name(filename: str, level: int) -> str:
    """The output PNG for an input slice, keeping its subfolders.

    'sub/a/case_1.png' -> 'sub/a/case_1.png'; 'x.jpg' -> 'x.png';
    'vol/T1.nii.gz#level12' (frame level 12 of the volume) -> 'vol/T1_level_12.png'."""
    path, volume, _ = filename.partition(VOLUME_SLICE)
    parts = Path(path)
    stem = parts.name
    if volume:
        for suffix in (".nii.gz", ".nii"):
            stem = stem.removesuffix(suffix)
        stem = f"{stem}_level_{level}"
    else:
        stem = Path(stem).stem
    return (parts.parent / f"{stem}.png").as_posix()


def output_names(filenames: list[str], levels: list[int]) -> list[str]:
    """Unique output names: `output_name`, or, where two inputs would share one (a.png and
    a.jpg), the whole input name with '.png' added. ValueError if names still collide."""
    names = [output_name(f, k) for f, k in zip(filenames, levels, strict=True)]
    clashes = {n for n, count in Counter(names).items() if count > 1}
    names = [
        f"{f.replace(VOLUME_SLICE, '_level')}.png" if n in clashes else n
        for f, n in zip(filenames, names, strict=True)
    ]
    repeated = [n for n, count in Counter(names).items() if count > 1]
    if repeated or GRID in names or MANIFEST in names:
        raise ValueError(
            f"cannot name the outputs uniquely: {(repeated or [GRID])[0]!r} would be written "
            "more than once; rename the inputs"
        )
    return names


def write_manifest(out_dir: Path, header: list[str], rows: list[list]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_text(out_dir / MANIFEST, buffer.getvalue())


def reconstruct_to_folder(
    model_path: Path, source: str | Path, out_dir: Path, limit: int | None = None
) -> tuple[list[Path], Path]:
    """Reconstruct every slice of `source` (a PNG/JPEG, a folder, NIfTI volumes, an OASIS set)
    at the model's working size.

    Writes one 8-bit PNG per slice under `out_dir` (named by `output_names`), `grid.png`
    (originals above reconstructions, at most 8 pairs) and `manifest.csv` (output, input,
    level). Returns (the files written, the grid path)."""
    out_dir = output_folder(out_dir)
    bundle = load_vqvae(model_path)
    size = bundle.config.image_size
    path = Path(source)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        images = prepare_slice(path.read_bytes(), str(path), size)[0][None]  # (1, H, W)
        filenames, levels = [path.name], [-1]
    else:
        sliceset = load_slices(source, size=size)
        images = sliceset.images
        filenames, levels = [str(f) for f in sliceset.filename], sliceset.level.tolist()
    if limit is not None:
        images, filenames, levels = images[:limit], filenames[:limit], levels[:limit]
    names = output_names(filenames, levels)
    recons = to_uint8(reconstruct(bundle.model, images)[0])  # (N, H, W)
    written = [save_png(out_dir / name, img) for name, img in zip(names, recons, strict=True)]
    n = min(8, len(images))
    grid = save_png(out_dir / GRID, image_grid(np.concatenate([images[:n], recons[:n]]), ncols=n))
    manifest = write_manifest(
        out_dir,
        ["output", "input", "level"],
        [[o, i, k] for o, i, k in zip(names, filenames, levels, strict=True)],
    )
    return [*written, grid, manifest], grid


def sample_to_folder(
    run_dir: Path,
    out_dir: Path,
    n: int = 16,
    level: int | None = None,
    all_levels: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    sampler: str = "cached",
    threads: int | None = None,
) -> list[Path]:
    """Generate slices with the run's prior and write `sample_XXX_level_K.png` (8-bit),
    `grid.png` (labelled with the levels) and `manifest.csv`.

    A conditional prior samples at `level`, or with `all_levels` n slices at every level (one
    row each in the grid), or else at levels spread evenly over its range. Returns the files."""
    out_dir = output_folder(out_dir)
    models = load_run_models(run_dir)
    if all_levels:
        if models.n_levels == 0:
            raise ValueError("--levels all needs a conditional prior; this run's is unconditional")
        levels = np.repeat(np.arange(models.n_levels), n)  # (L * n,)
    elif level is not None or models.n_levels == 0:
        lvl = check_level(models, level)
        levels = None if lvl is None else np.full(n, lvl)
    else:
        levels = spread_levels(n, models.n_levels)
    count = n if levels is None else len(levels)
    _, images = generate_slices(
        models,
        count,
        levels,
        temperature=temperature,
        top_k=top_k,
        seed=seed,
        sampler=sampler,
        threads=threads,
    )  # (count, H, W) uint8
    names = [
        f"sample_{i:03d}" + ("" if levels is None else f"_level_{levels[i]}") + ".png"
        for i in range(count)
    ]
    written = [save_png(out_dir / name, img) for name, img in zip(names, images, strict=True)]
    labels = None if levels is None else [f"level {k}" for k in levels]
    ncols = n if all_levels else min(8, count)
    written.append(save_png(out_dir / GRID, image_grid(images, ncols=ncols, labels=labels)))
    rows = [[name, -1 if levels is None else int(levels[i]), seed] for i, name in enumerate(names)]
    written.append(write_manifest(out_dir, ["output", "level", "seed"], rows))
    return written


def complete_to_folder(
    run_dir: Path,
    input_png: Path,
    out_dir: Path,
    keep_rows: int,
    n: int = 4,
    level: int | None = None,
    temperature: float = 1.0,
    seed: int = 0,
) -> tuple[list[Path], int | None]:
    """Keep the first `keep_rows` latent rows of a real slice's code map and sample the rest.

    The level of a conditional prior is `level`, else read from the file name
    (`..._slice_<k>...`). Writes `completion_X.png` per completion, `grid.png` (original, its
    reconstruction, then the completions, with the kept part marked by a line) and
    `manifest.csv`. Returns (the files written, the level used)."""
    out_dir = output_folder(out_dir)
    input_png = Path(input_png)
    if input_png.is_dir():
        raise IsADirectoryError(f"--input {input_png} is a folder; expected one PNG/JPEG slice")
    if not input_png.is_file():
        raise FileNotFoundError(f"--input {input_png}: no such image file")
    models = load_run_models(run_dir)
    size = models.vqvae.config.image_size
    image = prepare_slice(input_png.read_bytes(), str(input_png), size)[0]  # (H, W) uint8
    if models.n_levels and level is None:
        level = level_from_name(input_png)
    lvl = check_level(models, level)
    levels = None if lvl is None else np.array([lvl])
    _, done = complete_slices(
        models, image[None], levels, keep_rows, n, temperature=temperature, seed=seed
    )  # (1, n, H, W)
    images = done[0]
    recon = to_uint8(reconstruct(models.vqvae.model, image[None])[0])  # (1, H, W)
    names = [f"completion_{i}.png" for i in range(n)]
    written = [save_png(out_dir / name, img) for name, img in zip(names, images, strict=True)]
    row = np.concatenate([image[None], recon, images]).copy()
    line = keep_rows * models.vqvae.config.downsample
    if 0 < line < size:
        row[2:, line, :] = 255  # mark where the sampled part starts on each completion
    written.append(save_png(out_dir / GRID, image_grid(row, ncols=len(row))))
    rows = [[name, str(input_png), keep_rows, -1 if lvl is None else lvl, seed] for name in names]
    written.append(write_manifest(out_dir, ["output", "input", "keep_rows", "level", "seed"], rows))
    return written, lvl
