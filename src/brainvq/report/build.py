"""A run's figures (RUN/figures/) and its report page (RUN/report.html).

Each piece writes its PNGs into a folder and returns (path, caption) pairs, so
`brainvq.predict` reuses the same pieces for its own output folder. Images shown side by
side are picked spread over the axial levels (and subjects) rather than the first few.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from brainvq.bundle import PRIOR_FOLDER, Bundle, load_prior, load_vqvae
from brainvq.codes import decode_codes, encode_images
from brainvq.data.oasis import OASIS_NAME
from brainvq.data.sliceset import SPLITS, SliceSet
from brainvq.evaluation import METRICS_FILE, evaluate_vqvae
from brainvq.generate import RunModels
from brainvq.pipeline import CONFIG_FILE, TIMINGS_FILE, eval_split, load_run, run_slices
from brainvq.prior_eval import generation_levels
from brainvq.report import plots
from brainvq.report.gif import make_training_gif
from brainvq.report.html import write_report
from brainvq.sampling import complete, sample
from brainvq.training.config import SampleConfig

Figure = tuple[Path, str]  # (image file, one line saying what it shows)

FIGURES_DIR = "figures"
REPORT_FILE = "report.html"
N_PER_SPLIT = 8  # dataset slices shown per split
N_RECONSTRUCTED = 10  # slices in the reconstruction figure
N_COMPLETED = 3  # real slices completed by the prior
N_COMPLETIONS = 3  # completions drawn per slice
FRAME_NAME = re.compile(r"^epoch_(\d+)\.png$")
VQVAE_CURVES = {  # panel title -> history key after "train/" or "val/"
    "total loss": "loss",
    "reconstruction loss": "recon",
    "VQ loss": "vq",
    "perplexity": "perplexity",
}
PRIOR_CURVES = {"PixelCNN NLL (bits per code)": "nll_bits"}
OASIS_CITATION = "Data: OASIS-1 (Marcus et al., 2007), Open Access Series of Imaging Studies"


def spread_over_levels(part: SliceSet, n: int) -> np.ndarray:
    """Indices of min(n, len(part)) distinct slices evenly spaced in (level, subject) order.

    Consecutive picks step through the axial levels, and through the subjects within a level,
    so a handful of slices covers the whole brain and several subjects.
    """
    order = np.lexsort((part.subject, part.slice_index))  # by level, then subject
    picks = np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(np.int64)
    return order[picks]


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block on one intra-op torch thread.

    The samplers issue thousands of tiny ops, for which thread hand-offs cost more than they
    save: 48 demo samples took 112 s on 2 threads and 5 s on 1 on a busy 2-core machine.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def dataset_figure(sliceset: SliceSet, fig_dir: Path) -> list[Figure]:
    """A grid of N_PER_SPLIT slices per split present in `sliceset`."""
    by_split = {}
    for split in SPLITS:
        if (sliceset.split == split).any():
            part = sliceset.require_split(split)
            by_split[split] = part.images[spread_over_levels(part, N_PER_SPLIT)]
    path = plots.plot_dataset_samples(by_split, Path(fig_dir) / "dataset_samples.png")
    return [
        (
            path,
            f"Dataset samples: up to {N_PER_SPLIT} slices per split, spread over the "
            f"axial levels and subjects ({sliceset.source}, {sliceset.size}x{sliceset.size})",
        )
    ]


def reconstruction_figures(
    bundle: Bundle, sliceset: SliceSet, split: str, fig_dir: Path
) -> tuple[dict[str, Any], list[Figure]]:
    """Evaluate the VQ-VAE on `split` and draw what the evaluation saw.

    Figures: originals vs reconstructions (SSIM on each) with |error| maps for
    N_RECONSTRUCTED slices spread over the levels, code usage, the per-image SSIM
    distribution and the codebook PCA. Returns (evaluate_vqvae's metrics, figures).
    """
    fig_dir = Path(fig_dir)
    metrics, arrays = evaluate_vqvae(bundle, sliceset, split)
    shown = spread_over_levels(sliceset.require_split(split), N_RECONSTRUCTED)
    n, k = metrics["n_images"], metrics["codebook_size"]
    codebook = bundle.model.quantizer.codebook.detach().cpu().numpy()  # (K, D)
    return metrics, [
        (
            plots.plot_reconstructions(
                arrays["originals"][shown],
                arrays["recons"][shown],
                arrays["ssim"][shown],
                fig_dir / "reconstructions.png",
            ),
            f"Original (top), reconstruction with its SSIM (middle) and absolute error (bottom) "
            f"for {len(shown)} {split} slices spread over the axial levels",
        ),
        (
            plots.plot_ssim_distribution(arrays["ssim"], fig_dir / "ssim_distribution.png"),
            f"Per-image SSIM of the reconstructions of all {n} {split} slices",
        ),
        (
            plots.plot_code_usage(arrays["counts"], fig_dir / "code_usage.png", f"({split})"),
            f"How often each of the {k} codes is used in the {split} code maps, by index and "
            "sorted by frequency (with the cumulative share)",
        ),
        (
            plots.plot_codebook_pca(codebook, arrays["counts"], fig_dir / "codebook_pca.png"),
            f"The {k} code vectors on their first two principal components; point size grows "
            f"with the code's use on the {split} split, unused codes are grey crosses",
        ),
    ]


def _sampling_text(config: SampleConfig) -> str:
    top_k = "all codes" if config.top_k is None else f"top-k {config.top_k}"
    return f"temperature {config.temperature}, {top_k}, seed {config.seed}"


def sample_figures(models: RunModels, config: SampleConfig, fig_dir: Path) -> list[Figure]:
    """Slices generated by the prior (cached sampler) and decoded by the VQ-VAE.

    A grid of config.n samples (levels spread over the range for a conditional prior) and,
    for a conditional prior, config.per_level samples at each of config.n_levels_shown evenly
    spaced levels, one row per level. Both are drawn in one batch.
    """
    fig_dir = Path(fig_dir)
    grid_levels = generation_levels(config.n, models.n_levels)  # (n,) or None
    shown = np.zeros(0, dtype=np.int64)  # the levels with a row of their own
    cond = None
    if grid_levels is not None:
        spaced = np.linspace(0, models.n_levels - 1, config.n_levels_shown).round()
        shown = np.unique(spaced).astype(np.int64)
        row_levels = np.repeat(shown, config.per_level)  # (len(shown) * per_level,)
        cond = torch.from_numpy(np.concatenate([grid_levels, row_levels]))
    with one_thread():
        codes = sample(
            models.prior.model,
            config.n + len(shown) * config.per_level,
            models.latent_hw,
            cond=cond,
            temperature=config.temperature,
            top_k=config.top_k,
            seed=config.seed,
            progress=True,
        )  # (count, h, w)
    images = decode_codes(models.vqvae.model, codes)  # (count, H, W) uint8
    settings = _sampling_text(config)
    figures = [
        (
            plots.plot_samples(
                images[: config.n], fig_dir / "samples.png", "Generated slices", grid_levels
            ),
            f"{config.n} slices generated by the PixelCNN prior and decoded by the VQ-VAE "
            f"({settings})"
            + ("; each labelled with its conditioning level" if cond is not None else ""),
        )
    ]
    if len(shown):
        rows = images[config.n :].reshape(len(shown), config.per_level, *images.shape[1:])
        by_level = {int(level): row for level, row in zip(shown, rows, strict=True)}
        path = plots.plot_samples_by_level(by_level, fig_dir / "samples_by_level.png")
        figures.append(
            (
                path,
                f"{config.per_level} generated slices for each of {len(shown)} axial "
                f"levels of {models.n_levels}, one row per level ({settings})",
            )
        )
    return figures


def completion_figure(
    models: RunModels, config: SampleConfig, part: SliceSet, fig_dir: Path
) -> list[Figure]:
    """N_COMPLETED real slices of `part`: the top config.keep_rows latent rows kept, the rest
    sampled N_COMPLETIONS times. Empty when a conditional prior knows none of the slices' levels."""
    h = models.latent_hw[0]
    if not 0 <= config.keep_rows < h:
        raise ValueError(
            f"sample.keep_rows={config.keep_rows}: expected latent rows to keep in [0, {h - 1}] "
            f"(the code maps have {h} rows)"
        )
    if models.n_levels:
        part = part.subset((part.slice_index >= 0) & (part.slice_index < models.n_levels))
        if len(part) == 0:
            return []
    picked = part.subset(spread_over_levels(part, N_COMPLETED))
    codes = torch.from_numpy(encode_images(models.vqvae.model, picked.images).astype(np.int64))
    cond = torch.from_numpy(picked.slice_index.astype(np.int64)) if models.n_levels else None
    with one_thread():
        done = complete(
            models.prior.model,
            codes,
            config.keep_rows,
            N_COMPLETIONS,
            cond=cond,
            temperature=config.temperature,
            top_k=config.top_k,
            seed=config.seed,
            progress=True,
        )  # (B * n, h, w)
    images = decode_codes(models.vqvae.model, done)  # (B * n, H, W) uint8
    images = images.reshape(len(picked), N_COMPLETIONS, *images.shape[1:])  # (B, n, H, W)
    kept_px = config.keep_rows * models.vqvae.config.downsample
    path = plots.plot_completions(picked.images, kept_px, images, Path(fig_dir) / "completions.png")
    return [
        (
            path,
            f"Completions of {len(picked)} real slices: the top {config.keep_rows} of "
            f"{h} latent rows ({kept_px} px) are kept, the rest sampled by the prior "
            f"{N_COMPLETIONS} times ({_sampling_text(config)})",
        )
    ]


def read_history(path: Path) -> list[dict[str, float]]:
    """RUN/<stage>/history.json: a list of per-epoch rows, each with an "epoch"."""
    rows = json.loads(Path(path).read_text())
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "epoch" in r for r in rows):
        raise ValueError(f"{path}: expected a JSON list of per-epoch rows with an 'epoch' key")
    return sorted(rows, key=lambda r: r["epoch"])


