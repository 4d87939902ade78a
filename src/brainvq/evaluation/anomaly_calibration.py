"""The thresholds of the anomaly maps (brainvq.inference.anomaly_maps), calibrated on healthy
slices.

The code threshold is the (1 - resample_share) quantile of the NLL of the run's training codes
(the prior has seen them, but the pixel calibration does not use them, which keeps its
guarantee exact). From the maps of healthy calibration slices at rate alpha:

1. the pixel threshold by conformal risk control (brainvq.evaluation.conformal);
2. each calibration slice's score at that pixel threshold (brainvq.evaluation.anomaly_decisions:
   a run calibrated before the slice score followed the map keeps its earlier score), and the
   slice threshold by split conformal on those scores: the slice decisions' p-values are read
   against the same scores (`calibration_scores`).

Everything here is a function of the stored maps and alpha: another alpha is a re-threshold,
never a new healing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from brainvq.evaluation.anomaly_decisions import LEGACY_SCORE, SLICE_SCORE, slice_scores
from brainvq.evaluation.conformal import (
    conformal_quantile,
    flagged_share,
    risk_control_threshold,
)
from brainvq.inference.code_nll import code_nll_map
from brainvq.inference.codes import CodeSet
from brainvq.inference.slice_below import below_codes, code_below_rows
from brainvq.models.pixelcnn import GatedPixelCNN
from brainvq.run_config import AnomalyConfig


def code_threshold(prior: GatedPixelCNN, train: CodeSet, config: AnomalyConfig) -> float:
    """The (1 - resample_share) quantile of the NLL of (at most code_maps of) the training codes."""
    n = len(train.codes)
    if n == 0:
        raise ValueError("the run has no training code maps to set the code threshold from")
    pick = np.random.default_rng(config.seed).permutation(n)[: config.code_maps]
    levels = train.level[pick].astype(np.int64) if prior.config.n_levels > 0 else None
    below = None
    if prior.config.has_neighbour:  # each map given its slice below, as the maps are made
        below = below_codes(train.codes, code_below_rows(train)[pick])
    nll = code_nll_map(prior, train.codes[pick], levels, below=below)
    return float(np.quantile(nll, 1 - config.resample_share))


@dataclass(frozen=True)
class CalibrationMaps:
    """What the thresholds are computed from: healthy slices' maps, brain pixels only.

    values: (P,) float32 map values of the brain pixels, slice after slice; counts: (n,) int64
    brain pixels per slice; foreground: (n, H, W) bool the brain masks (None for a calibration
    made before they were kept); legacy_scores: (n,) float64, the earlier slice score of such a
    calibration (None otherwise)."""

    values: np.ndarray
    counts: np.ndarray
    foreground: np.ndarray | None = None
    legacy_scores: np.ndarray | None = None

    @classmethod
    def of(cls, maps: np.ndarray, foreground: np.ndarray) -> CalibrationMaps:
        """From maps (n, H, W) and their brain masks (n, H, W) bool."""
        foreground = np.asarray(foreground, dtype=bool)
        return cls(
            values=np.asarray(maps)[foreground].astype(np.float32),  # row-major: slice by slice
            counts=foreground.reshape(len(foreground), -1).sum(axis=1).astype(np.int64),
            foreground=foreground,
        )

    @property
    def slice_score(self) -> str:
        """The name of the slice score these maps support (anomaly_decisions.SLICE_SCORES)."""
        return LEGACY_SCORE if self.foreground is None else SLICE_SCORE

    def maps(self) -> np.ndarray:
        """(n, H, W) float32: the maps again, zero outside the brain."""
        if self.foreground is None:
            raise ValueError("these calibration maps were stored without their brain masks")
        out = np.zeros(self.foreground.shape, dtype=np.float32)
        out[self.foreground] = self.values
        return out


@dataclass
class Calibration:
    """The thresholds at one alpha (RUN/anomaly/calibration.json) and what they came from.

    code_threshold: nats; pixel_threshold: flag a brain pixel whose map value is > it;
    slice_threshold: flag a slice whose score (slice_score) is > it; scan_alpha: the rate at
    which healthy scans are flagged (brainvq.evaluation.anomaly_decisions). The calibration_*
    rates: the same measured on the calibration slices themselves. key: the stored maps'
    name (app.anomaly.calibration_store; "" for a calibration made before keys)."""

    alpha: float
    code_threshold: float
    pixel_threshold: float
    slice_threshold: float
    n_code_maps: int
    n_slices: int
    calibration_flagged_share: float
    calibration_flagged_slices: float
    models: str = ""  # a fingerprint of the weights the calibration holds for
    source: str = ""  # the calibration slices: their data source and split
    settings: AnomalyConfig = field(default_factory=AnomalyConfig)
    slice_score: str = LEGACY_SCORE
    scan_alpha: float = 0.0  # 0: made before scan decisions
    prior: str = ""
    key: str = ""


def calibration_scores(
    stats: CalibrationMaps, pixel_threshold: float, settings: AnomalyConfig
) -> np.ndarray:
    """(n,) float64: the calibration slices' scores at `pixel_threshold` (step 2)."""
    if stats.foreground is None:
        return np.asarray(stats.legacy_scores, dtype=np.float64)
    maps, foreground = stats.maps(), stats.foreground
    return slice_scores(stats.slice_score, maps, foreground, pixel_threshold, settings)


def calibrate_thresholds(
    stats: CalibrationMaps,
    alpha: float,
    code_thr: float,
    n_code_maps: int,
    settings: AnomalyConfig,
    *,
    scan_alpha: float | None = None,
    models: str = "",
    source: str = "",
    prior: str = "",
    key: str = "",
) -> Calibration:
    """Steps 1-2 of the module docstring at rate alpha (scan_alpha: the scans' rate, default
    alpha)."""
    pixel = risk_control_threshold(stats.values, stats.counts, alpha)
    scores = calibration_scores(stats, pixel, settings)
    slice_t = conformal_quantile(scores, alpha)
    return Calibration(
        alpha=float(alpha),
        code_threshold=float(code_thr),
        pixel_threshold=pixel,
        slice_threshold=slice_t,
        n_code_maps=int(n_code_maps),
        n_slices=len(stats.counts),
        calibration_flagged_share=float(flagged_share(stats.values, stats.counts, pixel).mean()),
        calibration_flagged_slices=float((scores > slice_t).mean()),
        models=models,
        source=source,
        settings=settings,
        slice_score=stats.slice_score,
        scan_alpha=float(alpha if scan_alpha is None else scan_alpha),
        prior=prior,
        key=key,
    )
