"""Anomaly maps of user slices and scans with a run's VQ-VAE and prior, thresholded by the run's
calibration.

`find_anomalies` loads the input at the model's working size (brainvq.app.anomaly_inputs: NIfTI
volumes are registered to the reference and sliced on the run's frame, every covered level; 2D
inputs give their slices), finds each slice's level, makes the maps
(brainvq.inference.anomaly_maps) and thresholds them with the run's calibration
(brainvq.app.anomaly_calibration); with a prior of whole subjects the slices of a volume are
judged in 3D context, each given the healed slice below it. For each volume it also checks
whether the calibration applies to it (brainvq.evaluation.calibration_shift) and says so when
it does not. `write_anomalies`
(brainvq.app.anomaly_files) writes the results, volumes in their own space. The settings are the
run config's `anomaly:` section (`anomaly_settings`), with --n-heal over it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainvq.app.anomaly_calibration import (
    anomaly_settings,
    calibration_statistics,
    run_calibration,
)
from brainvq.app.anomaly_inputs import load_inputs, resolve_levels
from brainvq.data.space.align import AlignedScan
from brainvq.evaluation.anomaly_calibration import Calibration
from brainvq.evaluation.calibration_shift import (
    shift_check,
    slice_flagged_shares,
    slice_nll_medians,
)
from brainvq.inference.anomaly_maps import MapSet, anomaly_maps
from brainvq.inference.codes import decode_codes
from brainvq.inference.generate import load_run_models
from brainvq.inference.slice_below import below_rows
from brainvq.run import RunLayout, load_run
from brainvq.values import COUNT, RATE, SEED

SHIFT_WARNING = (
    "this scan is unlike the calibration slices (its healthy-looking tissue scores outside "
    "them): the false-positive rate alpha is NOT covered by the guarantee for it; calibrate on "
    "healthy scans like it: `brainvq anomaly calibrate --run RUN --healthy PATH`"
)


@dataclass(frozen=True)
class AnomalyResult:
    """Anomaly maps of N input slices, in input order, at the model's working size.

    names: input names; levels: (N,) int64 (-1: unconditional prior); level_from: LEVEL_FROM
    per slice; images: (N, H, W) uint8; maps: (N, H, W) float32, higher = more anomalous;
    masks: (N, H, W) bool, maps above the calibrated pixel threshold; scores: (N,) float64;
    flagged: (N,) bool, scores above the calibrated slice threshold; details: the MapSet
    (healed slices, codes, NLL maps); notes: what a user should know (levels, calibration).
    For NIfTI inputs: volumes (the aligned scans), volume_of (N,) each slice's volume, shift:
    one shift check per volume (brainvq.evaluation.calibration_shift), and the VQ-VAE's
    reconstructions of the slices."""

    names: list[str]
    levels: np.ndarray
    level_from: list[str]
    images: np.ndarray
    maps: np.ndarray
    masks: np.ndarray
    scores: np.ndarray
    flagged: np.ndarray
    calibration: Calibration
    details: MapSet
    root: Path
    notes: list[str]
    volumes: list[AlignedScan] = field(default_factory=list)
    volume_of: np.ndarray | None = None
    shift: list[dict] = field(default_factory=list)
    reconstructions: np.ndarray | None = None  # (N, H, W) uint8, volumes only

    def volume_rows(self, index: int) -> np.ndarray:
        """The slices of volume `index`, in level order."""
        return np.nonzero(self.volume_of == index)[0]


def check_options(alpha: float, n_heal: int | None, seed: int) -> None:
    """ValueError naming the flag for an alpha outside (0, 1), an n_heal that is not a count or
    a seed outside [0, 2**32 - 1]: the rules every flag of their kind follows (brainvq.values)."""
    RATE.check("--alpha", alpha)
    if n_heal is not None:
        COUNT.check("--n-heal", n_heal)
    SEED.check("--seed", seed)


def find_anomalies(
    run_dir: str | Path,
    source: str | Path,
    *,
    alpha: float = 0.01,
    n_heal: int | None = None,
    level: int | None = None,
    seed: int = 0,
    mask: str | Path | None = None,
    intensity: str = "landmarks",
    sampler: str = "cached",
    threads: int | None = None,
    progress: bool = True,
) -> AnomalyResult:
    """Anomaly maps, masks and slice scores of every slice of `source` (see the module
    docstring), calibrated first if the run has no calibration for these settings (the run
    config's `anomaly:` section; n_heal: its n_heal unless given). mask: the user's brain mask
    of a NIfTI input (`--mask`); intensity: how its intensities are standardised
    (brainvq.data.space.intensity.METHODS)."""
    check_options(alpha, n_heal, seed)
    layout = RunLayout(run_dir)
    config = load_run(run_dir)
    models = load_run_models(run_dir)
    inputs = load_inputs(
        run_dir, source, mask=mask, intensity=intensity, threads=threads, progress=progress
    )
    levels, level_from, notes = resolve_levels(models, layout, inputs, level)
    for aligned in inputs.volumes:
        notes += [f"{aligned.scan.path.name}: {note}" for note in aligned.notes]
    settings = anomaly_settings(config, n_heal)
    calibration, note = run_calibration(
        run_dir, alpha, settings, models, sampler=sampler, threads=threads, progress=progress
    )
    if note:
        notes.append(note)
    below_of = None
    if inputs.volumes and levels is not None and models.prior.config.has_neighbour:
        below_of = below_rows(inputs.volume_of, levels)  # each slice's slice below, in context
    details = anomaly_maps(
        models,
        inputs.images,
        levels,
        calibration.code_threshold,
        settings,
        seed=seed,
        sampler=sampler,
        progress=progress,
        threads=threads,
        foreground=inputs.foreground,
        below_of=below_of,
    )
    shifts, reconstructions = [], None
    if inputs.volumes:
        reconstructions = decode_codes(models.vqvae.model, details.codes)
        cal_nll, cal_flagged = calibration_statistics(run_dir, calibration)
        nll = slice_nll_medians(details.nll, details.foreground, models.vqvae.config.downsample)
        flagged = slice_flagged_shares(
            details.maps, details.foreground, calibration.pixel_threshold
        )
        for i, aligned in enumerate(inputs.volumes):
            rows = inputs.volume_of == i
            check = shift_check(cal_nll, cal_flagged, nll[rows], flagged[rows])
            shifts.append(check)
            if check["warn"]:
                notes.append(f"WARNING: {aligned.scan.path.name}: {SHIFT_WARNING}")
    return AnomalyResult(
        names=inputs.names,
        levels=np.full(len(inputs.names), -1) if levels is None else levels,
        level_from=level_from,
        images=inputs.images,
        maps=details.maps,
        masks=details.maps > calibration.pixel_threshold,
        scores=details.scores,
        flagged=details.scores > calibration.slice_threshold,
        calibration=calibration,
        details=details,
        root=inputs.root,
        notes=notes,
        volumes=inputs.volumes,
        volume_of=inputs.volume_of,
        shift=shifts,
        reconstructions=reconstructions,
    )