def _panels(rows: list[dict[str, float]], keys: dict[str, str]) -> dict:
    """plot_curves' input: panel -> {"train"|"validation": [(epoch, value), ...]}."""
    series = (("train", "train"), ("validation", "val"))
    return {
        title: {
            name: [(int(r["epoch"]), float(r[f"{p}/{key}"])) for r in rows if f"{p}/{key}" in r]
            for name, p in series
        }
        for title, key in keys.items()
    }


def _has_points(panels: dict) -> bool:
    return any(points for series in panels.values() for points in series.values())


def curve_figures(run_dir: Path, fig_dir: Path) -> list[Figure]:
    """VQ-VAE loss curves (total, reconstruction, VQ, perplexity) and the prior's NLL per epoch."""
    run_dir, fig_dir = Path(run_dir), Path(fig_dir)
    stages = (
        (
            "vqvae",
            VQVAE_CURVES,
            "VQ-VAE training",
            "vqvae_curves.png",
            "VQ-VAE per epoch, train and validation: total loss, reconstruction loss (MSE), "
            "VQ loss (codebook + beta * commitment) and code perplexity",
        ),
        (
            "prior",
            PRIOR_CURVES,
            "PixelCNN prior training",
            "prior_curves.png",
            "PixelCNN prior per epoch, train and validation: negative log-likelihood of the "
            "code maps in bits per code",
        ),
    )
    figures = []
    for stage, keys, title, name, caption in stages:
        path = run_dir / stage / "history.json"
        if not path.is_file():
            continue
        panels = _panels(read_history(path), keys)
        if _has_points(panels):
            figures.append((plots.plot_curves(panels, fig_dir / name, title), caption))
    return figures


