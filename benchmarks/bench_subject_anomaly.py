"""Anomaly maps with 3D context against without, on lesions that span adjacent slices.

Input: the two runs bench_subjects.py trained on one VQ-VAE (`--runs OUT`: OUT/none, today's
prior, and OUT/previous, the prior that knows the slice below). The validate subjects of the
runs' data are split by subject (alternating in sorted order): whole subjects of the first half
calibrate each method, whole subjects of the second are the test volumes; in half of those
(`--lesion-share`) one or two lesions are planted that span `--span` adjacent slices (an
ellipsoid in (level, row, column) whose in-plane radius shrinks towards its ends, hyper- or
hypo-intense with a smooth border and texture: brainvq.evaluation.anomaly_benchmark's lesions
stacked through the levels). Methods, each calibrated the same way (pixel threshold by conformal
risk control at `--alpha`, brainvq.evaluation.anomaly_calibration):

- `none`: today's prior, each slice on its own;
- `previous, no context`: the prior that knows the slice below, shown none (`context: false`);
- `previous, context`: each slice judged and healed given the healed slice below it.

`--run RUN` instead of `--runs` measures one run's slice prior alone (`slices alone`).

Reported over the brain voxels of the test volumes: voxel AUPRC, Dice at the calibrated pixel
threshold, and the share of brain voxels flagged in the lesion-free volumes (the guarantee says
at most alpha on average), plus seconds per method. Then the decisions (each subject is a scan;
brainvq.evaluation.anomaly_decisions), before (the mean of the map's top score_share pixels) and
after (the score that follows the map): the share of slices flagged among the lesion-free
volumes' and among slices whose lesion fills >= 1.5% of their brain, and the scans flagged by
Simes' combination of their slices' p-values at --scan-alpha (default --alpha): healthy ones,
lesioned ones, and those with a slice whose lesion fills >= 1.5% of its brain.

    .venv/bin/python benchmarks/bench_subject_anomaly.py --runs /tmp/subj --out results.json
    .venv/bin/python benchmarks/bench_subject_anomaly.py --run runs/oasis --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from brainvq.app.run_data import run_slices
from brainvq.evaluation.anomaly_benchmark import average_precision, dice
from brainvq.evaluation.anomaly_calibration import (
    CalibrationMaps,
    calibrate_thresholds,
    code_threshold,
)
from brainvq.evaluation.anomaly_decisions import LEGACY_SCORE, SLICE_SCORE, simes, slice_scores
from brainvq.evaluation.conformal import conformal_p_values, conformal_quantile, flagged_share
from brainvq.evaluation.consistency import subject_volumes
from brainvq.hardware import machine
from brainvq.inference.anomaly_maps import anomaly_maps, brain_mask
from brainvq.inference.codes import load_codes
from brainvq.inference.run_models import load_run_models
from brainvq.inference.slice_below import below_rows
from brainvq.run import RunLayout, load_run

METHODS = {  # name -> (run, context)
    "none": ("none", False),
    "previous, no context": ("previous", False),
    "previous, context": ("previous", True),
}


def plant_lesion_3d(
    volume: np.ndarray, brains: np.ndarray, span: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One lesion through `span` adjacent slices of volume (L, H, W) uint8 with brain masks
    (L, H, W): an ellipsoid of in-plane radius 5-10% of the side at its middle slice, shrinking
    towards its ends, hyper- or hypo-intense by 25-50% of the brain's intensity range, with a
    smooth border and texture. Returns (the volume, the lesion mask (L, H, W) bool, a
    description)."""
    n, side, _ = volume.shape
    first = int(rng.integers(0, n - span + 1))
    middle = first + (span - 1) / 2
    radius = side * rng.uniform(0.05, 0.10)
    core = ndimage.binary_erosion(brains[int(middle)], iterations=max(1, int(radius)))
    candidates = np.argwhere(core if core.any() else brains[int(middle)])
    centre = candidates[rng.integers(len(candidates))]
    yy, xx = np.mgrid[0:side, 0:side]
    x = volume.astype(np.float64) / 255.0
    lo, hi = np.percentile(x[brains], [1, 99])
    sign = 1.0 if rng.integers(2) else -1.0
    delta = rng.uniform(0.25, 0.5) * max(hi - lo, 0.1)
    mask = np.zeros(volume.shape, dtype=bool)
    for k in range(first, first + span):
        r = radius * np.sqrt(max(0.0, 1 - ((k - middle) / (span / 2 + 0.5)) ** 2))
        disc = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= r**2
        weight = ndimage.gaussian_filter(disc.astype(np.float64), max(1.0, 0.2 * r)) * brains[k]
        noise = ndimage.gaussian_filter(rng.standard_normal((side, side)), max(1.0, 0.25 * r))
        texture = 1 + 0.3 * noise / max(noise.std(), 1e-9)
        x[k] = np.clip(x[k] + sign * delta * weight * texture, 0, 1)
        mask[k] = (weight >= 0.5) & brains[k]
    info = {"first": first, "span": span, "radius_px": round(float(radius), 1), "sign": sign}
    return (x * 255).round().astype(np.uint8), mask, info


