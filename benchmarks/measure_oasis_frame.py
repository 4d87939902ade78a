"""Measure where the OASIS slice set's 32 levels lie in the reference space (MNI152 2009).

For each subject, its 32 slices (at 128x128) are stacked into a volume indexed (row, column,
level) and registered to nilearn's MNI152 template with a 12-parameter affine (Mattes mutual
information, sampled on the subject's brain, the template blurred at 4 mm then 2 mm):
the affine maps (row, column, level) to MNI millimetres. The frame is the mean affine over the
training subjects; each level's height is measured per subject, and its spread over subjects is
the table's stated error. The validate subjects check it: how far each of their levels lies from
the table, in units of that spread.

    python benchmarks/measure_oasis_frame.py --data ../shared/oasis [--write]

--write stores the frame in src/brainvq/data/space/oasis_frame.json (the packaged table), with
the training subjects' intensity landmarks (brainvq.data.space.intensity) on that frame: the
scale NIfTI volumes are standardised to when a run has no training slices of its own yet.
Data: OASIS-1 (Marcus et al., 2007).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from brainvq.data import load_slices
from brainvq.data.space.align import template_on_frame
from brainvq.data.space.frame import BASE_SIZE, OASIS_FRAME_FILE, Frame
from brainvq.data.space.intensity import learn_landmarks
from brainvq.data.space.registration import sitk_image
from brainvq.data.space.template import load_reference
from brainvq.hardware import machine

LEVELS = 32
# the start: pixels of about 2 mm, levels 1 mm apart, the band's middle at z = 13 mm
START_PIXEL_MM, START_LEVEL_MM, START_Z_MM = 2.05, 1.0, 13.0


def stacks(data: str) -> dict[str, dict[str, np.ndarray]]:
    """{split: {subject: (128, 128, 32) float32 in [0, 1]}} of the OASIS source."""
    slices = load_slices(data, size=BASE_SIZE)
    out: dict[str, dict[str, np.ndarray]] = {}
    for split in ("train", "validate"):
        part = slices.split == split
        for subject in np.unique(slices.subject[part]):
            rows = np.nonzero(part & (slices.subject == subject))[0]
            if len(rows) != LEVELS:
                continue
            order = rows[np.argsort(slices.level[rows])]
            volume = slices.images[order].transpose(1, 2, 0).astype(np.float32) / 255.0
            out.setdefault(split, {})[str(subject)] = volume
    return out


def register(volume: np.ndarray, moving) -> tuple[np.ndarray, float]:
    """The (4, 4) affine (row, column, level) -> MNI mm of one subject's stack."""
    import SimpleITK as sitk

    fixed = sitk_image(volume, np.eye(4))
    brain = ndimage.binary_fill_holes(volume > 0.08).astype(np.float32)
    mask = sitk.Cast(sitk_image(brain, np.eye(4)), sitk.sitkUInt8)
    centre = np.array([(BASE_SIZE - 1) / 2, (BASE_SIZE - 1) / 2, (LEVELS - 1) / 2])
    start = np.diag([START_PIXEL_MM, START_PIXEL_MM, START_LEVEL_MM])
    transform = sitk.AffineTransform(3)
    transform.SetCenter(centre.tolist())
    transform.SetMatrix(start.ravel().tolist())
    transform.SetTranslation((np.array([0.0, -18.0, START_Z_MM]) - centre).tolist())
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.5, seed=1)
    method.SetMetricFixedMask(mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(1.0, 0.005, 200, relaxationFactor=0.7)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1, 0])
    method.SetSmoothingSigmasAreSpecifiedInPhysicalUnits(False)
    method.SetInitialTransform(transform, inPlace=True)
    method.Execute(fixed, moving)
    a = np.array(transform.GetMatrix()).reshape(3, 3)
    out = np.eye(4)
    out[:3, :3] = a
    out[:3, 3] = np.array(transform.GetTranslation()) + centre - a @ centre
    return out, float(method.GetMetricValue())


