"""Thresholds with a stated false-positive rate, from healthy calibration data (split conformal).

Both thresholds come from n healthy calibration slices and promise a rate for a new healthy
slice that is exchangeable with them (drawn from the same distribution, in an order that does
not matter: for example a random slice of a new subject from the same scanner and protocol as
the calibration subjects). Neither promise needs the maps to be good; a poor map only flags
lesions less often.

- Slice threshold (split conformal, Vovk et al. 2005; Lei et al. 2018): q = the
  ceil((n + 1)(1 - alpha))-th smallest of the n calibration scores. A new healthy slice then
  scores above q with probability at most alpha (and at least alpha - 1 / (n + 1) when scores do
  not tie). Its conformal p-value, p = (1 + #{calibration scores >= its score}) / (n + 1), is
  <= alpha exactly when its score is above q, and P(p <= u) <= u for every u: a valid p-value
  that tests of several slices (brainvq.evaluation.anomaly_decisions) can combine.
- Pixel threshold (conformal risk control, Angelopoulos et al., ICLR 2024, the same (n + 1)
  correction for a loss in [0, 1] instead of an indicator): the loss of a slice at threshold t is
  the share of its brain pixels whose map value is above t, which only falls as t grows. t is the
  smallest value with (sum of the n calibration losses + 1) / (n + 1) <= alpha, so that the
  expected share of a new healthy slice's brain pixels flagged is at most alpha. This is a
  promise about the share per slice on average over healthy slices, not about every slice, and
  pixels of one slice need not be independent: the slices are the exchangeable units.

Both need alpha >= 1 / (n + 1): with fewer calibration slices no threshold can promise the rate
(`check_rate`).
"""

from __future__ import annotations

import math

import numpy as np


def check_rate(alpha: float, n: int, what: str = "calibration") -> None:
    """ValueError unless alpha is a rate in (0, 1) that n calibration slices can promise."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"alpha: expected a rate in (0, 1), got {alpha!r}")
    if n < 1:
        raise ValueError(f"{what}: expected at least one calibration slice, got none")
    if alpha * (n + 1) < 1:
        raise ValueError(
            f"alpha {alpha}: a false-positive rate this small needs at least "
            f"{math.ceil(1 / alpha - 1)} healthy calibration slices, got {n}; use a larger alpha "
            "or calibrate on more slices"
        )


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The split-conformal threshold of n calibration scores: the ceil((n + 1)(1 - alpha))-th
    smallest. P(new score > threshold) <= alpha for a new score exchangeable with them.

    scores: (n,) float, finite.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or not np.isfinite(scores).all():
        raise ValueError(f"scores: expected a 1D array of finite numbers, got shape {scores.shape}")
    check_rate(alpha, len(scores), "scores")
    k = math.ceil((len(scores) + 1) * (1 - alpha))  # in [1, n] by check_rate
    return float(np.partition(scores, k - 1)[k - 1])


def conformal_p_values(calibration: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(m,) float64: each score's p-value (1 + #{calibration >= score}) / (n + 1), in
    [1 / (n + 1), 1]. calibration: (n,) finite scores of healthy slices; scores: (m,)."""
    calibration = np.sort(np.asarray(calibration, dtype=np.float64))
    if calibration.ndim != 1 or not np.isfinite(calibration).all() or not len(calibration):
        raise ValueError(
            f"calibration: expected a non-empty 1D array of finite scores, got shape "
            f"{calibration.shape}"
        )
    scores = np.asarray(scores, dtype=np.float64)
    at_least = len(calibration) - np.searchsorted(calibration, scores, side="left")  # (m,)
    return (1 + at_least) / (len(calibration) + 1)


def risk_control_threshold(values: np.ndarray, counts: np.ndarray, alpha: float) -> float:
    """The pixel threshold t of conformal risk control for the loss "share of a slice's brain
    pixels with a map value above t".

    values: (P,) float, the map values of the brain pixels of n calibration slices, slice after
    slice; counts: (n,) int, how many of them belong to each slice (0 for a slice without brain:
    its loss is 0). Returns the smallest t among the values with
    (sum_i share_i(t) + 1) / (n + 1) <= alpha; flag a pixel when its value is > t.
    """
    values = np.asarray(values, dtype=np.float64)
    counts = np.asarray(counts)
    if counts.ndim != 1 or not np.issubdtype(counts.dtype, np.integer) or (counts < 0).any():
        raise ValueError(f"counts: expected (n,) non-negative integers, got {counts.dtype}")
    if values.ndim != 1 or len(values) != int(counts.sum()):
        raise ValueError(
            f"values: expected ({int(counts.sum())},) map values (the sum of counts), "
            f"got shape {values.shape}"
        )
    if not np.isfinite(values).all():
        raise ValueError("values: expected finite map values")
    n = len(counts)
    check_rate(alpha, n, "counts")
    budget = alpha * (n + 1) - 1  # the largest sum of calibration losses allowed, >= 0
    if len(values) == 0:
        return 0.0
    weights = np.repeat(1.0 / np.maximum(counts, 1), counts)  # (P,) each slice sums to 1
    order = np.argsort(-values, kind="stable")
    v, cum = values[order], np.cumsum(weights[order])  # v descending
    # at t = v[k] the pixels flagged are those strictly above v[k]: the ones before its first tie
    first = np.searchsorted(-v, -v, side="left")  # (P,)
    loss = np.where(first > 0, cum[np.maximum(first - 1, 0)], 0.0)  # (P,) non-decreasing in k
    # rounding in the cumulative sum must not turn an allowed loss into a forbidden one
    feasible = np.nonzero(loss <= budget + 1e-9 * max(1.0, n))[0]
    return float(v[feasible[-1]])  # feasible[0] == 0 always: nothing is above the maximum


def flagged_share(values: np.ndarray, counts: np.ndarray, threshold: float) -> np.ndarray:
    """Per slice, the share of its brain pixels whose value is > threshold: (n,) float64.

    values, counts as in risk_control_threshold; a slice without brain pixels has share 0."""
    counts = np.asarray(counts)
    above = np.asarray(values) > threshold  # (P,)
    slice_of = np.repeat(np.arange(len(counts)), counts)  # (P,)
    flagged = np.bincount(slice_of, weights=above.astype(np.float64), minlength=len(counts))
    return flagged / np.maximum(counts, 1)
