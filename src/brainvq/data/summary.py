"""What a SliceSet holds, per split: the numbers behind `brainvq data inspect`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from rich import box
from rich.table import Table

from brainvq.data.sliceset import SPLITS, SliceSet

STATS_CHUNK = 4096  # slices per step of the mean and std


def _per_subject(subjects: np.ndarray) -> str:
    """Slices per subject as "32" when all subjects have the same count, else "min-max"."""
    _, counts = np.unique(subjects, return_counts=True)
    lo, hi = int(counts.min()), int(counts.max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _mean_std(images: np.ndarray, rows: np.ndarray) -> tuple[float, float]:
    """Mean and std of images[rows] in [0, 1], STATS_CHUNK slices at a time (a split of a
    store larger than memory is never read whole)."""
    total = squares = 0.0
    for start in range(0, len(rows), STATS_CHUNK):
        chunk = np.asarray(images[rows[start : start + STATS_CHUNK]], dtype=np.float64) / 255.0
        total += float(chunk.sum())
        squares += float(np.square(chunk).sum())
    count = len(rows) * int(np.prod(images.shape[1:]))
    mean = total / count
    return mean, math.sqrt(max(squares / count - mean * mean, 0.0))


def summarize(sliceset: SliceSet) -> list[dict[str, Any]]:
    """One row per split (train, validate, test), in that order.

    Keys: split, present (bool), images, subjects, slices_per_subject (str), size (int, the
    working size), mean and std (intensity in [0, 1]; None for a missing split), levels
    (number of slice levels, 0 if unknown) and notes (list of str; a missing split says so).
    """
    rows = []
    for split in SPLITS:
        mask = sliceset.split == split
        present = split in sliceset.splits_present and bool(mask.any())
        row: dict[str, Any] = {
            "split": split,
            "present": present,
            "images": int(mask.sum()),
            "subjects": 0,
            "slices_per_subject": "-",
            "size": sliceset.size,
            "mean": None,
            "std": None,
            "levels": 0,
            "notes": [],
        }
        if not present:
            row["notes"].append("MISSING")
            rows.append(row)
            continue
        levels = sliceset.level[mask]
        row["subjects"] = int(len(np.unique(sliceset.subject[mask])))
        row["slices_per_subject"] = _per_subject(sliceset.subject[mask])
        row["mean"], row["std"] = _mean_std(sliceset.images, np.flatnonzero(mask))
        row["levels"] = int(len(np.unique(levels))) if (levels >= 0).all() else 0
        if (levels < 0).any():
            row["notes"].append("slice index unknown")
        rows.append(row)
    return rows


def format_summary(
    rows: Sequence[dict[str, Any]], title: str | None = None, notes: Sequence[str] = ()
) -> Table:
    """A rich Table of `summarize` rows; `notes` (the source's notes) go in the caption."""
    table = Table(
        title=title,
        caption="\n".join(f"note: {n}" for n in notes) or None,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("split", no_wrap=True)
    for name in ("images", "subjects", "per subj", "levels", "size", "mean", "std"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("notes", ratio=1, min_width=9)
    for r in rows:
        table.add_row(
            r["split"] if r["present"] else f"[red]{r['split']}[/red]",
            str(r["images"]),
            str(r["subjects"]),
            r["slices_per_subject"],
            str(r["levels"]) if r["levels"] else "-",
            str(r["size"]),
            _number(r["mean"]),
            _number(r["std"]),
            "; ".join(r["notes"]),
        )
    return table
