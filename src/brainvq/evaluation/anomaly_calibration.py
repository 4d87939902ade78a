"""The thresholds of the anomaly maps (brainvq.inference.anomaly_maps), calibrated on healthy
slices.

The code threshold is the (1 - resample_share) quantile of the NLL of the run's training codes
(the prior has seen them, but the pixel calibration does not use them, which keeps its
guarantee exact); the pixel and slice thresholds come from the maps of healthy calibration
slices by conformal risk control and split conformal (brainvq.evaluation.conformal).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
    brain pixels per slice; scores: (n,) float64 slice scores."""

    values: np.ndarray
    counts: np.ndarray
    scores: np.ndarray

    @classmethod
    def of(cls, maps: np.ndarray, foreground: np.ndarray, scores: np.ndarray) -> CalibrationMaps:
        """From maps (n, H, W), their brain masks (n, H, W) bool and slice scores (n,)."""
        return cls(
            values=np.asarray(maps)[foreground].astype(np.float32),  # row-major: slice by slice
            counts=foreground.reshape(len(foreground), -1).sum(axis=1).astype(np.int64),
            scores=np.asarray(scores, dtype=np.float64),
        )


@dataclass
class Calibration:
    """The thresholds of RUN/anomaly/calibration.json and what they were computed from.

    code_threshold: nats; pixel_threshold: flag a brain pixel whose map value is > it;
    slice_threshold: flag a slice whose score is > it. calibration_flagged_share and
    calibration_flagged_slices: the same rates measured on the calibration slices themselves."""

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


def calibrate_thresholds(
    stats: CalibrationMaps,
    alpha: float,
    code_thr: float,
    n_code_maps: int,
    settings: AnomalyConfig,
    models: str = "",
    source: str = "",
) -> Calibration:
    """The pixel threshold (conformal risk control) and the slice threshold (split conformal) at
    rate alpha from the calibration maps."""
    pixel = risk_control_threshold(stats.values, stats.counts, alpha)
    slice_t = conformal_quantile(stats.scores, alpha)
    return Calibration(
        alpha=float(alpha),
        code_threshold=float(code_thr),
        pixel_threshold=pixel,
        slice_threshold=slice_t,
        n_code_maps=int(n_code_maps),
        n_slices=len(stats.counts),
        calibration_flagged_share=float(flagged_share(stats.values, stats.counts, pixel).mean()),
        calibration_flagged_slices=float((stats.scores > slice_t).mean()),
        models=models,
        source=source,
        settings=settings,
    )
