"""Which slice lies below which: the pairs a prior with the neighbour trains and is scored on.

Slices belong to a group (a subject of the slice set, a volume of `brainvq anomaly`) and sit at
a level; the slice below slice i is the slice of the same group one level lower (OASIS:
`case_<subject>_slice_<k - 1>`; volumes: the adjacent slice in the reference frame). A slice
whose level is the lowest of its group, or whose level - 1 is missing, has none.
"""

from __future__ import annotations

import numpy as np

from brainvq.inference.codes import CodeSet
from brainvq.models.neighbour_map import NO_SLICE


def below_rows(group: np.ndarray, level: np.ndarray) -> np.ndarray:
    """group: (N,) subject or volume ids (any comparable type); level: (N,) integer levels ->
    (N,) int64: the row of the slice below each slice, -1 where there is none. ValueError when
    two slices of one group share a level (naming the group and the level)."""
    group, level = np.asarray(group), np.asarray(level, dtype=np.int64)
    if group.shape != level.shape or group.ndim != 1:
        raise ValueError(
            f"group, level: expected two (N,) arrays, got {group.shape} and {level.shape}"
        )
    out = np.full(len(level), -1, dtype=np.int64)
    if not len(level):
        return out
    _, gid = np.unique(group, return_inverse=True)
    order = np.lexsort((level, gid))  # by group, then level
    g, lv = gid[order], level[order]
    same = (g[1:] == g[:-1]) & (lv[1:] == lv[:-1])
    if same.any():
        k = int(np.flatnonzero(same)[0])
        raise ValueError(
            f"group {str(group[order[k]])!r} has two slices at level {int(lv[k])}; "
            "a slice's neighbour below must be unique"
        )
    follows = (g[1:] == g[:-1]) & (lv[1:] == lv[:-1] + 1)
    out[order[1:][follows]] = order[:-1][follows]
    return out


def below_codes(codes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """codes: (M, h, w) code maps; rows: (N,) int64 rows into them, -1 for none -> (N, h, w)
    int64: each slice's code map below, NO_SLICE everywhere where there is none."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.full((len(rows), *codes.shape[1:]), NO_SLICE, dtype=np.int64)
    has = rows >= 0
    if has.any():
        out[has] = np.asarray(codes[rows[has]], dtype=np.int64)
    return out


def code_below_rows(codes: CodeSet) -> np.ndarray:
    """(N,) the row of each code map's slice below in the same split (-1: none), from the
    split's subjects and levels; ValueError when the code maps have no subjects."""
    if codes.subject is None:
        raise ValueError(
            f"the {codes.split} code maps have no subjects (made by an older brainvq); remove "
            "RUN/codes to encode them again"
        )
    return below_rows(codes.subject, codes.level)
