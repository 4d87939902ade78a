"""What should weight an anomaly map's residuals? The same healings, mapped three ways.

`anomaly.weight` (brainvq.inference.anomaly_maps.map_weights): "resampled" (every code healing
redrew counts 1: the maps before 2026-12-08), "code_nll" (a redrawn code counts the excess of its
input code's teacher-forced NLL over the code threshold, at least REDRAWN_FLOOR_NATS: the
default), and "code_nll" without the floor (0 nats). Healing is done once per slice set and
every weight maps the same healings, so the rows differ by the weight alone.

Two sets, both from the validate subjects of --data split in two halves by subject as
bench_anomaly.py splits them (the first half's healthy slices calibrate, in memory):

1. textured lesions (brainvq.evaluation.anomaly_benchmark.plant_lesion, as bench_anomaly.py
   plants them) in half of the test slices: pixel AUPRC and best Dice over the test brain pixels,
   the healthy pixels flagged at the calibrated pixel threshold (alpha), the slice AUROC of the
   slice score (largest flagged region; lesion >= 1.5% of the brain vs lesion-free), and the
   slices flagged at alpha: lesion-free, and with a lesion >= 1.5% of the brain;
2. uniform discs (radius 14 and 20 pixels at 128, dark and bright) in the middle of the brain
   of middle-level test slices: the median over slices of the map in the disc's core (eroded 3
   pixels) over the map in the brain away from it (8 pixels), and the share of the disc above
   the 99th percentile of the map away from it (how much of a large lesion's inside the map
   covers).

    .venv/bin/python benchmarks/bench_anomaly_weight.py --run runs/subj/previous_noise_drop50 \\
        --data ../shared/oasis --seed 1
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from bench_anomaly import MIN_BRAIN_SHARE, run_and_halves  # noqa: E402

from brainvq.evaluation.anomaly_benchmark import (  # noqa: E402
    LesionSettings,
    auroc,
    average_precision,
    best_dice,
    plant_lesion,
)
from brainvq.evaluation.anomaly_calibration import code_threshold  # noqa: E402
from brainvq.evaluation.anomaly_decisions import largest_flagged_area  # noqa: E402
from brainvq.evaluation.conformal import (  # noqa: E402
    conformal_quantile,
    flagged_share,
    risk_control_threshold,
)
from brainvq.hardware import machine  # noqa: E402
from brainvq.inference.anomaly_maps import (  # noqa: E402
    REDRAWN_FLOOR_NATS,
    MapSet,
    anomaly_maps,
    brain_mask,
    map_weights,
    residual_map,
)
from brainvq.inference.codes import load_codes  # noqa: E402
from brainvq.run import RunLayout  # noqa: E402
from brainvq.run_config import AnomalyConfig  # noqa: E402

WEIGHTS = {  # row name: (anomaly.weight, floor in nats)
    "resampled (before)": ("resampled", 0.0),
    f"code_nll, floor {REDRAWN_FLOOR_NATS} nats (default)": ("code_nll", REDRAWN_FLOOR_NATS),
    "code_nll, no floor": ("code_nll", 0.0),
}
DISCS = ((14, 0), (20, 0), (14, 255), (20, 255))  # (radius in pixels at 128, intensity)
BIG = 0.015  # lesion share of the brain: the "at least 1.5%"


def weighted(maps: MapSet, images, weight: str, floor: float, thr: float, config, f: int):
    """The maps of the same healings under another weight."""
    settings = replace(config, weight=weight)
    out = np.zeros(images.shape, dtype=np.float32)
    for start in range(0, len(images), 64):
        part = slice(start, start + 64)
        w = map_weights(settings, maps.resampled[part], maps.nll[part], thr, floor)
        out[part] = residual_map(
            images[part], maps.healed[part], w, maps.foreground[part], f, settings
        )
    return out


def calibrate(maps: np.ndarray, foreground: np.ndarray, alpha: float) -> tuple[float, float]:
    """(pixel threshold by conformal risk control, slice threshold by split conformal)."""
    values = np.concatenate([m[g] for m, g in zip(maps, foreground, strict=True)])
    counts = foreground.reshape(len(foreground), -1).sum(axis=1)
    pixel = risk_control_threshold(values, counts, alpha)
    return pixel, conformal_quantile(largest_flagged_area(maps, foreground, pixel), alpha)


def disc_slices(images: np.ndarray, brains: np.ndarray, radius: int, value: int):
    """A uniform disc at the middle of each slice's brain (deep enough for it)."""
    out, labels = images.copy(), np.zeros(images.shape, dtype=bool)
    yy, xx = np.mgrid[: images.shape[1], : images.shape[2]]
    for i, brain in enumerate(brains):
        deep = ndimage.binary_erosion(brain, iterations=radius)
        centres = np.argwhere(deep if deep.any() else brain)
        cy, cx = centres[len(centres) // 2]
        labels[i] = ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2) & brain
        out[i][labels[i]] = value
    return out, labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", help="the data source (default: the run's)")
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--test-slices", type=int, default=320)
    parser.add_argument("--calibration-slices", type=int, default=512)
    parser.add_argument("--disc-slices", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    run_config, models, source, validate, (cal_part, test_part) = run_and_halves(
        args.run, args.data
    )
    f = models.vqvae.config.downsample
    rng = np.random.default_rng(args.seed)
    config: AnomalyConfig = replace(  # the brain mask as a new run makes it, for every row
        run_config.anomaly, n_heal=4, calibration_slices=args.calibration_slices, brain="healed"
    )
    cal = validate.subset(cal_part)
    cal = cal.subset(np.sort(rng.permutation(len(cal))[: args.calibration_slices]))
    thr = code_threshold(
        models.slice_prior.model, load_codes(RunLayout(args.run).codes, "train"), config
    )

    def heal(images, levels, seed):
        return anomaly_maps(
            models, images, levels.astype(np.int64), thr, config, seed=seed, progress=True
        )

    cal_maps = heal(cal.images, cal.level, args.seed)
    test = validate.subset(test_part)
    test = test.subset(np.sort(rng.permutation(len(test))[: args.test_slices]))
    brains = brain_mask(test.images, config.foreground_level)
    eligible = brains.reshape(len(test), -1).mean(axis=1) >= MIN_BRAIN_SHARE
    lesioned = eligible & (rng.random(len(test)) < 0.5)
    images, labels = test.images.copy(), np.zeros(test.images.shape, dtype=bool)
    for i in np.nonzero(lesioned)[0]:
        images[i], labels[i], _ = plant_lesion(images[i], brains[i], rng, LesionSettings())
    test_maps = heal(images, test.level, args.seed + 1)
    share = labels.reshape(len(test), -1).sum(1) / np.maximum(
        brains.reshape(len(test), -1).sum(1), 1
    )
    big, free = lesioned & (share >= BIG), ~lesioned

    middle = test.subset((test.level >= 8) & (test.level <= 24) & ~lesioned)
    middle = middle.subset(np.sort(rng.permutation(len(middle))[: args.disc_slices]))
    middle_brains = brain_mask(middle.images, config.foreground_level)
    discs = []
    for radius, value in DISCS:
        disc_images, disc_labels = disc_slices(middle.images, middle_brains, radius, value)
        discs.append((radius, value, disc_images, disc_labels, heal(disc_images, middle.level, 7)))

    print(f"# {machine().describe()}")
    print(
        f"run {args.run}; data {source}; calibration {len(cal)} healthy validate slices, test "
        f"{len(test)} ({int(lesioned.sum())} with a textured lesion, {int(big.sum())} of them >= "
        f"1.5% of the brain; {int(free.sum())} lesion-free); alpha {args.alpha}; 4 healings; "
        f"code threshold {thr:.3f} nats; discs in {len(middle)} middle-level test slices"
    )
    print()
    head = "| weight | pixel AUPRC | best Dice | healthy pixels flagged | slice AUROC (>= 1.5%) "
    head += "| healthy slices flagged | slices >= 1.5% flagged |"
    disc_head = "".join(f" disc r {r}, {'dark' if v == 0 else 'bright'} |" for r, v in DISCS)
    rows, disc_rows = [head, "| --- |" + " ---: |" * 6], []
    for name, (weight, floor) in WEIGHTS.items():
        cal_w = weighted(cal_maps, cal.images, weight, floor, thr, config, f)
        test_w = weighted(test_maps, images, weight, floor, thr, config, f)
        pixel, slice_t = calibrate(cal_w, cal_maps.foreground, args.alpha)
        scores = largest_flagged_area(test_w, brains, pixel)
        healthy = np.concatenate([test_w[i][brains[i]] for i in np.nonzero(free)[0]])
        counts = brains[free].reshape(int(free.sum()), -1).sum(axis=1)
        rows.append(
            f"| {name} | {average_precision(test_w[brains], labels[brains]):.3f} | "
            f"{best_dice(test_w[brains], labels[brains])[0]:.3f} | "
            f"{flagged_share(healthy, counts, pixel).mean():.4f} | "
            f"{auroc(scores[big | free], big[big | free]):.3f} | "
            f"{(scores[free] > slice_t).mean():.3f} | {(scores[big] > slice_t).mean():.2f} |"
        )
        cells = []
        for _, _, disc_images, disc_labels, maps in discs:
            m = weighted(maps, disc_images, weight, floor, thr, config, f)
            ratio, covered = [], []
            for i in range(len(m)):
                core = ndimage.binary_erosion(disc_labels[i], iterations=3)
                away = middle_brains[i] & ~ndimage.binary_dilation(disc_labels[i], iterations=8)
                if core.sum() < 5 or away.sum() < 5:
                    continue
                ratio.append(m[i][core].mean() / max(m[i][away].mean(), 1e-12))
                covered.append((m[i][disc_labels[i]] > np.quantile(m[i][away], 0.99)).mean())
            cells.append(f" {np.median(ratio):.1f} / {np.median(covered):.2f} |")
        disc_rows.append(f"| {name} |" + "".join(cells))
    print("\n".join(rows))
    print()
    print("uniform discs: core / away (median ratio) / share of the disc above the away p99")
    print("| weight |" + disc_head)
    print("| --- |" + " ---: |" * len(DISCS))
    print("\n".join(disc_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
