"""The anomaly thresholds of a run: calibrated on healthy slices, stored once, reused, never
written into the run by a plain `brainvq anomaly`.

A calibration is made from the healthy slices of the run's validate split, or from the user's
own healthy scans (`calibrate_run(healthy=PATH)`, `brainvq anomaly calibrate --healthy PATH`:
their site, their scanner, the standard answer to a site shift). What it stores is keyed by
the models, the anomaly prior, the settings and the source, not by alpha: another alpha is a
re-threshold of the stored maps (brainvq.app.anomaly.calibration_store says where they live).
The healthy slices are drawn by brainvq.app.anomaly.healthy_pool (a pool of bounded size, however
many volumes and levels the source has). A 3D run's maps are made the way its answers are
(`run_maps`): whole subjects or volumes, each coded, healed and decoded whole; their slices
are the calibration slices.

- `calibrate_run` (`brainvq anomaly calibrate`) writes into the run: the stored maps under
  their key and RUN/anomaly/calibration.json, which makes it the run's own calibration (a user's
  healthy scans are then used until they recalibrate).
- `resolve_calibration` (every plain `brainvq anomaly`) reads and never writes the run: the
  run's own calibration when it fits the models and settings; else one stored for these
  settings in the run or in the user's cache; else it is made now on the validate split and
  kept in the user's cache, said once (when the cache cannot be written either, the result
  carries it, for the output folder). A run whose own calibration was made on the user's scans
  for other settings is refused rather than silently judged against the validate split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from brainvq.app.anomaly import calibration_store as store
from brainvq.app.anomaly.healthy_pool import (
    USER_SOURCE,
    HealthySlices,
    healthy_slices,
    validate_source,
)
from brainvq.atomic import atomic_write_json
from brainvq.config import to_dict
from brainvq.evaluation.anomaly_calibration import (
    Calibration,
    CalibrationMaps,
    calibrate_thresholds,
    code_threshold,
)
from brainvq.evaluation.calibration_shift import SliceStatistics
from brainvq.evaluation.conformal import check_rate
from brainvq.inference.anomaly_maps import MapSet, anomaly_maps
from brainvq.inference.codes import load_codes
from brainvq.inference.run_models import RunModels, load_run_models
from brainvq.inference.volume_anomaly import volume_anomaly_maps
from brainvq.io.bundle import WEIGHTS_FILE
from brainvq.run import RunLayout, load_run
from brainvq.run_config import AnomalyConfig, RunConfig


def models_fingerprint(models: RunModels) -> str:
    """A short hash of the VQ-VAE's and the anomaly prior's weights (RunModels.anomaly_prior:
    a 2D run's slice prior, a 3D run's prior of latent levels): a calibration holds only for
    these (the same hash as before for a run whose slice prior is its only prior)."""
    h = hashlib.sha256()
    for bundle in (models.vqvae, models.anomaly_prior):
        h.update((bundle.path / WEIGHTS_FILE).read_bytes())
    return h.hexdigest()[:16]


def prior_name(run_dir: str | Path, models: RunModels) -> str:
    """The anomaly prior's bundle as a path inside the run (its absolute path when outside)."""
    path = Path(models.anomaly_prior.path).resolve()
    root = Path(run_dir).resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def anomaly_settings(config: RunConfig, n_heal: int | None = None) -> AnomalyConfig:
    """The run config's `anomaly:` section, with `n_heal` (--n-heal) over it when given."""
    return config.anomaly if n_heal is None else replace(config.anomaly, n_heal=n_heal)


