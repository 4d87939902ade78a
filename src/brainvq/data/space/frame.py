"""Frame: the grid a run's slices lie on, with an affine into the reference space (MNI mm).

A slice pixel (row, column) of level k is the reference point `affine @ (row, column, k, 1)`,
for pixel indices at the frame's base size (128 x 128); other working sizes cover the same square
(`Frame.affine_at`). Rows run along x (left -> right), columns along y (posterior -> anterior,
anterior on the right of a picture), levels along z (inferior -> superior), as in the OASIS PNGs.

The OASIS slice set's frame was measured (benchmarks/measure_oasis_frame.py): each of 150
training subjects' 32 slices, stacked, was registered to the template (12-parameter affine,
Mattes mutual information); the frame is the mean affine and `level_sd_mm` the spread of each
level's height over the subjects. Its levels are 1.03 mm apart, from z = -2.7 mm (level 0, the
top of the thalamus) to z = +29.3 mm (level 31, the bodies of the lateral ventricles: the table's
`level_z_mm`, oasis_frame.json), and its planes are tilted about 4 degrees from MNI's axial
planes (OASIS is AC-PC aligned, MNI is not quite); docs/scans.md has the measurement and its
check on the validate subjects. The template is left-right symmetric, so whether OASIS's rows
run left -> right or right -> left cannot be measured; brainvq takes left -> right.

The demo cohort is rendered on this frame, and NIfTI volumes are resampled onto it (or onto the
same grid over a wider range of levels, `Frame.spanning`), so level k is the same anatomy in
every run.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BASE_SIZE = 128
OASIS_FRAME_FILE = Path(__file__).with_name("oasis_frame.json")


@dataclass(frozen=True)
class Frame:
    """affine: (4, 4) (row, column, level, 1) at BASE_SIZE pixels -> MNI mm; n_levels: levels
    0..n_levels-1; source: where the frame comes from; level_sd_mm: () or (n_levels,) measured
    spread of each level's height (mm) over the subjects it was measured on."""

    affine: tuple[tuple[float, ...], ...]
    n_levels: int
    source: str
    level_sd_mm: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        matrix = np.asarray(self.affine, dtype=np.float64)
        if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
            raise ValueError(f"frame affine: expected a finite 4x4 matrix, got {self.affine!r}")
        if abs(np.linalg.det(matrix[:3, :3])) < 1e-6:
            raise ValueError("frame affine: the matrix is singular")
        if self.n_levels < 1:
            raise ValueError(f"frame n_levels: expected >= 1, got {self.n_levels}")
        if self.level_sd_mm and len(self.level_sd_mm) != self.n_levels:
            raise ValueError(
                f"frame level_sd_mm: expected {self.n_levels} values, got {len(self.level_sd_mm)}"
            )

    @property
    def matrix(self) -> np.ndarray:
        """(4, 4) float64: the affine at BASE_SIZE."""
        return np.asarray(self.affine, dtype=np.float64)

    def affine_at(self, size: int) -> np.ndarray:
        """(4, 4): pixel (row, column) of a size x size slice, level -> MNI mm. Pixel centres
        keep their place: pixel r at `size` covers the same square as at BASE_SIZE."""
        s = BASE_SIZE / size
        pixels = np.array(
            [[s, 0, 0, s / 2 - 0.5], [0, s, 0, s / 2 - 0.5], [0, 0, 1, 0], [0, 0, 0, 1]]
        )
        return self.matrix @ pixels

    def pixel_mm(self, size: int) -> tuple[float, float]:
        """Millimetres per pixel along rows and columns at `size`."""
        a = self.affine_at(size)
        return float(np.linalg.norm(a[:3, 0])), float(np.linalg.norm(a[:3, 1]))

    @property
    def level_spacing_mm(self) -> float:
        """Millimetres between consecutive levels (along the level axis)."""
        return float(np.linalg.norm(self.matrix[:3, 2]))

    def level_z(self, levels: np.ndarray | list[float]) -> np.ndarray:
        """Height (MNI z, mm) of the centre of each level (fractional levels allowed)."""
        k = np.asarray(levels, dtype=np.float64)
        centre = (BASE_SIZE - 1) / 2
        m = self.matrix
        return m[2, 0] * centre + m[2, 1] * centre + m[2, 2] * k + m[2, 3]

    def points(self, size: int, levels: np.ndarray | list[float]) -> np.ndarray:
        """(3, L, size, size) MNI mm of every pixel of the given levels (fractional allowed)."""
        k = np.asarray(levels, dtype=np.float64)
        r, c = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size), indexing="ij")
        a = self.affine_at(size)
        grid = np.stack([r, c, np.ones_like(r)])  # (3, S, S): row, column, 1
        in_plane = np.einsum("ij,jrc->irc", a[:3, [0, 1, 3]], grid)  # (3, S, S)
        return in_plane[:, None] + a[:3, 2][:, None, None, None] * k[None, :, None, None]

    def to_grid(self, points_mm: np.ndarray, size: int) -> np.ndarray:
        """(3, ...) MNI mm -> (3, ...) continuous (row, column, level) at `size`."""
        inv = np.linalg.inv(self.affine_at(size))
        flat = points_mm.reshape(3, -1)
        return (inv[:3, :3] @ flat + inv[:3, 3:4]).reshape(points_mm.shape)

    def resampled(self, n_levels: int) -> Frame:
        """The same band of anatomy (level 0 to the last level) in n_levels evenly spaced levels."""
        if n_levels == self.n_levels:
            return self
        step = (self.n_levels - 1) / (n_levels - 1) if n_levels > 1 else 0.0
        m = self.matrix.copy()
        m[:, 2] *= step if n_levels > 1 else 1.0
        if n_levels == 1:  # one level: the middle of the band
            m[:3, 3] += self.matrix[:3, 2] * (self.n_levels - 1) / 2
        sd = ()
        if self.level_sd_mm:
            sd = tuple(
                float(v)
                for v in np.interp(
                    np.arange(n_levels) * step, np.arange(self.n_levels), self.level_sd_mm
                )
            )
        return Frame(_tuple(m), n_levels, f"{self.source}, {n_levels} levels", sd)

    def spanning(self, z_low: float, z_high: float) -> Frame:
        """The frame's grid, extended or cut to the levels whose centre lies in [z_low, z_high]
        mm, level 0 lowest; ValueError when no level does."""
        z0, dz = float(self.level_z([0])[0]), float(self.level_z([1])[0] - self.level_z([0])[0])
        if dz <= 0:
            raise ValueError("frame: its levels do not rise along z")
        first = math.ceil((z_low - z0) / dz - 1e-9)
        last = math.floor((z_high - z0) / dz + 1e-9)
        if last < first:
            raise ValueError(
                f"z range [{z_low}, {z_high}] mm holds no level of the frame (levels every "
                f"{dz:.2f} mm from z = {z0:.2f} mm)"
            )
        m = self.matrix.copy()
        m[:3, 3] += first * m[:3, 2]
        return Frame(_tuple(m), last - first + 1, f"{self.source}, z {z_low} to {z_high} mm")

    def level_offset(self, inner: Frame) -> int:
        """The level of this frame that `inner`'s level 0 is, where `inner` is the same grid
        over a range inside this one (OASIS's band in a whole-brain frame: band level k is
        level k + offset here), so that sources sliced on either can train one run.

        ValueError, naming both frames, when they are not one grid (another pixel square,
        level direction or spacing, or a shift that is not a whole number of levels) or when
        `inner`'s levels do not all lie within this frame's."""
        outer, mine = self.matrix, inner.matrix
        shift = np.linalg.lstsq(outer[:3, 2:3], (mine - outer)[:3, 3], rcond=None)[0][0]
        offset = round(float(shift))
        same = np.allclose(mine[:3, :3], outer[:3, :3], atol=1e-6) and np.allclose(
            mine[:3, 3], outer[:3, 3] + offset * outer[:3, 2], atol=1e-3
        )
        if not same:
            raise ValueError(
                f"frames disagree: {inner.source!r} is not on the grid of {self.source!r} "
                "(expected the same pixels and levels, shifted by a whole number of levels)"
            )
        if offset < 0 or offset + inner.n_levels > self.n_levels:
            raise ValueError(
                f"frames disagree: the levels of {inner.source!r} ({offset} to "
                f"{offset + inner.n_levels - 1} here) leave {self.source!r} (0 to "
                f"{self.n_levels - 1})"
            )
        return offset

    def to_dict(self) -> dict[str, Any]:
        return {
            "affine": [list(row) for row in self.affine],
            "n_levels": self.n_levels,
            "source": self.source,
            "level_sd_mm": list(self.level_sd_mm),
            "level_z_mm": [round(float(z), 3) for z in self.level_z(np.arange(self.n_levels))],
            "pixel_mm_at_base_size": [round(v, 4) for v in self.pixel_mm(BASE_SIZE)],
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Frame:
        """The inverse of to_dict (derived keys ignored); ValueError naming a missing key."""
        for key in ("affine", "n_levels", "source"):
            if key not in doc:
                raise ValueError(f"frame: missing key {key!r}")
        affine = np.asarray(doc["affine"], dtype=np.float64)
        return cls(
            _tuple(affine),
            int(doc["n_levels"]),
            str(doc["source"]),
            tuple(float(v) for v in doc.get("level_sd_mm", [])),
        )


def _tuple(matrix: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in np.asarray(matrix))


@functools.lru_cache(maxsize=1)
def _oasis_table() -> dict[str, Any]:
    return json.loads(OASIS_FRAME_FILE.read_text(encoding="utf-8"))


def oasis_frame() -> Frame:
    """The measured frame of the OASIS slice set (OASIS_FRAME_FILE, see the module docstring)."""
    return Frame.from_dict(_oasis_table()["frame"])


def oasis_intensity() -> dict[str, Any]:
    """The OASIS training subjects' intensity landmarks on their frame: {values, peak}."""
    return dict(_oasis_table()["intensity_landmarks"])