def level_heights(affine: np.ndarray) -> np.ndarray:
    """(32,) z (mm) of each level's centre."""
    c = (BASE_SIZE - 1) / 2
    return np.array([(affine @ [c, c, k, 1])[2] for k in range(LEVELS)])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="../shared/oasis")
    p.add_argument("--write", action="store_true", help=f"write {OASIS_FRAME_FILE}")
    args = p.parse_args()
    if not Path(args.data).exists():
        print(f"no OASIS data at {args.data}", file=sys.stderr)
        return 2
    print(machine().describe())
    reference = load_reference()
    moving = sitk_image(
        ndimage.gaussian_filter(reference.t1, 1.0)[::2, ::2, ::2],
        reference.affine @ np.diag([2, 2, 2, 1]),
    )
    found = stacks(args.data)
    affines: dict[str, list[np.ndarray]] = {}
    metrics: dict[str, list[float]] = {}
    start = time.perf_counter()
    for split, subjects in found.items():
        for volume in subjects.values():
            affine, metric = register(volume, moving)
            affines.setdefault(split, []).append(affine)
            metrics.setdefault(split, []).append(metric)
    seconds = time.perf_counter() - start
    train = np.stack(affines["train"])
    heights = np.stack([level_heights(a) for a in train])  # (subjects, 32)
    mean, sd = heights.mean(axis=0), heights.std(axis=0, ddof=1)
    frame = Frame(
        tuple(tuple(float(v) for v in row) for row in train.mean(axis=0)),
        LEVELS,
        f"OASIS-1 slice set, measured on {len(train)} training subjects",
        tuple(round(float(v), 3) for v in sd),
    )
    print(f"{sum(len(v) for v in affines.values())} subjects registered in {seconds:.1f} s")
    print(
        f"pixel mm (rows, columns) {frame.pixel_mm(BASE_SIZE)}, level spacing "
        f"{frame.level_spacing_mm:.3f} mm"
    )
    print("| level | z mean (mm) | sd over training subjects |")
    print("| ---: | ---: | ---: |")
    for k in range(0, LEVELS, 4):
        print(f"| {k} | {mean[k]:+.2f} | {sd[k]:.2f} |")
    print(f"| 31 | {mean[31]:+.2f} | {sd[31]:.2f} |")
    check = {}
    if "validate" in affines:
        val = np.stack([level_heights(a) for a in affines["validate"]])
        z_score = np.abs(val - frame.level_z(np.arange(LEVELS))) / sd
        check = {
            "subjects": len(val),
            "mean_abs_error_mm": round(float(np.abs(val - mean).mean()), 3),
            "share_within_2_sd": round(float((z_score <= 2).mean()), 4),
            "share_within_3_sd": round(float((z_score <= 3).mean()), 4),
            "max_error_mm": round(float(np.abs(val - mean).max()), 3),
        }
        print(f"validate subjects: {check}")
    volumes = list(found["train"].values())
    images = np.round(np.concatenate([v.transpose(2, 0, 1) for v in volumes]) * 255).astype(
        np.uint8
    )
    core = np.concatenate([template_on_frame(frame, BASE_SIZE)[1]] * len(volumes))
    groups = np.repeat(np.arange(len(volumes)), LEVELS)
    landmarks = learn_landmarks(images, core, groups)
    print(
        f"intensity landmarks {np.round(landmarks.values, 4).tolist()}, peak {landmarks.peak:.4f}"
    )
    if args.write:
        doc = {
            "intensity_landmarks": {"values": list(landmarks.values), "peak": landmarks.peak},
            "frame": frame.to_dict(),
            "method": __doc__.split("\n\n")[1].replace("\n", " "),
            "metric_median": round(float(np.median(metrics["train"])), 4),
            "validate_check": check,
        }
        OASIS_FRAME_FILE.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {OASIS_FRAME_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