def run_maps(
    models: RunModels,
    images: np.ndarray,
    levels: np.ndarray | None,
    code_thr: float,
    settings: AnomalyConfig,
    *,
    group: np.ndarray | None = None,
    below_of: np.ndarray | None = None,
    foreground: np.ndarray | None = None,
    seed: int = 0,
    sampler: str = "cached",
    threads: int | None = None,
    progress: bool = True,
) -> MapSet:
    """The anomaly maps of slices (N, H, W) uint8 as the run's kind makes them: a 3D run codes,
    heals and decodes each volume whole (group: (N,) the volume of each slice, levels their
    frame levels; brainvq.inference.volume_anomaly), a 2D run judges slices (below_of: in 3D
    context, each slice's slice below; brainvq.inference.anomaly_maps)."""
    common = dict(seed=seed, sampler=sampler, progress=progress, threads=threads)
    if models.dims == 3:
        if group is None or levels is None:
            raise ValueError("a 3D run's anomaly maps need each slice's volume and frame level")
        return volume_anomaly_maps(
            models, images, levels, group, code_thr, settings, foreground=foreground, **common
        )
    return anomaly_maps(
        models,
        images,
        levels,
        code_thr,
        settings,
        foreground=foreground,
        below_of=below_of,
        **common,
    )


def make_calibration(
    run_dir,
    key: store.CalibrationKey,
    slices: HealthySlices,
    models: RunModels,
    *,
    sampler: str = "cached",
    threads: int | None = None,
    progress: bool = True,
) -> store.StoredCalibration:
    """Heal and map the calibration slices (nothing is written)."""
    settings = key.settings
    train_codes = load_codes(RunLayout(run_dir).codes, "train")
    code_thr = code_threshold(models.anomaly_prior.model, train_codes, settings)
    maps = run_maps(
        models,
        slices.images,
        slices.levels,
        code_thr,
        settings,
        group=slices.group,
        below_of=slices.below_of,
        foreground=slices.foreground,
        seed=settings.seed,
        sampler=sampler,
        threads=threads,
        progress=progress,
    )
    return store.StoredCalibration(
        key=key,
        code_threshold=code_thr,
        n_code_maps=min(settings.code_maps, len(train_codes.codes)),
        maps=CalibrationMaps.of(maps.maps, maps.foreground),
        slices=SliceStatistics.of(
            slices.images,
            maps.foreground,
            maps.nll,
            slices.levels,
            models.vqvae.config.downsample,
        ),
    )


def thresholds(
    stored: store.StoredCalibration, alpha: float, scan_alpha: float | None = None
) -> Calibration:
    """The Calibration of `stored` at rate alpha (and scan_alpha, default alpha)."""
    key = stored.key
    return calibrate_thresholds(
        stored.maps,
        alpha,
        stored.code_threshold,
        stored.n_code_maps,
        key.settings,
        scan_alpha=scan_alpha,
        models=key.models,
        source=key.source,
        prior=key.prior,
        key=key.name if stored.version == store.MAPS_VERSION else "",
    )


def calibrate_run(
    run_dir: str | Path,
    alpha: float = 0.01,
    n_heal: int | None = None,
    *,
    healthy: str | Path | None = None,
    models: RunModels | None = None,
    sampler: str = "cached",
    threads: int | None = None,
    progress: bool = True,
    series: str | None = None,
) -> Calibration:
    """Calibrate the run's anomaly thresholds at rate alpha on healthy slices (the run's
    validate split, or the user's healthy scans `healthy`: volumes, a folder of them, or of
    slices; series: the DICOM series of `healthy` to take) and make it the run's own:
    RUN/anomaly/calibrations/<key>.npz and RUN/anomaly/calibration.json. Maps already stored
    for the same key (in the run or the user's cache) are reused, not made again."""
    if healthy is None and series is not None:
        raise ValueError(f"--series {series}: goes with --healthy (the DICOM scans to take)")
    layout = RunLayout(run_dir)
    config = load_run(run_dir)
    settings = anomaly_settings(config, n_heal)
    models = models or load_run_models(run_dir)
    fingerprint, prior = models_fingerprint(models), prior_name(run_dir, models)
    stored = None
    if healthy is None:
        key = store.CalibrationKey(fingerprint, prior, validate_source(config), settings)
        check_rate(alpha, settings.calibration_slices)
        stored = store.find(run_dir, key)
    if stored is None:
        slices = healthy_slices(
            run_dir, config, settings, models, healthy, threads, progress, series
        )
        check_rate(alpha, len(slices.images))  # before any healing
        key = store.CalibrationKey(fingerprint, prior, slices.source, settings)
        stored = store.find(run_dir, key) or make_calibration(
            run_dir, key, slices, models, sampler=sampler, threads=threads, progress=progress
        )
    calibration = thresholds(stored, alpha)  # refuses before anything is written
    if stored.path != store.run_path(run_dir, stored.key):
        store.save(stored, store.run_path(run_dir, stored.key))
    atomic_write_json(layout.anomaly_calibration, to_dict(calibration))
    return calibration


