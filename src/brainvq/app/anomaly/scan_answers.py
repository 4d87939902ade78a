"""A scan's answer: its slices' decisions combined, and whether the calibration applies to it.

A scan is a NIfTI volume of the input, or, for 2D inputs, the slices of one subject
(`<subject>_slice_<k>` names, as OASIS has them). For each: the scan decision (Simes' combination
of its slices' p-values, brainvq.evaluation.anomaly_decisions) and the shift check
(brainvq.evaluation.calibration_shift) with, for a volume, its voxel size against the run's
frame and the share of its brain the run judges (brainvq.app.anomaly.coverage); one readable
line of them all (`ScanAnswer.line`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brainvq.app.anomaly.calibration_store import StoredCalibration
from brainvq.app.anomaly.coverage import Coverage, scan_coverage
from brainvq.data.slice_names import parse_subject_slice
from brainvq.data.space.align import AlignedScan
from brainvq.evaluation.anomaly_calibration import Calibration
from brainvq.evaluation.anomaly_decisions import simes, slices_needed
from brainvq.evaluation.calibration_shift import (
    SliceStatistics,
    describe,
    shift_check,
    slice_flagged_shares,
)
from brainvq.evaluation.conformal import flagged_share
from brainvq.inference.anomaly_maps import MapSet

SHIFT_WARNING = (
    "its healthy-looking tissue is flagged more than the calibration allows: the "
    "false-positive rates are NOT covered by the guarantee for it; calibrate on healthy scans "
    "like it: `brainvq anomaly calibrate --run RUN --healthy PATH`"
)


@dataclass(frozen=True)
class ScanAnswer:
    """name; rows: (m,) its slices among the input's, in level order; n_flagged: slices
    flagged; p: Simes' p-value of its slices' p-values; flagged: p <= scan_alpha;
    flagged_brain_share: of its brain pixels on the frame, in the mask; resolution: the voxel
    size against the frame's (volumes; else None); shift: the shift check's dict; coverage: the
    share of its brain the run judges (volumes; else None)."""

    name: str
    rows: np.ndarray
    n_flagged: int
    p: float
    flagged: bool
    scan_alpha: float
    flagged_brain_share: float
    resolution: dict | None
    shift: dict
    coverage: Coverage | None = None
    n_calibration: int = 0  # the calibration slices its slices' p-values count against

    @property
    def slices_needed(self) -> int:
        """anomaly_decisions.slices_needed: above 1, no single slice can flag this scan."""
        return slices_needed(len(self.rows), self.n_calibration, self.scan_alpha)

    @property
    def warn(self) -> bool:
        return bool(self.shift["warn"])

    def line(self) -> str:
        """One readable line: the decision, what differs, whether the calibration applies."""
        verdict = "scan flagged" if self.flagged else "scan not flagged"
        sign = "<=" if self.flagged else ">"
        parts = [
            f"{self.name}: {self.n_flagged} of {len(self.rows)} slices flagged; {verdict} "
            f"(Simes p {self.p:.3g} {sign} {self.scan_alpha}); "
            f"{self.flagged_brain_share:.2%} of its brain in the mask"
        ]
        if self.slices_needed > 1 and not self.flagged:
            parts.append(
                f"no single slice can flag it: at scan alpha {self.scan_alpha} with "
                f"{self.n_calibration} calibration slices it needs {self.slices_needed} slices "
                "scoring above every calibration slice (more calibration slices or a larger "
                "--scan-alpha need fewer)"
            )
        if self.coverage is not None:
            parts.append(self.coverage.line())
        if self.resolution is not None:
            r = self.resolution
            scan = " x ".join(f"{v:.2g}" for v in r["scan_voxel_mm"])
            frame = " x ".join(f"{v:.2g}" for v in r["frame_voxel_mm"])
            parts.append(f"voxels {scan} mm (the run's frame {frame} mm)")
        return "; ".join(parts) + "; " + describe(self.shift)


def scan_groups(names: list[str], volume_of: np.ndarray | None, volumes: list) -> list:
    """[(name, rows)]: each volume's slices, or for 2D inputs each subject's (two or more
    slices with `<subject>_slice_<k>` names); [] when the input has no scans."""
    if volumes:
        return [(a.scan.path.name, np.flatnonzero(volume_of == i)) for i, a in enumerate(volumes)]
    subjects = [parse_subject_slice(n) for n in names]
    ids = sorted({s[0] for s in subjects if s is not None})
    groups = []
    for subject in ids:
        rows = np.array([i for i, s in enumerate(subjects) if s and s[0] == subject])
        if len(rows) >= 2:
            groups.append((subject, rows))
    return groups


def resolution(aligned: AlignedScan) -> dict:
    """The scan's voxel size against the frame's (mm per pixel at the working size, mm between
    levels)."""
    row, column = aligned.frame.pixel_mm(aligned.size)
    frame = [row, column, aligned.frame.level_spacing_mm]
    scan = sorted(float(v) for v in aligned.scan.voxel_mm)
    return {
        "scan_voxel_mm": [round(v, 3) for v in scan],
        "frame_voxel_mm": [round(float(v), 3) for v in frame],
        "coarsest_ratio": round(max(scan) / max(frame), 3),
    }


def answer_scans(
    names: list[str],
    images: np.ndarray,
    levels: np.ndarray | None,
    details: MapSet,
    p_values: np.ndarray,
    flagged: np.ndarray,
    calibration: Calibration,
    stored: StoredCalibration,
    downsample: int,
    volume_of: np.ndarray | None = None,
    volumes: list[AlignedScan] | None = None,
) -> list[ScanAnswer]:
    """Every scan's answer (module docstring)."""
    groups = scan_groups(names, volume_of, volumes or [])
    if not groups:
        return []
    threshold = calibration.pixel_threshold
    cal_flagged = flagged_share(stored.maps.values, stored.maps.counts, threshold)
    shares = slice_flagged_shares(details.maps, details.foreground, threshold)
    answers = []
    for i, (name, rows) in enumerate(groups):
        if levels is not None:
            rows = rows[np.argsort(levels[rows], kind="stable")]
        stats = SliceStatistics.of(
            images[rows],
            details.foreground[rows],
            details.nll[rows],
            None if levels is None else levels[rows],
            downsample,
        )
        p = simes(p_values[rows])
        brain = details.foreground[rows]
        masks = details.maps[rows] > threshold
        answers.append(
            ScanAnswer(
                name=name,
                rows=rows,
                n_flagged=int(flagged[rows].sum()),
                p=p,
                flagged=bool(p <= calibration.scan_alpha),
                scan_alpha=calibration.scan_alpha,
                flagged_brain_share=float(masks[brain].mean()) if brain.any() else 0.0,
                resolution=resolution(volumes[i]) if volumes else None,
                shift=shift_check(stored.slices, cal_flagged, stats, shares[rows]),
                coverage=scan_coverage(volumes[i]) if volumes else None,
                n_calibration=stored.n_slices,
            )
        )
    return answers
