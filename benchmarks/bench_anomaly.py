"""Anomaly maps on synthetic lesions in real held-out slices, against two baselines; speed.

The run's models must be trained on the training subjects only. The validate subjects of --data
(default: the run's own data source) are split in two halves by subject (alternating in sorted
order): the first half's healthy slices calibrate every method (in memory: RUN/anomaly/ is not
touched), the second half is the test set, where a lesion
(brainvq.evaluation.anomaly_benchmark.plant_lesion) is planted into a random --lesion-share of the
slices with enough brain; the others stay lesion-free.

Methods, each calibrated the same way (pixel threshold by conformal risk control, slice threshold
by split conformal, at --alpha): the anomaly map (healing), the VQ-VAE reconstruction residual
smoothed as the anomaly map is, and the prior's code NLL map upsampled without healing.
Reported over the brain pixels of the test slices: pixel AUPRC, the best Dice over thresholds and
the Dice at the calibrated threshold; slice AUROC (lesion vs lesion-free, among the slices with
enough brain for a lesion); on the lesion-free slices the share of brain pixels flagged (mean
over slices +- its standard error) and the share of slices flagged. The slice decisions of the
anomaly map, before (the mean of the map's top score_share pixels) and after (the score that
follows the map, brainvq.evaluation.anomaly_decisions), each calibrated by split conformal at
--alpha: the share of lesion-free slices flagged and of lesioned slices flagged by the lesion's
share of the slice's brain. Then the time of one test
subject's 32 slices with --n-heal healings with the cached sampler, and of --naive-slices of them
with the naive sampler and the cached one, whose maps must be identical.

    .venv/bin/python benchmarks/bench_anomaly.py --run runs/oasis [--data ../shared/oasis]
    .venv/bin/python benchmarks/bench_anomaly.py --run RUN --quick   # a smoke test in seconds
    .venv/bin/python benchmarks/bench_anomaly.py --run RUN --maps default   # maps as a new run
        # makes them (anomaly.weight and anomaly.brain at their defaults; --maps legacy: as
        # before those settings existed; default --maps run: the run's own settings)
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from brainvq.data import load_slices
from brainvq.evaluation.anomaly_benchmark import (
    LesionSettings,
    auroc,
    average_precision,
    best_dice,
    dice,
    nll_pixel_map,
    plant_lesion,
    reconstruction_residual_map,
)
from brainvq.evaluation.anomaly_calibration import (
    CalibrationMaps,
    calibrate_thresholds,
    code_threshold,
)
from brainvq.evaluation.anomaly_decisions import LEGACY_SCORE, SLICE_SCORE
from brainvq.evaluation.anomaly_decisions import slice_scores as decision_scores
from brainvq.evaluation.conformal import conformal_quantile, flagged_share
from brainvq.hardware import machine
from brainvq.inference.anomaly_maps import MapSet, anomaly_maps, brain_mask, slice_scores
from brainvq.inference.codes import decode_codes, load_codes
from brainvq.inference.run_models import load_run_models
from brainvq.run import RunLayout, load_run
from brainvq.run_config import LEGACY_ANOMALY, AnomalyConfig

MIN_BRAIN_SHARE = 0.15  # slices with less brain than this share of the image get no lesion
VOLUME = 32
SIZE_BINS = ((0.0, 0.005), (0.005, 0.015), (0.015, 0.05), (0.05, 1.0))  # lesion share of brain
DECISIONS = {"before": LEGACY_SCORE, "after": SLICE_SCORE}


def decision_rows(cal_maps, cal_fg, test_maps, test_fg, labels, lesioned, pixel, alpha, config):
    """{before/after: (healthy slices flagged, [flagged share per SIZE_BINS bin], n per bin,
    flagged share of lesions >= 1.5% of the brain)}: each score calibrated by split conformal on
    the calibration maps at `pixel` (the anomaly map's pixel threshold)."""
    brain = test_fg.reshape(len(test_fg), -1).sum(axis=1)
    share = labels.reshape(len(labels), -1).sum(axis=1) / np.maximum(brain, 1)
    rows = {}
    for when, name in DECISIONS.items():
        cal = decision_scores(name, cal_maps, cal_fg, pixel, config)
        threshold = conformal_quantile(cal, alpha)
        flagged = decision_scores(name, test_maps, test_fg, pixel, config) > threshold
        per_bin, counts = [], []
        for low, high in SIZE_BINS:
            pick = lesioned & (share >= low) & (share < high)
            per_bin.append(float(flagged[pick].mean()) if pick.any() else float("nan"))
            counts.append(int(pick.sum()))
        large = lesioned & (share >= 0.015)
        rows[when] = (
            float(flagged[~lesioned].mean()),
            per_bin,
            counts,
            float(flagged[large].mean()) if large.any() else float("nan"),
        )
    return rows


def split_subjects(subjects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (calibration, test) over slices: alternate subjects in sorted order."""
    ids = np.unique(subjects)
    if len(ids) < 2:
        raise SystemExit(
            f"the validate split has {len(ids)} subject(s); the benchmark needs two or more "
            "(one half calibrates, the other is the test set)"
        )
    calibration = np.isin(subjects, ids[0::2])
    return calibration, ~calibration


def run_and_halves(run: Path, data: str | None):
    """(the run's config, its models, the data source (default the run's), its validate split,
    (the calibration half's rows, the test half's rows) by split_subjects)."""
    run_config = load_run(run)
    models = load_run_models(run)
    source = data or run_config.data.source
    sliceset = load_slices(
        source, size=models.vqvae.config.image_size, n_levels=run_config.data.n_levels
    )
    validate = sliceset.require_split("validate")
    return run_config, models, source, validate, split_subjects(validate.subject)


def method_maps(maps: MapSet, models, images: np.ndarray, config: AnomalyConfig) -> dict:
    """Every method's maps (N, H, W) for slices whose anomaly MapSet is `maps`."""
    d = models.vqvae.config.downsample
    recon = decode_codes(models.vqvae.model, maps.codes)  # (N, H, W) uint8
    return {
        "anomaly map (healing)": maps.maps,
        "reconstruction residual": reconstruction_residual_map(
            images, recon, maps.foreground, d, config
        ),
        "NLL map, no healing": nll_pixel_map(maps.nll, maps.foreground, d, config),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", help="the data source (default: the run's)")
    parser.add_argument("--alpha", type=float, help="false-positive rate (default 0.01; quick 0.1)")
    parser.add_argument("--n-heal", type=int, default=4)
    parser.add_argument("--test-slices", type=int, help="test slices (default 320; quick 32)")
    parser.add_argument(
        "--calibration-slices", type=int, help="calibration slices (default 512; quick 32)"
    )
    parser.add_argument("--lesion-share", type=float, default=0.5)
    parser.add_argument(
        "--naive-slices", type=int, help="slices timed with the naive sampler (default 2; quick 4)"
    )
    parser.add_argument(
        "--maps",
        choices=("run", "default", "legacy"),
        default="run",
        help="how the maps are made: the run's `anomaly:` settings (default), the current "
        "defaults of the settings added since runs were first saved (weight, brain), or their "
        "legacy values (the maps before them)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="default: the samplers' policy")
    parser.add_argument("--quick", action="store_true", help="a smoke test on few slices")
    args = parser.parse_args(argv)
    quick = args.quick
    alpha = args.alpha if args.alpha is not None else (0.1 if quick else 0.01)
    n_test = args.test_slices or (32 if quick else 320)
    n_cal = args.calibration_slices or (32 if quick else 512)
    n_naive = args.naive_slices or (4 if quick else 2)

    run_config, models, source, validate, (cal_part, test_part) = run_and_halves(
        args.run, args.data
    )
    rng = np.random.default_rng(args.seed)
    config = replace(run_config.anomaly, n_heal=args.n_heal, calibration_slices=n_cal)
    if args.maps != "run":
        defaults = AnomalyConfig()
        chosen = {k: getattr(defaults, k) for k in LEGACY_ANOMALY}
        config = replace(config, **(LEGACY_ANOMALY if args.maps == "legacy" else chosen))
    conditional = models.n_levels > 0

    def levels_of(part):
        return part.level.astype(np.int64) if conditional else None

    cal = validate.subset(cal_part)
    cal = cal.subset(np.sort(rng.permutation(len(cal))[:n_cal]))
    train_codes = load_codes(RunLayout(args.run).codes, "train")
    code_thr = code_threshold(models.slice_prior.model, train_codes, config)
    start = time.perf_counter()
    cal_maps = anomaly_maps(
        models,
        cal.images,
        levels_of(cal),
        code_thr,
        config,
        seed=args.seed,
        progress=True,
        threads=args.threads,
    )
    t_cal = time.perf_counter() - start
    thresholds = {}
    for name, maps in method_maps(cal_maps, models, cal.images, config).items():
        base = CalibrationMaps.of(maps, cal_maps.foreground)  # slice scores: the earlier kind
        stats = CalibrationMaps(
            base.values, base.counts, None, slice_scores(maps, config.score_share)
        )
        thresholds[name] = calibrate_thresholds(
            stats, alpha, code_thr, len(train_codes.codes), config
        )

    test = validate.subset(test_part)
    test = test.subset(np.sort(rng.permutation(len(test))[:n_test]))
    brains = brain_mask(test.images, config.foreground_level)
    eligible = brains.reshape(len(test), -1).mean(axis=1) >= MIN_BRAIN_SHARE
    lesioned = eligible & (rng.random(len(test)) < args.lesion_share)
    images = test.images.copy()
    labels = np.zeros(images.shape, dtype=bool)
    kinds = []
    for i in np.nonzero(lesioned)[0]:
        images[i], labels[i], info = plant_lesion(images[i], brains[i], rng, LesionSettings())
        kinds.append(info)
    start = time.perf_counter()
    test_maps = anomaly_maps(
        models,
        images,
        levels_of(test),
        code_thr,
        config,
        seed=args.seed + 1,
        progress=True,
        threads=args.threads,
    )
    t_test = time.perf_counter() - start
    brain = brains  # evaluated over the healthy anatomy's brain pixels
    rows = []
    for name, maps in method_maps(test_maps, models, images, config).items():
        cal_t = thresholds[name]
        pix = maps[brain]
        lab = labels[brain]
        scores = slice_scores(maps, config.score_share)
        mask = maps > cal_t.pixel_threshold
        free = ~lesioned
        stats = CalibrationMaps.of(maps[free], brain[free])
        share = flagged_share(stats.values, stats.counts, cal_t.pixel_threshold)
        rows.append(
            (
                name,
                average_precision(pix, lab),
                best_dice(pix, lab)[0],
                dice(mask[brain], lab),
                auroc(scores[eligible], lesioned[eligible]),
                share.mean(),
                share.std(ddof=1) / np.sqrt(len(share)) if len(share) > 1 else float("nan"),
                float((scores[free] > cal_t.slice_threshold).mean()),
            )
        )

    decisions = decision_rows(
        cal_maps.maps,
        cal_maps.foreground,
        test_maps.maps,
        brain,
        labels,
        lesioned,
        thresholds["anomaly map (healing)"].pixel_threshold,
        alpha,
        config,
    )

    # speed: one test subject's slices (a volume), then the naive sampler on a few of them
    subject = np.unique(test.subject)[0]
    volume = validate.subset(validate.subject == subject)
    volume = volume.subset(np.arange(min(VOLUME, len(volume))))
    start = time.perf_counter()
    anomaly_maps(
        models,
        volume.images,
        levels_of(volume),
        code_thr,
        config,
        seed=args.seed,
        threads=args.threads,
    )
    t_volume = time.perf_counter() - start
    few = volume.subset(np.arange(min(n_naive, len(volume))))
    timed = {}
    for sampler in ("cached", "naive"):
        start = time.perf_counter()
        timed[sampler] = anomaly_maps(
            models,
            few.images,
            levels_of(few),
            code_thr,
            config,
            seed=args.seed,
            sampler=sampler,
            threads=args.threads,
        )
        timed[sampler] = (timed[sampler], time.perf_counter() - start)
    same = all(
        np.array_equal(getattr(timed["cached"][0], f), getattr(timed["naive"][0], f))
        for f in ("maps", "healed_codes", "resampled")
    )

    n_lesion = int(lesioned.sum())
    threads = args.threads or "the samplers' policy"
    print(f"# {machine().describe()}; sampling threads: {threads}")
    print(
        f"run {args.run}; data {source}: validate subjects split in two halves; calibration "
        f"{len(cal)} healthy slices, test {len(test)} slices ({n_lesion} with a lesion, "
        f"{len(test) - n_lesion} lesion-free); lesion pixels {labels[brain].mean():.2%} of the "
        f"test brain pixels; alpha {alpha}; {args.n_heal} healings; code threshold "
        f"{code_thr:.3f} nats (resample share {config.resample_share}); map weight "
        f"{config.weight}, brain mask {config.brain}"
    )
    hyper = sum(k["intensity"] == "hyper" for k in kinds)
    blobs = sum(k["kind"] == "blob" for k in kinds)
    print(
        f"lesions: {hyper} hyper-, {n_lesion - hyper} hypo-intense; {blobs} blobs, "
        f"{n_lesion - blobs} ellipses"
    )
    print()
    print(
        "| method | pixel AUPRC | best Dice | Dice at calibrated t | slice AUROC | "
        "healthy pixels flagged (+- s.e.) | healthy slices flagged |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, ap, bd, dc, au, fpr, se, sfpr in rows:
        print(
            f"| {name} | {ap:.3f} | {bd:.3f} | {dc:.3f} | {au:.3f} | {fpr:.4f} +- {se:.4f} "
            f"| {sfpr:.3f} |"
        )
    print()
    ratio = rows[0][1] / rows[1][1] if rows[1][1] > 0 else float("inf")
    print(f"AUPRC anomaly map / reconstruction residual: {ratio:.2f}x (target >= 1.5x)")
    print(f"healthy pixels flagged vs alpha {alpha}: {rows[0][5]:.4f} +- {rows[0][6]:.4f}")
    print()
    bins = " | ".join(f"lesion {100 * lo:g}-{100 * hi:g}% of brain" for lo, hi in SIZE_BINS)
    print(f"slice decisions of the anomaly map at alpha {alpha} (share of slices flagged):")
    print(f"| slice score | healthy slices | {bins} | lesion >= 1.5% of brain |")
    print("| --- | ---: |" + " ---: |" * (len(SIZE_BINS) + 1))
    for when, (healthy, per_bin, counts, large) in decisions.items():
        cells = " | ".join(f"{v:.2f} (n {n})" for v, n in zip(per_bin, counts, strict=True))
        print(f"| {when}: {DECISIONS[when]} | {healthy:.3f} | {cells} | {large:.2f} |")
    print()
    print("| timing | slices | seconds |")
    print("| --- | ---: | ---: |")
    print(f"| calibration (cached) | {len(cal)} | {t_cal:.1f} |")
    print(f"| test set (cached) | {len(test)} | {t_test:.1f} |")
    print(f"| one volume, cached (target <= 30 s for 32) | {len(volume)} | {t_volume:.1f} |")
    print(f"| cached | {len(few)} | {timed['cached'][1]:.2f} |")
    t_naive = timed["naive"][1]
    print(f"| naive | {len(few)} | {t_naive:.2f} |")
    print()
    print(
        f"naive / cached on {len(few)} slices: {t_naive / timed['cached'][1]:.1f}x; "
        f"identical maps: {'yes' if same else 'NO'}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
