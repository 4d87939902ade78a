"""Report figures: image grids, reconstructions, completions, code usage, curves, PCA.

Every function draws one matplotlib figure (Agg, no pyplot state), writes it as one PNG through
`brainvq.atomic.atomic_path` and returns the path. Images are `(N, H, W)` arrays, either uint8
in [0, 255] or float in [0, 1]; they are shown in grey with a fixed range, never rescaled per
image, so intensities stay comparable across a figure.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from brainvq.atomic import atomic_path
from brainvq.metrics import codes_used, perplexity

DPI = 110
CELL_IN = 1.2  # inches per image cell before a figure is shrunk to MAX_WIDTH_IN
MAX_WIDTH_IN = 14.0


def _save(fig: Figure, out: str | Path) -> Path:
    """Write `fig` as a PNG at `out`: 8-bit grey if it has no colour, else a 256-colour palette.

    Matplotlib writes RGBA; dropping to one byte per pixel keeps image grids at a few hundred
    KB without touching the pixels' resolution.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    rgb = Image.open(buf).convert("RGB")
    if np.ptp(np.asarray(rgb), axis=-1).max() == 0:  # every pixel has R == G == B
        image = rgb.convert("L")
    else:
        image = rgb.quantize(256, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE)
    out = Path(out)
    with atomic_path(out) as tmp:
        image.save(tmp, format="PNG")
    return out


def _stack(name: str, images: np.ndarray) -> np.ndarray:
    """images: (N, H, W) uint8 or float in [0, 1] -> (N, H, W) float in [0, 1]."""
    arr = np.asarray(images)
    if arr.ndim != 3 or arr.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty (N, H, W) image stack, got {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name}: expected uint8 or float images, got dtype {arr.dtype}")
    return arr


def _cell_size(ncols: int, extra_in: float = 0.0) -> float:
    return min(CELL_IN, (MAX_WIDTH_IN - extra_in) / max(ncols, 1))


