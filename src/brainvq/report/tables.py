"""Metrics as text: nested metric dicts -> sections of (name, formatted value) rows.

A metrics dict such as `{"vqvae": {"ssim": 0.91, ...}, "prior": {...}, "seed": 0}` becomes one
section per nested dict (deeper dicts are flattened with "/"), plus a first, unnamed section for
top-level values. Floats are shown to 4 significant digits. The HTML report's "All metrics"
section is built from them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

Section = tuple[str, list[tuple[str, str]]]
MAX_LISTED = 4  # longer sequences are summarised by count and mean


def format_value(value: Any) -> str:
    """A metric value as text: floats to 4 significant digits, arrays summarised."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return str(v) if math.isinf(v) or math.isnan(v) else f"{v:.4g}"
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value)
        if arr.size <= MAX_LISTED or not np.issubdtype(arr.dtype, np.number):
            return "[" + ", ".join(format_value(v) for v in arr.ravel().tolist()) + "]"
        return f"{arr.size} values, mean {format_value(float(arr.mean()))}"
    if value is None:
        return "-"
    return str(value)


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows.extend(_flatten(value, prefix=f"{name}/"))
        else:
            rows.append((name, format_value(value)))
    return rows


def metric_sections(metrics: Mapping[str, Any]) -> list[Section]:
    """[("", top-level rows), (key, rows of metrics[key]) for each nested dict]."""
    if not isinstance(metrics, Mapping):
        raise ValueError(f"metrics must be a dict, got {type(metrics).__name__}")
    top = {k: v for k, v in metrics.items() if not isinstance(v, Mapping)}
    sections: list[Section] = [("", _flatten(top))] if top else []
    sections += [(str(k), _flatten(v)) for k, v in metrics.items() if isinstance(v, Mapping)]
    return sections