def method_maps(models, config, code_thr, volumes, levels, context, seed) -> np.ndarray:
    """Anomaly maps (S, L, H, W) of volumes (S, L, H, W), in context or slice by slice."""
    s, n = volumes.shape[:2]
    images = volumes.reshape(s * n, *volumes.shape[2:])
    level = np.tile(levels, s)
    below = below_rows(np.repeat(np.arange(s), n), level) if context else None
    maps = anomaly_maps(
        models,
        images,
        level,
        code_thr,
        replace(config, context=context),
        seed=seed,
        below_of=below,
        threads=1,
    )
    return maps


LARGE = 0.015  # a lesion filling this share of a slice's brain
DECISIONS = {"before": LEGACY_SCORE, "after": SLICE_SCORE}


def decisions(cal_maps, test_maps, brains, labels, lesioned, pixel, alpha, scan_alpha, config):
    """{before/after: {slice and scan flagged rates}} (module docstring), each score's p-values
    against the calibration slices' scores at the pixel threshold."""
    s, n = labels.shape[:2]
    flat = (s * n, *labels.shape[2:])
    brain = brains.reshape(s, n, -1).sum(axis=2)
    share = labels.reshape(s, n, -1).sum(axis=2) / np.maximum(brain, 1)  # (S, L)
    large = share >= LARGE
    out = {}
    for when, name in DECISIONS.items():
        cal = slice_scores(name, cal_maps.maps, cal_maps.foreground, pixel, config)
        test = slice_scores(name, test_maps.maps, brains.reshape(flat), pixel, config)
        flagged = (test > conformal_quantile(cal, alpha)).reshape(s, n)
        p = conformal_p_values(cal, test).reshape(s, n)
        scan = np.array([simes(row) <= scan_alpha for row in p])
        with_large = large.any(axis=1)
        out[when] = {
            "score": name,
            "healthy_slices_flagged": float(flagged[~lesioned].mean()),
            "large_lesion_slices_flagged": float(flagged[large].mean()) if large.any() else None,
            "healthy_scans_flagged": f"{int(scan[~lesioned].sum())} of {int((~lesioned).sum())}",
            "lesioned_scans_flagged": f"{int(scan[lesioned].sum())} of {int(lesioned.sum())}",
            "large_lesion_scans_flagged": (
                f"{int(scan[with_large].sum())} of {int(with_large.sum())}"
            ),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--runs", type=Path, help="bench_subjects.py's runs (none, previous)")
    where.add_argument("--run", type=Path, help="one run: its slice prior alone")
    parser.add_argument("--scan-alpha", type=float, help="the scans' rate (default --alpha)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--n-heal", type=int, default=4)
    parser.add_argument("--span", type=int, default=5)
    parser.add_argument("--cal-subjects", type=int, default=12)
    parser.add_argument("--test-subjects", type=int, default=12)
    parser.add_argument("--lesion-share", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--neighbour-run",
        default="previous",
        help="the folder under --runs whose prior knows the slice below (default previous)",
    )
    args = parser.parse_args()
    scan_alpha = args.alpha if args.scan_alpha is None else args.scan_alpha
    if args.run is not None:
        methods = {"slices alone": (args.run, False)}
        config_run = load_run(args.run)
    else:
        methods = {
            name: (args.runs / (args.neighbour_run if run == "previous" else run), context)
            for name, (run, context) in METHODS.items()
        }
        config_run = load_run(args.runs / args.neighbour_run)
    sliceset = run_slices(config_run, progress=False)
    n_levels = int(sliceset.n_levels)
    validate = sliceset.require_split("validate")
    volumes = subject_volumes(validate.images, validate.subject, validate.level, n_levels)
    cal, test = volumes[0::2][: args.cal_subjects], volumes[1::2][: args.test_subjects]
    rng = np.random.default_rng(args.seed)
    config = replace(config_run.anomaly, n_heal=args.n_heal)
    brains = brain_mask(test.reshape(-1, *test.shape[2:]), config.foreground_level)
    brains = brains.reshape(test.shape)
    lesioned = rng.random(len(test)) < args.lesion_share
    images, labels, lesions = test.copy(), np.zeros(test.shape, dtype=bool), []
    for i in np.flatnonzero(lesioned):
        for _ in range(int(rng.integers(1, 3))):
            images[i], mask, info = plant_lesion_3d(images[i], brains[i], args.span, rng)
            labels[i] |= mask
            lesions.append(info)
    levels = np.arange(n_levels)
    rows, load = {}, " / ".join(f"{v:.1f}" for v in os.getloadavg())
    for name, (run, context) in methods.items():
        models = load_run_models(run)
        train_codes = load_codes(RunLayout(run).codes, "train")
        code_thr = code_threshold(models.slice_prior.model, train_codes, config)
        start = time.perf_counter()
        cal_maps = method_maps(models, config, code_thr, cal, levels, context, args.seed)
        stats = CalibrationMaps.of(cal_maps.maps, cal_maps.foreground)
        thresholds = calibrate_thresholds(
            stats, args.alpha, code_thr, len(train_codes.codes), config
        )
        test_maps = method_maps(models, config, code_thr, images, levels, context, args.seed + 1)
        seconds = time.perf_counter() - start
        maps = test_maps.maps.reshape(test.shape)
        brain = brains
        flagged = maps > thresholds.pixel_threshold
        free = ~lesioned
        share = flagged_share(
            maps[free][brain[free]],
            brain[free].reshape(-1, *test.shape[2:]).sum(axis=(1, 2)),
            thresholds.pixel_threshold,
        )
        rows[name] = {
            "voxel_auprc": average_precision(maps[brain], labels[brain]),
            "dice_at_calibrated": dice(flagged[brain], labels[brain]),
            "healthy_share_flagged": float(share.mean()),
            "healthy_share_se": float(share.std(ddof=1) / np.sqrt(len(share))),
            "code_threshold_nats": code_thr,
            "seconds_calibration_and_test": seconds,
            "decisions": decisions(
                cal_maps,
                test_maps,
                brains,
                labels,
                lesioned,
                thresholds.pixel_threshold,
                args.alpha,
                scan_alpha,
                config,
            ),
        }
        print(name, rows[name], flush=True)
    result = {
        "machine": machine().describe(),
        "load_at_start": load,
        "alpha": args.alpha,
        "n_heal": args.n_heal,
        "span": args.span,
        "calibration_subjects": len(cal),
        "test_subjects": len(test),
        "lesioned_subjects": int(lesioned.sum()),
        "lesions": lesions,
        "lesion_voxel_share": float(labels[brains].mean()),
        "neighbour_run": None if args.run else args.neighbour_run,
        "scan_alpha": scan_alpha,
        "methods": rows,
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(f"# {result['machine']}; load at start {load}")
    print(
        f"{len(cal)} calibration subjects, {len(test)} test subjects ({int(lesioned.sum())} with "
        f"{len(lesions)} lesions spanning {args.span} slices; lesion voxels "
        f"{result['lesion_voxel_share']:.2%} of brain voxels), alpha {args.alpha}, "
        f"{args.n_heal} healings"
    )
    print("| method | voxel AUPRC | Dice at calibrated threshold | healthy voxels flagged | s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in rows.items():
        print(
            f"| {name} | {r['voxel_auprc']:.3f} | {r['dice_at_calibrated']:.3f} | "
            f"{r['healthy_share_flagged']:.4f} +- {r['healthy_share_se']:.4f} | "
            f"{r['seconds_calibration_and_test']:.0f} |"
        )
    print(
        f"\ndecisions at alpha {args.alpha} (slices) and {scan_alpha} (scans, Simes); large: a "
        f"slice whose lesion fills >= {LARGE:.1%} of its brain"
    )
    print(
        "| method | slice score | healthy slices flagged | large-lesion slices flagged | healthy "
        "scans flagged | lesioned scans flagged | scans with a large lesion flagged |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows.items():
        for when, d in r["decisions"].items():
            large = d["large_lesion_slices_flagged"]
            print(
                f"| {name} | {when}: {d['score']} | {d['healthy_slices_flagged']:.3f} | "
                f"{'-' if large is None else f'{large:.2f}'} | {d['healthy_scans_flagged']} | "
                f"{d['lesioned_scans_flagged']} | {d['large_lesion_scans_flagged']} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
