"""Slice and scan decisions that follow the anomaly map, each with its own stated rate.

The map marks pixels above the calibrated pixel threshold (brainvq.evaluation.conformal). The
decisions say which slices and which scans hold more of that than healthy ones do:

1. The slice score (SLICE_SCORE, `largest_flagged_area`): the largest 8-connected region of the
   slice's brain pixels above the pixel threshold, as a share of the slice's brain. A lesion
   that the map marks is one region however faint its peak; healthy false positives are
   scattered specks and small blobs. (A run calibrated before this keeps its earlier score,
   LEGACY_SCORE: the mean of the map's top `score_share` of pixels, which a few bright healthy
   pixels could outscore a marked lesion with.)
2. The slice's conformal p-value against the calibration slices' scores at the same pixel
   threshold (brainvq.evaluation.conformal.conformal_p_values); the slice is flagged when
   p <= alpha, the same as its score being above the slice threshold. For a healthy slice
   exchangeable with the calibration slices, P(flagged) <= alpha.
3. The scan: Simes' combination of its m slices' p-values, p_scan = min_k m p_(k) / k (p_(k)
   the k-th smallest; `simes`), flagged when p_scan <= scan_alpha. For a healthy scan,
   P(flagged) <= scan_alpha when its slices' p-values are valid and independent or positively
   dependent (PRDS: Simes 1986; Sarkar 1998). Conformal p-values that share one calibration set
   are PRDS (Bates et al., Annals of Statistics 2023), and a scan's slices share a subject and a
   scanner, which moves their scores together rather than apart; Bonferroni (m min p) would need
   no assumption at all but gives up the power of several slices that are each a little
   unusual, which is what a lesion through adjacent slices looks like. Each slice's p-value is
   valid on average over levels; a scan whose levels are a band of the calibration's is assumed
   to be like them. Because a p-value is at least 1 / (n + 1) with n calibration slices, one
   slice alone can flag a scan of m slices only when m / (n + 1) <= scan_alpha; several slices
   together need less.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from brainvq.inference.anomaly_maps import slice_scores as top_share_scores
from brainvq.run_config import AnomalyConfig

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def largest_flagged_area(
    maps: np.ndarray, foreground: np.ndarray, pixel_threshold: float
) -> np.ndarray:
    """(N,) float64: per slice, the largest 8-connected region of brain pixels whose map is
    above pixel_threshold, as a share of its brain pixels (0 without brain).

    maps: (N, H, W) float; foreground: (N, H, W) bool."""
    out = np.zeros(len(maps))
    for i, (amap, brain) in enumerate(zip(maps, foreground, strict=True)):
        above = (amap > pixel_threshold) & brain  # (H, W)
        if above.any():
            regions, _ = ndimage.label(above, EIGHT_CONNECTED)
            out[i] = np.bincount(regions.ravel())[1:].max() / brain.sum()
    return out


def _legacy(maps, foreground, pixel_threshold, settings: AnomalyConfig) -> np.ndarray:
    return top_share_scores(maps, settings.score_share)


def _largest(maps, foreground, pixel_threshold, settings: AnomalyConfig) -> np.ndarray:
    return largest_flagged_area(maps, foreground, pixel_threshold)


LEGACY_SCORE = "top_share_mean"
SLICE_SCORE = "largest_flagged_area"
SLICE_SCORES: dict[str, Callable[..., np.ndarray]] = {
    LEGACY_SCORE: _legacy,
    SLICE_SCORE: _largest,
}


def slice_scores(
    name: str,
    maps: np.ndarray,
    foreground: np.ndarray,
    pixel_threshold: float,
    settings: AnomalyConfig,
) -> np.ndarray:
    """(N,) float64: the slice score `name` (SLICE_SCORES) of maps (N, H, W) with brain masks
    (N, H, W) at the pixel threshold."""
    if name not in SLICE_SCORES:
        raise ValueError(f"slice score {name!r}: expected one of {', '.join(SLICE_SCORES)}")
    return np.asarray(SLICE_SCORES[name](maps, foreground, pixel_threshold, settings), np.float64)


def simes(p_values: np.ndarray) -> float:
    """Simes' combined p-value of m p-values: min over k of m p_(k) / k (1.0 for none)."""
    p = np.sort(np.asarray(p_values, dtype=np.float64))
    if len(p) == 0:
        return 1.0
    return float(min(1.0, np.min(len(p) * p / np.arange(1, len(p) + 1))))


def slices_needed(m: int, n_calibration: int, scan_alpha: float) -> int:
    """The fewest of a scan's m slices that, each scoring above all n_calibration slices (the
    smallest conformal p-value, 1 / (n + 1)), flag it by Simes at scan_alpha:
    ceil(m / ((n + 1) scan_alpha)), at least 1. Above 1, no single slice can flag the scan,
    however strongly it is marked."""
    need = m / ((n_calibration + 1) * scan_alpha)
    return max(1, math.ceil(need - 1e-9))


def bonferroni(p_values: np.ndarray) -> float:
    """Bonferroni's combined p-value of m p-values: m min p, at most 1 (1.0 for none)."""
    p = np.asarray(p_values, dtype=np.float64)
    return 1.0 if len(p) == 0 else float(min(1.0, len(p) * p.min()))