def _bare(ax: Axes) -> None:
    """No ticks or frame, but keep room for a y label (the row name)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _show(ax: Axes, image: np.ndarray) -> None:
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    _bare(ax)


def _draw_grid(
    fig: Figure | SubFigure, images: np.ndarray, ncols: int, labels: list[str] | None
) -> None:
    """Fill `fig` with images (N, H, W) in rows of `ncols`, label under each if given."""
    n = images.shape[0]
    nrows = math.ceil(n / ncols)
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_axis_off()
            continue
        _show(ax, images[i])
        if labels is not None:
            ax.set_xlabel(labels[i], fontsize=8, labelpad=2)


def plot_dataset_samples(images_by_split: dict[str, np.ndarray], out: str | Path) -> Path:
    """One grid per split. images_by_split[split]: (N, H, W) uint8 slices of that split."""
    if not images_by_split:
        raise ValueError("plot_dataset_samples: images_by_split is empty")
    stacks = {split: _stack(f"split {split!r}", imgs) for split, imgs in images_by_split.items()}
    ncols = min(8, max(s.shape[0] for s in stacks.values()))
    rows = [math.ceil(s.shape[0] / ncols) for s in stacks.values()]
    cell = _cell_size(ncols)
    fig = Figure(
        figsize=(ncols * cell, sum(rows) * cell + 0.45 * len(rows) + 0.5), layout="constrained"
    )
    fig.suptitle("Dataset samples by split", fontsize=13)
    subfigs = fig.subfigures(
        len(stacks), 1, height_ratios=[r * cell + 0.45 for r in rows], squeeze=False
    )
    for subfig, (split, stack) in zip(subfigs.flat, stacks.items(), strict=True):
        subfig.suptitle(
            f"{split} ({stack.shape[0]} slices, {stack.shape[1]}x{stack.shape[2]})", fontsize=11
        )
        _draw_grid(subfig, stack, ncols, None)
    return _save(fig, out)


def plot_reconstructions(
    originals: np.ndarray, recons: np.ndarray, ssim_per_image: np.ndarray, out: str | Path
) -> Path:
    """Originals, reconstructions (SSIM on each) and |error| maps with a colorbar.

    originals, recons: (N, H, W) float in [0, 1]; ssim_per_image: (N,).
    """
    x, x_hat = _stack("originals", originals), _stack("recons", recons)
    scores = np.asarray(ssim_per_image, dtype=np.float64).reshape(-1)
    if x.shape != x_hat.shape or scores.shape[0] != x.shape[0]:
        raise ValueError(
            f"plot_reconstructions: originals {x.shape}, recons {x_hat.shape} and "
            f"ssim_per_image {scores.shape} must describe the same N images"
        )
    n = x.shape[0]
    err = np.abs(x - x_hat)
    cell = _cell_size(n, extra_in=1.2)
    fig = Figure(figsize=(n * cell + 1.2, 3 * cell + 0.7), layout="constrained")
    fig.suptitle(f"Reconstructions of {n} slices (their mean SSIM {scores.mean():.4f})", size=13)
    axes = fig.subplots(3, n, squeeze=False)
    vmax = max(float(err.max()), 1e-6)
    for i in range(n):
        _show(axes[0, i], x[i])
        _show(axes[1, i], x_hat[i])
        axes[1, i].text(
            0.03,
            0.04,
            f"SSIM {scores[i]:.3f}",
            transform=axes[1, i].transAxes,
            fontsize=8,
            color="white",
            bbox={"facecolor": "black", "alpha": 0.6, "pad": 1.5, "linewidth": 0},
        )
        err_im = axes[2, i].imshow(err[i], cmap="inferno", vmin=0.0, vmax=vmax)
        _bare(axes[2, i])
    for row, name in enumerate(("original", "reconstruction", "|error|")):
        axes[row, 0].set_ylabel(name, fontsize=10)
    fig.colorbar(err_im, ax=list(axes[2]), label="absolute error", shrink=0.9, pad=0.01)
    return _save(fig, out)


def plot_samples(
    images: np.ndarray,
    out: str | Path,
    title: str,
    levels: np.ndarray | None = None,
    ncols: int = 8,
) -> Path:
    """A grid of images (N, H, W); with `levels` (N,) int each is labelled with its slice."""
    stack = _stack("images", images)
    if ncols < 1:
        raise ValueError(f"plot_samples: ncols must be >= 1, got {ncols}")
    labels = None
    if levels is not None:
        lv = np.asarray(levels).reshape(-1)
        if lv.shape[0] != stack.shape[0]:
            raise ValueError(f"plot_samples: {lv.shape[0]} levels for {stack.shape[0]} images")
        labels = [f"slice {int(k)}" for k in lv]
    ncols = min(ncols, stack.shape[0])
    nrows = math.ceil(stack.shape[0] / ncols)
    cell = _cell_size(ncols)
    label_in = 0.2 if labels else 0.0
    fig = Figure(figsize=(ncols * cell, nrows * (cell + label_in) + 0.5), layout="constrained")
    fig.suptitle(title, fontsize=13)
    _draw_grid(fig, stack, ncols, labels)
    return _save(fig, out)


def plot_samples_by_level(images_by_level: dict[int, np.ndarray], out: str | Path) -> Path:
    """One row per axial level. images_by_level[k]: (n, H, W) samples conditioned on slice k."""
    if not images_by_level:
        raise ValueError("plot_samples_by_level: images_by_level is empty")
    stacks = {int(k): _stack(f"level {k}", v) for k, v in sorted(images_by_level.items())}
    ncols = max(s.shape[0] for s in stacks.values())
    cell = _cell_size(ncols, extra_in=0.4)
    fig = Figure(figsize=(ncols * cell + 0.4, len(stacks) * cell + 0.5), layout="constrained")
    fig.suptitle("Samples by axial level", fontsize=13)
    axes = fig.subplots(len(stacks), ncols, squeeze=False)
    for row, (level, stack) in enumerate(stacks.items()):
        for col in range(ncols):
            if col < stack.shape[0]:
                _show(axes[row, col], stack[col])
            else:
                axes[row, col].set_axis_off()
        axes[row, 0].set_ylabel(f"slice {level}", fontsize=10)
    return _save(fig, out)


def plot_completions(
    originals: np.ndarray, kept_rows_px: int, completions: np.ndarray, out: str | Path
) -> Path:
    """Each row: the original, what the model was given, then n completions.

    originals: (B, H, W); completions: (B, n, H, W), float in [0, 1]. The top `kept_rows_px`
    image rows were kept; a dashed line marks where the model took over.
    """
    x = _stack("originals", originals)
    comp = np.asarray(completions)
    if comp.ndim != 4 or comp.shape[0] != x.shape[0] or comp.shape[2:] != x.shape[1:]:
        raise ValueError(
            f"plot_completions: completions must be (B, n, H, W) matching originals {x.shape}, "
            f"got {comp.shape}"
        )
    if not 0 <= kept_rows_px <= x.shape[1]:
        raise ValueError(f"kept_rows_px must lie in [0, {x.shape[1]}], got {kept_rows_px}")
    b, n = comp.shape[:2]
    comp = _stack("completions", comp.reshape(b * n, *comp.shape[2:])).reshape(comp.shape)
    given = x.copy()
    given[:, kept_rows_px:] = 0.5  # grey: the part the model has to fill in
    cols = n + 2
    cell = _cell_size(cols)
    fig = Figure(figsize=(cols * cell, b * cell + 0.7), layout="constrained")
    fig.suptitle(f"Completions from the top {kept_rows_px} of {x.shape[1]} rows", fontsize=13)
    axes = fig.subplots(b, cols, squeeze=False)
    for i in range(b):
        panels = [x[i], given[i], *comp[i]]
        for j, (ax, image) in enumerate(zip(axes[i], panels, strict=True)):
            _show(ax, image)
            if j != 1:
                ax.axhline(kept_rows_px - 0.5, color="tab:red", linestyle="--", linewidth=1)
    axes[0, 0].set_title("original", fontsize=10)
    axes[0, 1].set_title("given", fontsize=10)
    for j in range(n):
        axes[0, j + 2].set_title(f"completion {j + 1}", fontsize=10)
    return _save(fig, out)


def plot_code_usage(counts: np.ndarray, out: str | Path, title_extra: str = "") -> Path:
    """Code histogram by index and sorted by frequency. counts: (K,) non-negative."""
    c = np.asarray(counts, dtype=np.float64).reshape(-1)
    if c.size == 0 or c.sum() <= 0:
        raise ValueError(
            f"plot_code_usage: counts must be a non-empty (K,) with a positive sum, got {c.shape}"
        )
    k = c.size
    freq = c / c.sum()
    title = f"Code usage: perplexity {perplexity(c):.1f} of {k}, {codes_used(c)}/{k} codes used"
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    fig.suptitle(f"{title} {title_extra}".strip(), fontsize=12)
    ax_idx, ax_sorted = fig.subplots(1, 2)
    # stairs, not bar: one artist instead of K rectangles, the same picture drawn much faster
    ax_idx.stairs(freq, np.arange(k + 1) - 0.5, fill=True, color="tab:blue")
    ax_idx.set(xlim=(-0.5, k - 0.5), xlabel="code index", ylabel="fraction of positions")
    ax_idx.set_title("by code index", fontsize=10)
    ranked = np.sort(freq)[::-1]
    used = ranked[ranked > 0]  # a log axis cannot show the unused codes' zeros
    edges = np.arange(used.size + 1) + 0.5
    ax_sorted.stairs(used, edges, fill=True, baseline=used.min() / 2, color="tab:blue")
    ax_sorted.axhline(1.0 / k, color="gray", linestyle=":", label=f"uniform (1/{k})")
    ax_sorted.set(xlim=(0.5, k + 0.5), xlabel="rank", ylabel="fraction of positions (log)")
    ax_sorted.set_yscale("log")
    ax_sorted.set_title("sorted by frequency", fontsize=10)
    ax_cum = ax_sorted.twinx()
    ax_cum.plot(np.arange(1, k + 1), np.cumsum(ranked), color="tab:orange", label="cumulative")
    ax_cum.set(ylim=(0, 1.02), ylabel="cumulative fraction")
    lines = ax_sorted.get_legend_handles_labels()
    cum = ax_cum.get_legend_handles_labels()
    ax_sorted.legend(lines[0] + cum[0], lines[1] + cum[1], loc="center right", fontsize=9)
    return _save(fig, out)


def plot_curves(
    history: dict[str, dict[str, list[tuple[int, float]]]], out: str | Path, title: str
) -> Path:
    """One panel per metric; history[metric][series] = [(epoch, value), ...]."""
    panels = {m: s for m, s in history.items() if any(len(pts) for pts in s.values())}
    if not panels:
        raise ValueError("plot_curves: history has no points to plot")
    ncols = min(len(panels), 2)
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(5.5 * ncols, 3.6 * nrows + 0.4), layout="constrained")
    fig.suptitle(title, fontsize=13)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    for ax, (metric, series) in zip(axes, panels.items(), strict=False):
        for name, points in series.items():
            if points:
                epochs, values = zip(*points, strict=True)
                ax.plot(epochs, values, marker="o", markersize=3, label=name)
        ax.set(title=metric, xlabel="epoch", ylabel=metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    return _save(fig, out)


def plot_ssim_distribution(ssim_per_image: np.ndarray, out: str | Path) -> Path:
    """Histogram of per-image SSIM (N,) with mean, median and minimum marked."""
    s = np.asarray(ssim_per_image, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise ValueError("plot_ssim_distribution: ssim_per_image is empty")
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.hist(s, bins=min(40, max(5, s.size // 5)), color="tab:blue", alpha=0.8)
    marks = (
        ("mean", s.mean(), "tab:red", "-"),
        ("median", np.median(s), "tab:green", "--"),
        ("min", s.min(), "black", ":"),
    )
    for name, value, color, style in marks:
        ax.axvline(value, color=color, linestyle=style, linewidth=1.5, label=f"{name} {value:.4f}")
    ax.set(xlabel="SSIM", ylabel="images", title=f"Per-image SSIM ({s.size} images)")
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(alpha=0.3)
    return _save(fig, out)


def plot_codebook_pca(codebook: np.ndarray, counts: np.ndarray, out: str | Path) -> Path:
    """Codebook vectors (K, D) projected on their first two principal components.

    Point area grows with the code's count (K,); unused codes are grey crosses.
    """
    e = np.asarray(codebook, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64).reshape(-1)
    if e.ndim != 2 or e.shape[0] < 2 or e.shape[1] < 2:
        raise ValueError(f"plot_codebook_pca: codebook must be (K>=2, D>=2), got {e.shape}")
    if c.shape[0] != e.shape[0]:
        raise ValueError(f"plot_codebook_pca: {c.shape[0]} counts for {e.shape[0]} codes")
    centred = e - e.mean(axis=0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T  # (K, 2)
    var = sv**2 / max(float((sv**2).sum()), 1e-12)
    used = c > 0
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax = fig.subplots()
    if (~used).any():
        ax.scatter(*xy[~used].T, s=10, marker="x", color="0.6", label=f"unused ({(~used).sum()})")
    if used.any():
        share = c[used] / c.sum()
        sizes = 8 + 400 * np.sqrt(share / share.max())
        pts = ax.scatter(
            *xy[used].T,
            s=sizes,
            c=np.log10(c[used]),
            cmap="viridis",
            alpha=0.7,
            edgecolors="none",
            label=f"used ({used.sum()})",
        )
        fig.colorbar(pts, ax=ax, label="log10(count)")
    ax.set(
        xlabel=f"PC1 ({100 * var[0]:.1f}% of variance)",
        ylabel=f"PC2 ({100 * var[1]:.1f}% of variance)",
        title=f"Codebook PCA: {e.shape[0]} codes of dimension {e.shape[1]}",
    )
    legend = ax.legend(loc="best", fontsize=9)
    for handle in legend.legend_handles:
        handle.set_sizes([30])  # the default copies the first point's size, which may be huge
    ax.grid(alpha=0.3)
    return _save(fig, out)


def draw_subject_planes(
    fig: Figure, subjects: list[tuple[str, np.ndarray]], stretch: float
) -> np.ndarray:
    """Into `fig`, one row per subject (name, (L, H, W) slices bottom to top): the middle axial
    slice, then the coronal and sagittal planes through the middle, highest level on top, the
    level axis drawn `stretch` pixels per level (the level spacing over the pixel size) so that
    millimetres are square and the anatomy keeps its shape. Returns the axes (rows, 3)."""
    axes = fig.subplots(len(subjects), 3, squeeze=False, width_ratios=[1, 2.2, 2.2])
    for row, (name, volume) in enumerate(subjects):
        vol = _stack(name, volume)  # (L, H, W) float in [0, 1]
        n, h, w = vol.shape
        # rows run left-right, columns posterior-anterior (brainvq.data.planes): a coronal
        # plane fixes a column, a sagittal plane a row
        planes = (vol[n // 2], vol[::-1, :, w // 2], vol[::-1, h // 2, :])
        for col, (plane, title) in enumerate(
            zip(planes, ("axial", "coronal", "sagittal"), strict=True)
        ):
            _show(axes[row, col], plane)
            axes[row, col].set_aspect(1.0 if col == 0 else stretch)
            if row == 0:
                axes[row, col].set_title(title, fontsize=10)
        axes[row, 0].set_ylabel(name, fontsize=9)
    return axes


def plot_subject_planes(
    subjects: list[tuple[str, np.ndarray]],
    stretch: float,
    out: str | Path,
    title: str = "Whole subjects in three planes",
) -> Path:
    """`draw_subject_planes` as one figure titled `title`, written to `out`."""
    fig = Figure(figsize=(11.0, 2.0 * len(subjects) + 0.4), layout="constrained")
    fig.suptitle(title, fontsize=13)
    draw_subject_planes(fig, subjects, stretch)
    return _save(fig, out)
