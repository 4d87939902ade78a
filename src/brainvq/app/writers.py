"""Writing results to a folder as 8-bit PNGs: reconstructions of user images, generated slices
and completions. Output names are unique and say where each image came from; a
`manifest.csv` maps every output to its input."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from brainvq.atomic import atomic_path, output_folder
from brainvq.data import load_slices
from brainvq.data.imaging import IMAGE_SUFFIXES, prepare_slice
from brainvq.data.slice_names import level_from_name
from brainvq.inference.codes import reconstruct, to_uint8
from brainvq.inference.generate import check_level, iter_completions, iter_slices, spread_levels
from brainvq.inference.run_models import load_run_models, require_2d
from brainvq.inference.sampling_options import DEFAULT_OPTIONS, SamplingOptions
from brainvq.io.bundle import Bundle, load_vqvae
from brainvq.io.images import image_grid, save_png
from brainvq.values import check_disk

VOLUME_SLICE = "#level"  # NIfTI slices are named "<volume path>#level<frame level>"
MANIFEST = "manifest.csv"
GRID = "grid.png"
RECONSTRUCT_CHUNK = 256  # slices read, reconstructed and written at once
GRID_MAX = 1024  # images a grid.png shows at most
GRID_ROWS = 32  # levels a --levels all grid shows at most, spread over the range (152 rows of a
# whole-brain run would not be read)
GRID_ROW = 18  # a completion grid's images per row (the original, its reconstruction, 16)
PNG_OVERHEAD = 1024  # signature, chunk headers and zlib's worst-case growth of a PNG, bytes
MANIFEST_CHUNK = 4096  # manifest rows made at once


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


def write_manifest(out_dir: Path, header: list[str], rows: Iterable[list]) -> Path:
    """out_dir/manifest.csv (atomic), its rows written as `rows` gives them."""
    with atomic_path(out_dir / MANIFEST) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return out_dir / MANIFEST


def png_bytes(size: int) -> int:
    """The most an 8-bit size x size PNG takes: its rows stored (a filter byte each) plus
    PNG_OVERHEAD."""
    return size * (size + 1) + PNG_OVERHEAD


def reconstruct_to_folder(
    model_path: Path,
    source: str | Path,
    out_dir: Path,
    limit: int | None = None,
    bundle: Bundle | None = None,
) -> tuple[list[Path], Path]:
    """Reconstruct every slice of `source` (a PNG/JPEG, a folder, NIfTI volumes, an OASIS set)
    at the model's working size, slice by slice: a 2D model (a 3D model reconstructs a folder's
    subjects whole: brainvq.app.reconstruct_3d).

    Writes one 8-bit PNG per slice under `out_dir` (named by `output_names`), `grid.png`
    (originals above reconstructions, at most 8 pairs) and `manifest.csv` (output, input,
    level). bundle: the VQ-VAE of model_path when the caller has loaded it already. Returns
    (the files written, the grid path)."""
    out_dir = output_folder(out_dir)
    bundle = bundle or load_vqvae(model_path)
    require_2d(bundle, "reconstruct")
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
    written, shown = [], []
    for start in range(0, len(images), RECONSTRUCT_CHUNK):  # a store is never read whole
        part = np.asarray(images[start : start + RECONSTRUCT_CHUNK])  # (b, H, W) uint8
        recons = to_uint8(reconstruct(bundle.model, part)[0])  # (b, H, W)
        batch = names[start : start + len(recons)]
        written += [save_png(out_dir / name, img) for name, img in zip(batch, recons, strict=True)]
        shown += [] if shown else [part[:8], recons[:8]]
    n = min(8, len(images))
    grid = save_png(out_dir / GRID, image_grid(np.concatenate([shown[0], shown[1]]), ncols=n))
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
    options: SamplingOptions = DEFAULT_OPTIONS,
    threads: int | None = None,
) -> list[Path]:
    """Generate slices with the run's prior, drawn as `options` says, and write
    `sample_XXX_level_K.png` (8-bit), `grid.png` (labelled with the levels) and `manifest.csv`.

    A conditional prior samples at `level`, or with `all_levels` n slices at every level (in
    the grid, a row for each of at most GRID_ROWS levels spread over the range), or else at
    levels spread evenly over its range. Returns the files."""
    out_dir = output_folder(out_dir)
    models = load_run_models(run_dir)
    models.require_2d("sample --n")
    n_levels = models.n_levels
    level_at: Callable[[int, int], np.ndarray] | None
    if all_levels:
        if n_levels == 0:
            raise ValueError("--levels all needs a conditional prior; this run's is unconditional")
        count, per_sample = n * n_levels, n_levels  # n at every level, level by level

        def level_at(a: int, b: int) -> np.ndarray:
            return np.arange(a, b) // n

        row_levels = np.unique(spread_levels(min(n_levels, GRID_ROWS), n_levels))
        ncols = min(n, max(1, GRID_MAX // len(row_levels)))  # the grid: a row per level shown
        shown = (row_levels[:, None] * n + np.arange(ncols)).ravel()
    else:
        count, per_sample = n, 1
        lvl = check_level(models, level) if level is not None or n_levels == 0 else None
        if lvl is not None:

            def level_at(a: int, b: int) -> np.ndarray:
                return np.full(b - a, lvl, dtype=np.int64)

        elif n_levels:

            def level_at(a: int, b: int) -> np.ndarray:
                return spread_levels(n, n_levels, a, b)

        else:
            level_at = None
        ncols, shown = min(8, count), np.arange(min(count, GRID_MAX))
    what = f"the PNGs of one sample at each of {n_levels} levels" if all_levels else "one PNG"
    check_disk("--n", n, per_sample * png_bytes(models.vqvae.config.image_size), out_dir, what)

    def name(i: int, level: int | None) -> str:
        return f"sample_{i:03d}" + ("" if level is None else f"_level_{level}") + ".png"

    def chunk_levels(a: int, b: int) -> list[int | None]:
        return [None] * (b - a) if level_at is None else [int(k) for k in level_at(a, b)]

    written, grid, labels = [], [], []
    draws = iter_slices(models, count, level_at, options=options, threads=threads)
    for start, _, images in draws:  # a chunk at a time: written as they are drawn
        levels = chunk_levels(start, start + len(images))
        for i, (image, k) in enumerate(zip(images, levels, strict=True), start):
            written.append(save_png(out_dir / name(i, k), image))
        here = shown[(shown >= start) & (shown < start + len(images))] - start
        grid += list(images[here])
        labels += [f"level {levels[i]}" for i in here if levels[i] is not None]
    grid_png = image_grid(np.stack(grid), ncols, labels=labels or None)
    written.append(save_png(out_dir / GRID, grid_png))

    def rows() -> Iterator[list]:
        for a in range(0, count, MANIFEST_CHUNK):
            for i, k in enumerate(chunk_levels(a, min(a + MANIFEST_CHUNK, count)), a):
                yield [name(i, k), -1 if k is None else k, options.seed]

    written.append(write_manifest(out_dir, ["output", "level", "seed"], rows()))
    return written


def complete_to_folder(
    run_dir: Path,
    input_png: Path,
    out_dir: Path,
    keep_rows: int,
    n: int = 4,
    level: int | None = None,
    options: SamplingOptions = DEFAULT_OPTIONS,
) -> tuple[list[Path], int | None]:
    """Keep the first `keep_rows` latent rows of a real slice's code map and sample the rest,
    drawn as `options` says.

    The level of a conditional prior is `level`, else read from the file name
    (brainvq.data.slice_names). Writes `completion_X.png` per completion, `grid.png` (original, its
    reconstruction, then the completions, with the kept part marked by a line) and
    `manifest.csv`. Returns (the files written, the level used)."""
    out_dir = output_folder(out_dir)
    input_png = Path(input_png)
    if input_png.is_dir():
        raise IsADirectoryError(f"--input {input_png} is a folder; expected one PNG/JPEG slice")
    if not input_png.is_file():
        raise FileNotFoundError(f"--input {input_png}: no such image file")
    models = load_run_models(run_dir)
    models.require_2d("sample --complete")
    size = models.vqvae.config.image_size
    image = prepare_slice(input_png.read_bytes(), str(input_png), size)[0]  # (H, W) uint8
    if models.n_levels and level is None:
        level = level_from_name(input_png)
    lvl = check_level(models, level)
    check_disk("--n", n, png_bytes(size), out_dir, "one PNG completion")
    levels = None if lvl is None else np.array([lvl])
    recon = to_uint8(reconstruct(models.vqvae.model, image[None])[0])  # (1, H, W)
    written, shown = [], [image[None], recon]
    draws = iter_completions(models, image[None], levels, keep_rows, n, options=options)
    for start, _, images in draws:  # a chunk at a time: written as they are drawn
        for i, img in enumerate(images, start):
            written.append(save_png(out_dir / f"completion_{i}.png", img))
        shown.append(images[: max(0, GRID_MAX - start)])
    row = np.concatenate(shown)  # the original, its reconstruction, the first completions
    line = keep_rows * models.vqvae.config.downsample
    if 0 < line < size:
        row[2:, line, :] = 255  # mark where the sampled part starts on each completion
    written.append(save_png(out_dir / GRID, image_grid(row, ncols=min(len(row), GRID_ROW))))
    manifest = (
        [f"completion_{i}.png", str(input_png), keep_rows, -1 if lvl is None else lvl, options.seed]
        for i in range(n)
    )
    header = ["output", "input", "keep_rows", "level", "seed"]
    written.append(write_manifest(out_dir, header, manifest))
    return written, lvl
