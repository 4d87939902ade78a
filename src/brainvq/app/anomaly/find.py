"""Anomaly maps of user slices and scans with a run's VQ-VAE and its prior, and the slice and
scan decisions that follow them, thresholded by the run's calibration.

`find_anomalies` loads the input at the model's working size (brainvq.app.anomaly.inputs: NIfTI
volumes are registered to the reference and sliced on the run's frame, every covered level; 2D
inputs give their slices), finds each slice's level, takes the calibration for its settings
(brainvq.app.anomaly.calibration: the run's own, or one stored for these settings, or made now
and kept in the user's cache; the run folder is never written), makes the maps with the run's
slice prior (brainvq.inference.anomaly_maps; with a prior of whole subjects and `context: true`
the slices of a volume are judged in 3D context, each given the healed slice below it), and
decides (brainvq.evaluation.anomaly_decisions): pixels above the pixel threshold, slices by
their conformal p-values at alpha, scans (volumes, or the subjects of 2D slices) by Simes'
combination at scan_alpha. For each scan it also says what differs from the calibration slices
and whether the stated rates are at risk for it, and which share of its brain the run judges
(brainvq.app.anomaly.scan_answers; a run that misses part of every brain says once that a
whole-brain run would judge the rest: brainvq.app.anomaly.coverage).
A 3D run takes volumes only: each is coded, judged with its prior of latent levels, healed and
decoded whole (brainvq.inference.volume_anomaly), and its slices are then decided, calibrated
and checked for shift as a 2D run's.
`write_anomalies` (brainvq.app.anomaly.files) writes the results, volumes in their own space.
The settings are the run config's `anomaly:` section (`anomaly_settings`), with --n-heal over
it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainvq.app.anomaly.calibration import anomaly_settings, resolve_calibration, run_maps
from brainvq.app.anomaly.calibration_store import StoredCalibration
from brainvq.app.anomaly.coverage import whole_brain_note
from brainvq.app.anomaly.inputs import load_inputs, resolve_levels
from brainvq.app.anomaly.scan_answers import SHIFT_WARNING, ScanAnswer, answer_scans
from brainvq.app.reconstruct_3d import scan_first_level
from brainvq.data.space.align import AlignedScan
from brainvq.evaluation.anomaly_calibration import Calibration, calibration_scores
from brainvq.evaluation.anomaly_decisions import slice_scores
from brainvq.evaluation.conformal import conformal_p_values
from brainvq.inference.anomaly_maps import MapSet
from brainvq.inference.codes import decode_codes
from brainvq.inference.run_models import load_run_models
from brainvq.inference.slice_below import below_rows
from brainvq.inference.volume_anomaly import volume_reconstructions
from brainvq.run import RunLayout, load_run
from brainvq.values import HEALINGS, RATE, SEED


@dataclass(frozen=True)
class AnomalyResult:
    """Anomaly maps of N input slices, in input order, at the model's working size.

    names: input names; levels: (N,) int64 (-1: unconditional prior); level_from: LEVEL_FROM
    per slice; images: (N, H, W) uint8; maps: (N, H, W) float32, higher = more anomalous;
    masks: (N, H, W) bool, maps above the calibrated pixel threshold; scores: (N,) float64 the
    slice scores (calibration.slice_score); p_values: (N,) their conformal p-values; flagged:
    (N,) bool, p <= alpha (score above the slice threshold); scans: one answer per scan
    (brainvq.app.anomaly.scan_answers: volumes first, in input order, or the subjects of 2D
    slices); details: the MapSet (healed slices, codes, NLL maps); notes: what a user should know
    (levels, calibration, warnings). For NIfTI inputs: volumes (the aligned scans), volume_of
    (N,) each slice's volume, and the VQ-VAE's reconstructions of the slices. stored: the
    calibration's stored maps; unsaved: made by this call and not kept (the cache could not be
    written): write_anomalies writes it with the answers."""

    names: list[str]
    levels: np.ndarray
    level_from: list[str]
    images: np.ndarray
    maps: np.ndarray
    masks: np.ndarray
    scores: np.ndarray
    p_values: np.ndarray
    flagged: np.ndarray
    calibration: Calibration
    details: MapSet
    root: Path
    notes: list[str]
    stored: StoredCalibration
    scans: list[ScanAnswer] = field(default_factory=list)
    volumes: list[AlignedScan] = field(default_factory=list)
    volume_of: np.ndarray | None = None
    reconstructions: np.ndarray | None = None  # (N, H, W) uint8, volumes only
    unsaved: bool = False

    def volume_rows(self, index: int) -> np.ndarray:
        """The slices of volume `index`, in level order."""
        return np.nonzero(self.volume_of == index)[0]

    @property
    def shift(self) -> list[dict]:
        """The shift check of each volume (brainvq.evaluation.calibration_shift)."""
        return [a.shift for a in self.scans[: len(self.volumes)]]


def check_options(
    alpha: float, n_heal: int | None, seed: int, scan_alpha: float | None = None
) -> None:
    """ValueError naming the flag for an alpha or scan_alpha outside (0, 1), an n_heal that is
    not a count of healings or a seed outside [0, 2**32 - 1]: the rules every flag of their kind
    follows (brainvq.values). The one check of them: the command and the API call it before any
    work, find_anomalies for its own callers."""
    RATE.check("--alpha", alpha)
    if scan_alpha is not None:
        RATE.check("--scan-alpha", scan_alpha)
    if n_heal is not None:
        HEALINGS.check("--n-heal", n_heal)
    SEED.check("--seed", seed)


def find_anomalies(
    run_dir: str | Path,
    source: str | Path,
    *,
    alpha: float = 0.01,
    scan_alpha: float | None = None,
    n_heal: int | None = None,
    level: int | None = None,
    seed: int = 0,
    mask: str | Path | None = None,
    intensity: str = "landmarks",
    sampler: str = "cached",
    threads: int | None = None,
    progress: bool = True,
    series: str | None = None,
) -> AnomalyResult:
    """Anomaly maps, masks and the slice and scan decisions of every slice of `source` (see
    the module docstring) at rates alpha (pixels, slices) and scan_alpha (scans; default alpha),
    calibrated first if no calibration for these settings is stored (the run config's
    `anomaly:` section; n_heal: its n_heal unless given). mask: the user's brain mask of a
    volume input (`--mask`); intensity: how its intensities are standardised
    (brainvq.data.space.intensity.METHODS); series: a DICOM input's series to take
    (`--series`, brainvq.data.volumes.series). The run folder is only read."""
    check_options(alpha, n_heal, seed, scan_alpha)
    layout = RunLayout(run_dir)
    config = load_run(run_dir)
    models = load_run_models(run_dir)
    volumetric = models.dims == 3
    inputs = load_inputs(
        run_dir,
        source,
        mask=mask,
        intensity=intensity,
        threads=threads,
        progress=progress,
        series=series,
        volumes_only=volumetric,  # a 3D run refuses slices before any is read
    )
    if volumetric:
        for aligned in inputs.volumes:
            scan_first_level(aligned)  # refuses covered levels with a gap, naming the scan
    levels, level_from, notes = resolve_levels(models, layout, inputs, level)
    notes = [*inputs.notes, *notes]
    for aligned in inputs.volumes:
        notes += [f"{aligned.scan.path.name}: {note}" for note in aligned.notes]
    settings = anomaly_settings(config, n_heal)
    resolved = resolve_calibration(
        run_dir,
        alpha,
        settings,
        models,
        scan_alpha=scan_alpha,
        sampler=sampler,
        threads=threads,
        progress=progress,
    )
    calibration, stored = resolved.calibration, resolved.stored
    notes += resolved.notes
    below_of = None
    if (
        not volumetric
        and inputs.volumes
        and levels is not None
        and models.slice_prior.config.has_neighbour
    ):
        below_of = below_rows(inputs.volume_of, levels)  # each slice's slice below, in context
    details = run_maps(
        models,
        inputs.images,
        inputs.levels if volumetric else levels,
        calibration.code_threshold,
        settings,
        group=inputs.volume_of,
        below_of=below_of,
        foreground=inputs.foreground,
        seed=seed,
        sampler=sampler,
        threads=threads,
        progress=progress,
    )
    pixel = calibration.pixel_threshold
    scores = slice_scores(
        calibration.slice_score, details.maps, details.foreground, pixel, settings
    )
    p_values = conformal_p_values(calibration_scores(stored.maps, pixel, settings), scores)
    flagged = p_values <= alpha
    scans = answer_scans(
        inputs.names,
        inputs.images,
        levels,
        details,
        p_values,
        flagged,
        calibration,
        stored,
        models.vqvae.config.downsample,
        volume_of=inputs.volume_of,
        volumes=inputs.volumes,
    )
    notes += [f"WARNING: {a.name}: {SHIFT_WARNING}" for a in scans if a.warn]
    notes += [f"{a.name}: {note}" for a in scans for note in a.shift["notes"]]
    if inputs.volumes:
        coverages = [a.coverage for a in scans if a.coverage is not None]
        note = whole_brain_note(inputs.volumes[0].frame, coverages)
        notes += [note] if note else []
    reconstructions = None
    if volumetric:  # each volume coded whole, as its maps were
        model = models.vqvae.model
        reconstructions = volume_reconstructions(
            model, inputs.images, inputs.levels, inputs.volume_of
        )
    elif inputs.volumes:
        reconstructions = decode_codes(models.vqvae.model, details.codes)
    return AnomalyResult(
        names=inputs.names,
        levels=np.full(len(inputs.names), -1) if levels is None else levels,
        level_from=level_from,
        images=inputs.images,
        maps=details.maps,
        masks=details.maps > pixel,
        scores=scores,
        p_values=p_values,
        flagged=flagged,
        calibration=calibration,
        details=details,
        root=inputs.root,
        notes=notes,
        stored=stored,
        scans=scans,
        volumes=inputs.volumes,
        volume_of=inputs.volume_of,
        reconstructions=reconstructions,
        unsaved=resolved.unsaved,
    )
