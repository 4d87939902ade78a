"""Does a calibration apply to a scan? A check on its healthy-looking tissue.

The anomaly thresholds' guarantee (brainvq.evaluation.conformal) holds for slices exchangeable
with the calibration slices. A scan from another scanner, protocol or preprocessing breaks that,
and usually shows it everywhere, not only where a lesion is. The check:

1. per slice, two statistics: the median, over its brain codes (latent cells at least half
   brain), of the codes' NLL under the prior (teacher-forced, nats); and the share of its brain
   pixels above the pixel threshold;
2. per scan, the median of each over its slices: a lesion in a minority of the slices moves it
   little, a different contrast, resolution or intensity scale moves every slice;
3. each against the same statistic of the calibration slices, by conformal p-values:
   p = (1 + #{calibration slices with a value >= the scan's}) / (n + 1) for the flagged share
   (only more flagging is a problem), and twice the smaller of that and the same count with <=
   for the NLL (a scan can also be too likely: a blurred or low-contrast scan is made of the
   prior's most common, smooth codes, as an inverted T1 was for a small model);
4. a warning when either p is below SHIFT_P (a calibration needs at least 2 / SHIFT_P - 1 slices
   for the two-sided one to be able to fire).

What it assumes and does not promise: the scan's median slice stands in for one healthy slice,
so a healthy scan of the calibration's kind warns with probability at most about SHIFT_P per
statistic (less, since a median over slices is less extreme than one slice). It is a screen, not
a test of exchangeability: a shift that leaves both statistics alone passes it, and a scan whose
lesions fill most of its slices warns (rightly: its healthy tissue cannot be told apart).
"""

from __future__ import annotations

import numpy as np

from brainvq.evaluation.conformal import flagged_share

SHIFT_P = 0.01
BRAIN_CELL_SHARE = 0.5


def brain_cells(foreground: np.ndarray, downsample: int) -> np.ndarray:
    """(N, H, W) bool brain pixels -> (N, h, w) bool latent cells at least half brain."""
    n, h, w = foreground.shape
    cells = foreground.reshape(n, h // downsample, downsample, w // downsample, downsample)
    return cells.mean(axis=(2, 4)) >= BRAIN_CELL_SHARE


def slice_nll_medians(nll: np.ndarray, foreground: np.ndarray, downsample: int) -> np.ndarray:
    """(N,) float64: each slice's median code NLL over its brain cells (NaN without any).

    nll: (N, h, w) nats; foreground: (N, H, W) bool."""
    cells = brain_cells(foreground, downsample)
    return np.array(
        [float(np.median(v[c])) if c.any() else np.nan for v, c in zip(nll, cells, strict=True)]
    )


def slice_flagged_shares(maps: np.ndarray, foreground: np.ndarray, threshold: float) -> np.ndarray:
    """(N,) float64: the share of each slice's brain pixels whose map is above `threshold`."""
    values = np.asarray(maps)[foreground]
    counts = foreground.reshape(len(foreground), -1).sum(axis=1)
    return flagged_share(values, counts, threshold)


def p_value(calibration: np.ndarray, value: float, two_sided: bool = False) -> float:
    """(1 + #{calibration >= value}) / (n + 1) over the finite calibration values; two-sided:
    twice the smaller of that and (1 + #{calibration <= value}) / (n + 1), at most 1."""
    c = np.asarray(calibration, dtype=np.float64)
    c = c[np.isfinite(c)]
    upper = (1 + np.sum(c >= value)) / (len(c) + 1)
    if not two_sided:
        return float(upper)
    lower = (1 + np.sum(c <= value)) / (len(c) + 1)
    return float(min(1.0, 2 * min(upper, lower)))


def shift_check(
    calibration_nll: np.ndarray,
    calibration_flagged: np.ndarray,
    scan_nll: np.ndarray,
    scan_flagged: np.ndarray,
) -> dict:
    """Steps 2-4 for one scan: calibration_* (n,) per calibration slice, scan_* (m,) per slice of
    the scan. Returns {warn, p_nll, p_flagged, median_nll, median_flagged, calibration medians}."""
    nll = float(np.nanmedian(scan_nll)) if np.isfinite(scan_nll).any() else float("inf")
    flagged = float(np.median(scan_flagged))
    p_nll = p_value(calibration_nll, nll, two_sided=True)
    p_flagged = p_value(calibration_flagged, flagged)
    return {
        "warn": bool(min(p_nll, p_flagged) < SHIFT_P),
        "p_nll": round(p_nll, 4),
        "p_flagged": round(p_flagged, 4),
        "median_code_nll": round(nll, 4),
        "median_flagged_share": round(flagged, 5),
        "calibration_median_code_nll": round(float(np.nanmedian(calibration_nll)), 4),
        "calibration_median_flagged_share": round(float(np.median(calibration_flagged)), 5),
        "threshold_p": SHIFT_P,
    }
