"""What `python predict.py [-m PATH]` does: reconstruct a split with a trained VQ-VAE, sample
with its run's prior when there is one, write the figures and the metrics, and return them
(`Prediction`) for the entry point to print.

The output folder is laid out like a run's evaluation (evaluation/, samples/), and its figures
are drawn from those files by the report's own functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brainvq.app.run_data import run_slices
from brainvq.app.run_files import write_data_summary, write_figure_samples, write_reconstructions
from brainvq.atomic import atomic_write_json, output_folder
from brainvq.evaluation.prior import code_nll_bits
from brainvq.evaluation.reconstruction import evaluate_vqvae
from brainvq.inference.codes import CodeSet, encode_images
from brainvq.inference.run_models import RunModels
from brainvq.io.bundle import Bundle, load_prior
from brainvq.report.build import draw_figures
from brainvq.run import RunLayout, load_run
from brainvq.run_config import RunConfig, load_run_config

DEFAULT_OUT = Path("predict_out")  # for a model outside any run


@dataclass(frozen=True)
class Prediction:
    """What `predict` did: the metrics it wrote (metrics.json), the data source and split it
    reconstructed, and the figures it drew as (path, caption)."""

    metrics: dict[str, Any]
    source: str
    split: str
    figures: list[tuple[Path, str]]


def run_of(bundle: Bundle) -> Path | None:
    """RUN when the bundle is RUN/vqvae/VQVAE_Model of a run (RUN/config.yaml exists), else None."""
    run_dir = bundle.path.parent.parent
    layout = RunLayout(run_dir)
    if bundle.path == layout.bundle("vqvae") and layout.config.is_file():
        return run_dir
    return None


def data_source(bundle: Bundle, run_config: RunConfig | None, data: str | None) -> str:
    """`data` if given, else the run's data source, else the one recorded in the bundle."""
    if data:
        return data
    if run_config is not None:
        return run_config.data.source
    recorded = bundle.meta.get("data_source")
    if recorded:
        return str(recorded)
    raise ValueError(
        f"no data source for the model at {bundle.path}: it is not inside a run (no "
        f"{RunLayout(bundle.path.parent.parent).config}) and its config.json records no "
        "meta.data_source; pass --data SOURCE (demo, an OASIS folder or zip, a PNG or NIfTI folder)"
    )


def prior_nll(prior: Bundle, codes: np.ndarray, levels: np.ndarray, split: str) -> dict[str, float]:
    """The prior's NLL of the split's code maps (N, h, w), in bits per code; {} when a
    conditional prior does not know the slices' levels (N,)."""
    n_levels = prior.config.n_levels
    if n_levels and not ((levels >= 0) & (levels < n_levels)).all():
        return {}
    code_set = CodeSet(codes=codes, level=levels.astype(np.int16), split=split)
    return {f"nll_bits_per_code_{split}": code_nll_bits(prior, code_set)}


def predict(
    bundle: Bundle, data: str | None = None, split: str | None = None, out_dir: Path | None = None
) -> Prediction:
    """Reconstruct `split` (default test, else validate) with the VQ-VAE `bundle`, generate and
    complete slices with its run's prior if the run has one, and write the figures and
    metrics.json to `out_dir` (default RUN/predict, or ./predict_out for a model outside a run).

    The data (default: the run's source, else the bundle's recorded source) is loaded at the
    model's size. Returns them; the metrics are {"model": bundle folder, "data": source,
    "vqvae": evaluate_vqvae's metrics, "prior": {nll_bits_per_code_<split>} when the run has a
    prior}.
    """
    run_dir = run_of(bundle)
    size_override = {"data": {"size": bundle.config.image_size}}
    run_config = load_run(run_dir, size_override) if run_dir else None
    source = data_source(bundle, run_config, data)
    config = run_config or load_run_config(None, size_override)
    sliceset = run_slices(config, source=source)
    split = sliceset.eval_split(split)
    if out_dir is None:
        out_dir = RunLayout(run_dir).predict if run_dir else DEFAULT_OUT
    out = RunLayout(output_folder(out_dir))
    vq_metrics, arrays = evaluate_vqvae(bundle, sliceset, split)
    write_data_summary(out, sliceset, split)
    codebook = bundle.model.quantizer.codebook.detach().cpu().numpy()
    write_reconstructions(out, sliceset, split, arrays, codebook)
    metrics: dict[str, Any] = {"model": str(bundle.path), "data": source, "vqvae": vq_metrics}
    prior_dir = RunLayout(run_dir).bundle("prior") if run_dir else None
    if prior_dir is not None and prior_dir.is_dir():
        models = RunModels(vqvae=bundle, prior=load_prior(prior_dir))
        part = sliceset.require_split(split)
        metrics["prior"] = prior_nll(
            models.prior, encode_images(bundle.model, part.images), part.level, split
        )
        write_figure_samples(out, models, config.sample, part)
    figures = draw_figures(out, out.root)
    atomic_write_json(out.metrics, metrics)
    return Prediction(metrics, source, split, figures)
