"""What `python predict.py [-m PATH]` does: reconstruct a split with a trained VQ-VAE, sample
with its run's prior when there is one, write the figures and print the metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from brainvq.atomic import atomic_write_json
from brainvq.bundle import PRIOR_FOLDER, Bundle, load_prior
from brainvq.codes import CodeSet, encode_images
from brainvq.evaluation import METRICS_FILE
from brainvq.generate import RunModels
from brainvq.pipeline import CONFIG_FILE, eval_split, load_run, run_slices
from brainvq.prior_eval import code_nll_bits
from brainvq.report.build import completion_figure, reconstruction_figures, sample_figures
from brainvq.report.tables import print_metrics
from brainvq.training.config import RunConfig, load_run_config

PREDICT_DIR = "predict"  # RUN/predict/ for a model inside a run
DEFAULT_OUT = Path("predict_out")  # for a model outside any run


def run_of(bundle: Bundle) -> Path | None:
    """RUN when the bundle is RUN/vqvae/VQVAE_Model of a run (RUN/config.yaml exists), else None."""
    run_dir = bundle.path.parent.parent
    if bundle.path.parent.name == "vqvae" and (run_dir / CONFIG_FILE).is_file():
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
        f"{bundle.path.parent.parent / CONFIG_FILE}) and its config.json records no "
        "meta.data_source; pass --data SOURCE (demo, an OASIS folder or zip, a PNG or NIfTI folder)"
    )


def prior_nll(prior: Bundle, codes: np.ndarray, levels: np.ndarray, split: str) -> dict[str, float]:
    """The prior's NLL of the split's code maps (N, h, w), in bits per code; {} when a
    conditional prior does not know the slices' levels (N,)."""
    n_levels = prior.config.n_levels
    if n_levels and not ((levels >= 0) & (levels < n_levels)).all():
        return {}
    code_set = CodeSet(codes=codes, levels=levels.astype(np.int16), split=split)
    return {f"nll_bits_per_code_{split}": code_nll_bits(prior, code_set)}


def predict(
    bundle: Bundle, data: str | None = None, split: str | None = None, out_dir: Path | None = None
) -> dict[str, Any]:
    """Reconstruct `split` (default test, else validate) with the VQ-VAE `bundle`, generate and
    complete slices with its run's prior if the run has one, and write the figures and
    metrics.json to `out_dir` (default RUN/predict, or ./predict_out for a model outside a run).

    The data (default: the run's source, else the bundle's recorded source) is loaded at the
    model's size. Prints the metrics table and returns it: {"model": bundle folder, "data":
    source, "vqvae": evaluate_vqvae's metrics, "prior": {nll_bits_per_code_<split>} when the
    run has a prior}.
    """
    run_dir = run_of(bundle)
    size_override = {"data": {"size": bundle.config.image_size}}
    run_config = load_run(run_dir, size_override) if run_dir else None
    source = data_source(bundle, run_config, data)
    config = run_config or load_run_config(None, size_override)
    sliceset = run_slices(config, source=source)
    split = eval_split(sliceset, split)
    if out_dir is None:
        out_dir = run_dir / PREDICT_DIR if run_dir else DEFAULT_OUT
    out_dir = Path(out_dir)
    vq_metrics, figures = reconstruction_figures(bundle, sliceset, split, out_dir)
    metrics: dict[str, Any] = {"model": str(bundle.path), "data": source, "vqvae": vq_metrics}
    prior_dir = run_dir / "prior" / PRIOR_FOLDER if run_dir else None
    if prior_dir is not None and prior_dir.is_dir():
        models = RunModels(vqvae=bundle, prior=load_prior(prior_dir))
        if models.prior.config.num_codes != bundle.config.codebook_size:
            raise ValueError(
                f"the prior at {prior_dir} models {models.prior.config.num_codes} codes but the "
                f"VQ-VAE at {bundle.path} has {bundle.config.codebook_size}; retrain the prior"
            )
        part = sliceset.require_split(split)
        metrics["prior"] = prior_nll(
            models.prior, encode_images(bundle.model, part.images), part.slice_index, split
        )
        figures += sample_figures(models, config.sample, out_dir)
        figures += completion_figure(models, config.sample, part, out_dir)
    atomic_write_json(out_dir / METRICS_FILE, metrics)
    print_metrics(metrics, title=f"brainvq predict: {bundle.path} on {source} ({split})")
    for path, caption in figures:
        print(f"{path}: {caption}")
    return metrics
