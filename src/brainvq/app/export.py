"""`brainvq export` as a function a notebook can call: a run's VQ-VAE (and prior) as ONNX for
edge devices (brainvq.io.onnx), int8 versions calibrated on the run's own training slices.
Imported when `brainvq` builds its parser: what needs torch is imported when called."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from brainvq.run import RunLayout, load_run
from brainvq.values import COUNT

DEFAULT_CALIBRATION = 128  # training slices int8-static is calibrated on


def calibration_slices(run_dir: Path, n: int) -> np.ndarray:
    """n of the run's training slices, evenly spaced through the split: (n, S, S) uint8."""
    from brainvq.app.run_data import run_slices

    train = run_slices(load_run(run_dir)).require_split("train")
    if n > len(train):
        raise ValueError(f"--calibration {n}: the run's data has only {len(train)} training slices")
    return train.images[np.linspace(0, len(train) - 1, n).round().astype(int)]


def export_run(
    source: Path,
    out: Path,
    *,
    quantize: str | None = None,
    calibration: int | None = None,
    with_prior: bool = False,
) -> dict[str, Any]:
    """Export a run's VQ-VAE (`source`: a run directory, or a VQVAE_Model folder) to ONNX in
    `out`; returns export.json's content (brainvq.io.onnx.export_onnx).

    quantize "int8-static" calibrates on `calibration` (default DEFAULT_CALIBRATION) of the
    run's training slices; with_prior also exports the run's prior sampler steps (both need a
    run directory). A 3D run exports its encoder and decoder only: ValueError for quantize or
    with_prior (brainvq.io.onnx.check_3d_export), before anything is loaded or written.
    ImportError when onnx or onnxruntime is missing (checked first)."""
    from brainvq.io.bundle import load_vqvae
    from brainvq.io.onnx import check_3d_export, export_onnx, require_onnx

    source = Path(source)
    require_onnx()  # before loading any calibration slices
    prior = RunLayout(source).bundle("prior") if with_prior else None
    check_3d_export(load_vqvae(source).config, quantize, prior)
    slices = None
    if quantize == "int8-static":
        n = DEFAULT_CALIBRATION if calibration is None else calibration
        slices = calibration_slices(source, COUNT.check("--calibration", n))
    return export_onnx(
        source,
        out,
        quantize=quantize,
        calibration=slices,
        prior=prior,
    )