@dataclass
class Resolved:
    """The calibration a plain `brainvq anomaly` uses: stored (its maps), calibration (the
    thresholds at the call's alpha), notes (said once), unsaved: True when it was made now and
    could not be kept in the user's cache (the caller may write it with the answers)."""

    stored: store.StoredCalibration
    calibration: Calibration
    notes: list[str] = field(default_factory=list)
    unsaved: bool = False


LEGACY_NOTE = (
    "this run was calibrated by an earlier brainvq: slices are judged by the earlier slice "
    "score (the mean of the map's brightest pixels); `brainvq anomaly calibrate --run RUN` makes "
    "a calibration whose slice and scan decisions follow the map"
)


def resolve_calibration(
    run_dir: str | Path,
    alpha: float,
    settings: AnomalyConfig,
    models: RunModels,
    *,
    scan_alpha: float | None = None,
    sampler: str = "cached",
    threads: int | None = None,
    progress: bool = True,
) -> Resolved:
    """The calibration for alpha and settings (the module docstring's order); never writes
    into the run."""
    fingerprint, prior = models_fingerprint(models), prior_name(run_dir, models)
    chosen = store.read_chosen(run_dir)
    if chosen is not None:
        fits = chosen.models == fingerprint and chosen.settings == settings
        stored = store.load_chosen(run_dir, chosen) if fits else None
        if stored is not None:
            notes = [LEGACY_NOTE] if stored.version == store.LEGACY_VERSION else []
            return Resolved(stored, thresholds(stored, alpha, scan_alpha), notes)
        if chosen.source.startswith(USER_SOURCE):
            why = "its stored maps are missing" if fits else "for other models or settings"
            raise ValueError(
                f"{RunLayout(run_dir).anomaly_calibration} was calibrated on {chosen.source} "
                f"({why}); recalibrate: `brainvq anomaly calibrate --run RUN --healthy PATH`"
            )
    config = load_run(run_dir)
    key = store.CalibrationKey(fingerprint, prior, validate_source(config), settings)
    stored = store.find(run_dir, key)
    if stored is not None:
        return Resolved(stored, thresholds(stored, alpha, scan_alpha))
    check_rate(alpha, settings.calibration_slices)
    slices = healthy_slices(run_dir, config, settings, models, None, threads, progress)
    check_rate(alpha, len(slices.images))  # before any healing: a refusal leaves nothing
    stored = make_calibration(
        run_dir, key, slices, models, sampler=sampler, threads=threads, progress=progress
    )
    calibration = thresholds(stored, alpha, scan_alpha)
    made = f"calibrated on {stored.n_slices} healthy slices of {key.source}"
    try:
        stored = store.save(stored, store.cache_path(key))
    except OSError as e:
        note = f"{made}; not kept: the user's cache cannot be written ({e})"
        return Resolved(stored, calibration, [note], unsaved=True)
    note = (
        f"{made}, kept in {stored.path} for the next call (the run folder is not changed; "
        "`brainvq anomaly calibrate --run RUN` stores it in the run)"
    )
    return Resolved(stored, calibration, [note])