def training_gif(run_dir: Path, fig_dir: Path) -> list[Figure]:
    """RUN/vqvae/frames/epoch_XXX.png animated, each frame labelled with its epoch."""
    frames = {}
    for path in (Path(run_dir) / "vqvae" / "frames").glob("epoch_*.png"):
        match = FRAME_NAME.match(path.name)
        if match:
            frames[int(match.group(1))] = path
    if not frames:
        return []
    epochs = sorted(frames)
    out = Path(fig_dir) / "training.gif"
    gif = make_training_gif([frames[e] for e in epochs], out, epochs=epochs)
    return [
        (
            gif,
            f"Fixed validation slices (top) and their reconstructions (bottom) after each "
            f"of the {len(epochs)} epochs (numbered from 0, as in the curves)",
        )
    ]


def _is_oasis(sliceset: SliceSet) -> bool:
    return len(sliceset) > 0 and all(OASIS_NAME.match(str(f)) for f in sliceset.filename[:32])


def _notes(sliceset: SliceSet, split: str, has_prior: bool, run_dir: Path) -> list[str]:
    part = sliceset.require_split(split)
    n_subjects = len(np.unique(part.subject))
    notes = [
        f"Data source: {sliceset.source}; {len(sliceset)} slices at "
        f"{sliceset.size}x{sliceset.size}.",
        f"Evaluated on the {split} split: {len(part)} slices of {n_subjects} "
        f"subject{'s' if n_subjects != 1 else ''}.",
        *sliceset.notes,
    ]
    if not has_prior:
        notes.append(
            f"No prior in this run ({run_dir / 'prior' / PRIOR_FOLDER} is missing): no "
            f"generated slices or completions. Train one with `brainvq train prior "
            f"--run {run_dir}`."
        )
    if _is_oasis(sliceset):
        notes.append(OASIS_CITATION)
    return notes


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def build_report(run_dir: Path, sliceset: SliceSet | None = None) -> Path:
    """Write every figure of RUN to RUN/figures/ and the page RUN/report.html; returns its path.

    `sliceset` defaults to the run's data (`run_slices`). The prior is optional: without
    RUN/prior/PixelCNN_Model the report holds the VQ-VAE's figures only.
    """
    run_dir = Path(run_dir)
    config = load_run(run_dir)
    sliceset = run_slices(config) if sliceset is None else sliceset
    fig_dir = run_dir / FIGURES_DIR
    vqvae = load_vqvae(run_dir / "vqvae")
    split = eval_split(sliceset)
    figures = dataset_figure(sliceset, fig_dir)
    vq_metrics, recon = reconstruction_figures(vqvae, sliceset, split, fig_dir)
    figures += recon
    has_prior = (run_dir / "prior" / PRIOR_FOLDER).is_dir()
    if has_prior:
        models = RunModels(vqvae=vqvae, prior=load_prior(run_dir / "prior"))
        figures += sample_figures(models, config.sample, fig_dir)
        figures += completion_figure(models, config.sample, sliceset.require_split(split), fig_dir)
    figures += curve_figures(run_dir, fig_dir)
    figures += training_gif(run_dir, fig_dir)
    metrics = _read_json(run_dir / METRICS_FILE)
    metrics.setdefault("vqvae", vq_metrics)
    return write_report(
        run_dir / REPORT_FILE,
        title=f"brainvq run {run_dir.resolve().name}",
        metrics=metrics,
        config=yaml.safe_load((run_dir / CONFIG_FILE).read_text()),
        figures=figures,
        timings=_read_json(run_dir / TIMINGS_FILE),
        notes=_notes(sliceset, split, has_prior, run_dir),
    )
