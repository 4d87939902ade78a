"""Intensities like the training data's: piecewise-linear histogram standardisation.

Nyul & Udupa's method (IEEE TMI 2000; as in torchio's HistogramStandardization): landmarks are
percentiles of the brain's intensities (PERCENTILES); the run learns the mean of its training
subjects' landmarks, and a scan's brain intensities are mapped piecewise-linearly from the
scan's own landmarks onto those (beyond the end landmarks, the end segments' slopes continue).
The map is monotone, so it can be inverted: reconstructions and healed volumes go back to the
scan's own intensity units.

The region whose histogram counts is the same for both: the template's brain mask carried onto
the frame and eroded by ERODE_MM (so that the rim, the CSF outside the brain and the
registration's error at the outline do not count), intersected with the scan's brain mask.

White-matter-peak scaling (`white_matter_peak`: one landmark, the mode of the upper half of the
histogram) is kept to compare against (benchmarks/bench_scans.py measures which keeps healthy
scans healthy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PERCENTILES = (1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 99.0)
ERODE_MM = 4.0
METHODS = ("landmarks", "white_matter_peak")


@dataclass(frozen=True)
class Landmarks:
    """values: (len(PERCENTILES),) increasing intensities in [0, 1] (the training data's scale);
    peak: the white matter peak in the same scale (white_matter_peak)."""

    values: tuple[float, ...]
    peak: float

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=np.float64)
        if v.shape != (len(PERCENTILES),) or not np.isfinite(v).all():
            raise ValueError(f"landmarks: expected {len(PERCENTILES)} finite values, got {v}")
        if np.any(np.diff(v) <= 0):
            raise ValueError(f"landmarks: expected increasing values, got {v.round(4).tolist()}")
        if not self.peak > 0:
            raise ValueError(f"landmarks: expected a white matter peak > 0, got {self.peak}")


def landmarks_of(values: np.ndarray) -> np.ndarray:
    """(len(PERCENTILES),) strictly increasing percentiles of `values` (a tiny ramp separates
    ties, so a map through them stays invertible)."""
    p = np.percentile(np.asarray(values, dtype=np.float64), PERCENTILES)
    ramp = np.arange(len(p)) * max(1e-6, 1e-6 * float(np.abs(p).max()))
    return np.maximum.accumulate(p) + ramp


def learn_landmarks(images: np.ndarray, regions: np.ndarray, groups: np.ndarray) -> Landmarks:
    """The mean over groups (subjects) of each group's landmarks.

    images: (N, H, W) uint8; regions: (N, H, W) bool, where the histogram counts; groups: (N,)
    subject ids. ValueError when no group has brain pixels."""
    per_group, peaks = [], []
    for g in np.unique(groups):
        rows = groups == g
        values = images[rows][regions[rows]].astype(np.float64) / 255.0
        if values.size >= 100:
            per_group.append(landmarks_of(values))
            peaks.append(white_matter_peak(values))
    if not per_group:
        raise ValueError("no subject has brain pixels to learn intensity landmarks from")
    mean = np.mean(per_group, axis=0)
    return Landmarks(tuple(float(v) for v in mean), float(np.mean(peaks)))


def _extend(source: np.ndarray, target: np.ndarray):
    """Landmark pairs with the end slopes continued far beyond (so np.interp extrapolates)."""
    span = source[-1] - source[0]
    s = np.concatenate([[source[0] - 100 * span], source, [source[-1] + 100 * span]])
    lo_slope = (target[1] - target[0]) / (source[1] - source[0])
    hi_slope = (target[-1] - target[-2]) / (source[-1] - source[-2])
    t = np.concatenate(
        [[target[0] - 100 * span * lo_slope], target, [target[-1] + 100 * span * hi_slope]]
    )
    return s, t


def standardise(data: np.ndarray, scan_landmarks: np.ndarray, target: Landmarks) -> np.ndarray:
    """Map intensities through the piecewise-linear map scan_landmarks -> target, clipped to
    [0, 1]. data: any shape, float; returns float32 of the same shape."""
    s, t = _extend(np.asarray(scan_landmarks, np.float64), np.asarray(target.values))
    return np.clip(np.interp(data, s, t), 0.0, 1.0).astype(np.float32)


def unstandardise(values: np.ndarray, scan_landmarks: np.ndarray, target: Landmarks) -> np.ndarray:
    """The inverse map: intensities in the training scale -> the scan's units (float32)."""
    s, t = _extend(np.asarray(scan_landmarks, np.float64), np.asarray(target.values))
    return np.interp(values, t, s).astype(np.float32)


def white_matter_peak(values: np.ndarray, bins: int = 128) -> float:
    """The mode of the upper half of a brain's intensity histogram (white matter in a T1)."""
    values = np.asarray(values, dtype=np.float64)
    upper = values[values >= np.median(values)]
    counts, edges = np.histogram(upper, bins=bins)
    i = int(np.argmax(np.convolve(counts, np.ones(5) / 5, mode="same")))
    return float((edges[i] + edges[i + 1]) / 2)


def peak_landmarks(values: np.ndarray, target: Landmarks) -> np.ndarray:
    """Scan landmarks for white-matter-peak scaling: `standardise` through them is the line
    through 0 that takes the scan's white matter peak to the training data's."""
    return np.asarray(target.values) * (white_matter_peak(values) / target.peak)
