"""Does a calibration apply to a scan? What differs from the calibration slices, by how much, and
whether the stated false-positive rate is at risk.

The thresholds' guarantee (brainvq.evaluation.conformal) holds for slices exchangeable with the
calibration slices. A scan from another scanner, protocol or preprocessing is not, yet most such
scans are still answered well: what matters to a user is whether its healthy tissue flags more
than the calibration allows. The check, per scan (its slices on the run's frame):

1. What differs, each a number reported with the calibration's own (none decides alone):
   - contrast: the Wasserstein-1 distance between the scan's standardised brain intensities
     and the calibration slices' at the same levels, in units of the intensity range [0, 1]
     (`SliceStatistics.histograms`, `histogram_distance`);
   - noise: the median over slices of a robust noise estimate (Immerkaer 1996: the mean
     absolute response of a difference of two Laplacians inside the eroded brain, times
     sqrt(pi / 2) / 6; `noise_levels`), as a ratio to the calibration slices' median;
   - likelihood: the median over slices of each slice's median code NLL over its brain codes
     (latent cells at least half brain; `slice_nll_medians`), with a two-sided conformal
     p-value against the calibration slices' at the same levels (a whole-brain run's levels
     differ: the cerebellum's codes are not the vertex's, and a scan cut to part of the brain
     is compared with that part);
   - flagging: the share of each slice's brain pixels above the pixel threshold.
   (The scan's voxel size against the run's frame is the app's to add: it knows the scan.)
2. The warning, only where the stated rate is at risk. A slice "flags more than the calibration
   allows" when its flagged share is above the split-conformal (1 - EXCESS_RATE) quantile of
   the calibration slices' shares: for a healthy slice exchangeable with them this happens with
   probability at most EXCESS_RATE. The scan is warned when more than WARN_SHARE of its slices
   do. A lesion in a minority of the slices cannot trigger it alone (it would need more than
   WARN_SHARE - EXCESS_RATE of them), a contrast, noise or scale that the maps mistake for
   lesions everywhere does.
3. Notes, not warnings: a median NLL outside the calibration's (two-sided p < SHIFT_P). Lower
   ("too likely": smoother, blurrier or lower in contrast than the training slices) means
   lesions may be missed, not that healthy tissue is flagged; higher without more flagging
   means the scan is unlike the training slices yet its healthy tissue is not flagged more.

What it assumes and promises: on healthy scans of the calibration's kind, the expected number
of slices above the quantile is at most EXCESS_RATE times the slices, so by Markov's inequality
a scan is warned with probability at most EXCESS_RATE / WARN_SHARE (0.1), however strongly its
slices depend on each other (far less if they were independent). It is a screen for the one
shift that breaks the promise users read (more flagging), not a test of exchangeability: a
scan that is unlike the calibration but flags as little is told how it differs and left
unwarned; a scan whose lesions fill most of its slices is warned (its healthy tissue cannot be
told apart). The calibration needs at least 1 / EXCESS_RATE - 1 slices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from brainvq.evaluation.conformal import conformal_quantile, flagged_share

SHIFT_P = 0.01  # two-sided p-value of the median code NLL below which a note is given
EXCESS_RATE = 0.05  # a slice flags "more than allowed" above this upper quantile of the shares
WARN_SHARE = 0.5  # warn when more than this share of a scan's slices do
BRAIN_CELL_SHARE = 0.5
HISTOGRAM_BINS = 32  # of standardised brain intensities in [0, 1]
NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)


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


def brain_histograms(images: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """(N, HISTOGRAM_BINS) int64: each slice's brain intensities (uint8 -> [0, 1]) counted in
    equal bins."""
    bins = (np.asarray(images, dtype=np.int64) * HISTOGRAM_BINS) // 256  # (N, H, W) in [0, B)
    out = np.zeros((len(bins), HISTOGRAM_BINS), dtype=np.int64)
    for i, (b, f) in enumerate(zip(bins, foreground, strict=True)):
        out[i] = np.bincount(b[f], minlength=HISTOGRAM_BINS)
    return out


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Wasserstein-1 distance between two intensity histograms (HISTOGRAM_BINS,) on [0, 1]:
    the area between their cumulative distributions (NaN when either is empty)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.sum() == 0 or b.sum() == 0:
        return float("nan")
    cdf_a, cdf_b = np.cumsum(a) / a.sum(), np.cumsum(b) / b.sum()
    return float(np.abs(cdf_a - cdf_b).sum() / HISTOGRAM_BINS)


def noise_levels(images: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """(N,) float64: each slice's noise standard deviation in intensity units [0, 1] (Immerkaer
    1996, over the brain eroded by two pixels so that the 3 x 3 kernel sees no edge of it; NaN
    without such pixels)."""
    out = np.full(len(images), np.nan)
    for i, (image, brain) in enumerate(zip(images, foreground, strict=True)):
        inner = ndimage.binary_erosion(brain, iterations=2)
        if inner.any():
            response = ndimage.convolve(image.astype(np.float64) / 255.0, NOISE_KERNEL)
            out[i] = np.sqrt(np.pi / 2) / 6 * float(np.abs(response[inner]).mean())
    return out


@dataclass(frozen=True)
class SliceStatistics:
    """What the check reads of N slices: levels (N,) int64 (-1: unknown); nll_medians (N,)
    nats; histograms (N, HISTOGRAM_BINS) int64 of brain intensities; noise (N,) intensity units.
    A calibration made before histograms and noise were kept has them None."""

    levels: np.ndarray
    nll_medians: np.ndarray
    histograms: np.ndarray | None = None
    noise: np.ndarray | None = None

    @classmethod
    def of(cls, images, foreground, nll, levels, downsample: int) -> SliceStatistics:
        """From slices (N, H, W) uint8, their brain masks (N, H, W) bool, code NLL maps
        (N, h, w) and levels (N,) or None."""
        n = len(images)
        return cls(
            levels=np.full(n, -1, np.int64) if levels is None else np.asarray(levels, np.int64),
            nll_medians=slice_nll_medians(nll, foreground, downsample),
            histograms=brain_histograms(images, foreground),
            noise=noise_levels(images, foreground),
        )


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


def _median(x: np.ndarray | None) -> float:
    x = np.asarray(x, dtype=np.float64) if x is not None else np.array([])
    x = x[np.isfinite(x)]
    return float(np.median(x)) if len(x) else float("nan")


def shift_check(
    calibration: SliceStatistics,
    calibration_flagged: np.ndarray,
    scan: SliceStatistics,
    scan_flagged: np.ndarray,
) -> dict:
    """Steps 1-3 of the module docstring for one scan: calibration_flagged (n,) and
    scan_flagged (m,) the flagged shares of the calibration's and the scan's slices. Returns
    {warn, notes, flagging: {...}, likelihood: {...}, contrast: {...}, noise: {...}}."""
    cal_flagged = np.asarray(calibration_flagged, dtype=np.float64)
    notes = []
    if (len(cal_flagged) + 1) * EXCESS_RATE >= 1:
        limit = conformal_quantile(cal_flagged, EXCESS_RATE)
    else:
        limit = float("inf")
        notes.append(
            f"too few calibration slices ({len(cal_flagged)}) to judge its flagging: at least "
            f"{int(np.ceil(1 / EXCESS_RATE - 1))} are needed"
        )
    flagged = np.asarray(scan_flagged, dtype=np.float64)
    over = int(np.sum(flagged > limit))
    m = len(flagged)
    warn = bool(m > 0 and over > WARN_SHARE * m)
    same = np.isin(calibration.levels, scan.levels)
    same = same if same.any() else np.ones(len(same), bool)
    nll = _median(scan.nll_medians)
    cal_nlls = calibration.nll_medians[same]
    p_nll = p_value(cal_nlls, nll, two_sided=True) if np.isfinite(nll) else 1.0
    cal_nll = _median(cal_nlls)
    if p_nll < SHIFT_P and not warn:
        if nll < cal_nll:
            notes.append(
                "more likely under the prior than the calibration slices (smoother or lower in "
                "contrast): lesions may be missed; healthy tissue is not flagged more"
            )
        else:
            notes.append(
                "less likely under the prior than the calibration slices, but its healthy "
                "tissue is not flagged more"
            )
    result = {
        "warn": warn,
        "notes": notes,
        "flagging": {
            "slices_over_limit": over,
            "slices": m,
            "warn_above": int(np.floor(WARN_SHARE * m)),
            "limit_share": round(float(limit), 5) if np.isfinite(limit) else None,
            "expected_over": round(EXCESS_RATE * m, 2),
            "median_share": round(float(np.median(flagged)) if m else 0.0, 5),
            "mean_share": round(float(flagged.mean()) if m else 0.0, 5),
            "calibration_mean_share": round(float(np.mean(calibration_flagged)), 5),
        },
        "likelihood": {
            "median_code_nll": round(nll, 4),
            "calibration_median_code_nll": round(cal_nll, 4),
            "p": round(p_nll, 4),
        },
    }
    if calibration.histograms is not None and scan.histograms is not None:
        reference = calibration.histograms[same].sum(axis=0)
        result["contrast"] = {
            "distance": round(histogram_distance(scan.histograms.sum(axis=0), reference), 4)
        }
    if calibration.noise is not None and scan.noise is not None:
        ours, theirs = _median(scan.noise), _median(calibration.noise)
        result["noise"] = {
            "sd": round(ours, 5),
            "calibration_sd": round(theirs, 5),
            "ratio": round(ours / theirs, 3) if theirs > 0 else float("nan"),
        }
    return result


def describe(check: dict) -> str:
    """One readable line of what differs and whether the calibration applies."""
    f, lik = check["flagging"], check["likelihood"]
    parts = []
    if "contrast" in check:
        parts.append(f"contrast {check['contrast']['distance']:.3f} from the calibration's")
    if "noise" in check:
        parts.append(f"noise {check['noise']['ratio']:.2f}x the calibration's")
    parts.append(
        f"median code NLL {lik['median_code_nll']:.2f} nats (calibration "
        f"{lik['calibration_median_code_nll']:.2f}, p {lik['p']:.3f})"
    )
    parts.append(
        f"{f['slices_over_limit']} of {f['slices']} slices flag more than {1 - EXCESS_RATE:.0%} "
        f"of calibration slices do (expected {f['expected_over']:.1f}, warned above "
        f"{f['warn_above']})"
    )
    verdict = "the calibration does NOT apply" if check["warn"] else "the calibration applies"
    return "; ".join(parts) + f": {verdict}"
