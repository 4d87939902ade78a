"""`brainvq anomaly`: anomaly maps with a run's prior; `brainvq anomaly calibrate`: its thresholds.

One subcommand with an optional positional action: `brainvq anomaly --run RUN --input PATH --out
DIR` maps the input and decides slices and scans (calibrating first if no calibration for its
settings is stored: kept in the user's cache, the run folder is only read), `brainvq anomaly
calibrate --run RUN [--healthy PATH]` calibrates into the run (RUN/anomaly/), on the run's
validate split or on the user's healthy scans."""

from __future__ import annotations

import argparse
from pathlib import Path

ACTIONS = ("calibrate",)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "anomaly",
        help="anomaly maps of a PNG, a folder, a NIfTI volume or an OASIS set (or `calibrate`)",
        description=(
            "Anomaly maps from the prior's likelihood: unlikely codes are resampled (healed) and "
            "the difference between a slice and its healed versions is the map. Thresholds are "
            "calibrated on the run's healthy validate slices so that, on average, at most ALPHA "
            "of a healthy slice's brain pixels are flagged."
        ),
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=ACTIONS,
        help="`calibrate`: only (re)calibrate the run's thresholds",
    )
    p.add_argument("--run", type=Path, required=True)
    p.add_argument(
        "--input",
        help="a PNG/JPEG, a folder of them, a volume (NIfTI, MGZ, NRRD/MHA) or a folder of them, "
        "a DICOM series' folder or DICOMDIR, a BIDS tree, an OASIS set",
    )
    p.add_argument(
        "--series",
        help="a DICOM input's series to take (with --input, or --healthy): its SeriesNumber or "
        "SeriesInstanceUID (default: each study's T1 series, when only one is plausible)",
    )
    p.add_argument("--out", type=Path, help="the output folder")
    p.add_argument(
        "--alpha",
        type=float,
        default=0.01,
        help="false-positive rate of healthy pixels and of healthy slices (default 0.01)",
    )
    p.add_argument(
        "--scan-alpha",
        type=float,
        help="false-positive rate of healthy scans (volumes, or subjects of 2D slices; default: "
        "--alpha)",
    )
    p.add_argument(
        "--n-heal",
        type=int,
        help="independent healings per slice (default: the run config's anomaly.n_heal, 4)",
    )
    p.add_argument(
        "--level", type=int, help="level of slices whose name or position does not give one"
    )
    p.add_argument(
        "--mask",
        type=Path,
        help="a NIfTI input's brain mask on its own voxels (default: its own when skull-stripped, "
        "else the template's carried by the registration)",
    )
    p.add_argument(
        "--healthy",
        type=Path,
        help="with `calibrate`: calibrate on these healthy scans (a NIfTI volume, a folder of "
        "them, or of slices) instead of the run's validate split",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the healing draws")
    p.add_argument("--sampler", choices=["cached", "naive"], default="cached")
    p.add_argument(
        "--threads",
        type=int,
        help="torch threads while healing (default: 1 for a few maps, every core for many)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from brainvq.app.anomaly.calibration import calibrate_run
    from brainvq.app.anomaly.files import write_anomalies
    from brainvq.app.anomaly.find import check_options, find_anomalies
    from brainvq.atomic import output_folder

    check_options(args.alpha, args.n_heal, args.seed, args.scan_alpha)
    if args.action == "calibrate":
        given = (args.input, args.out, args.level, args.mask, args.scan_alpha)
        if any(v is not None for v in given):
            raise ValueError(
                "`brainvq anomaly calibrate` takes no --input, --out, --level, --mask or "
                "--scan-alpha (--healthy PATH: calibrate on your own healthy scans)"
            )
        cal = calibrate_run(
            args.run,
            args.alpha,
            args.n_heal,
            healthy=args.healthy,
            sampler=args.sampler,
            threads=args.threads,
            series=args.series,
        )
        print(
            f"calibrated on {cal.n_slices} healthy slices of {cal.source} at alpha {cal.alpha}: "
            f"code threshold {cal.code_threshold:.3f} nats, pixel threshold "
            f"{cal.pixel_threshold:.4f}, slice threshold {cal.slice_threshold:.4f} "
            f"({cal.slice_score}; on those slices: {cal.calibration_flagged_share:.4f} of brain "
            f"pixels and {cal.calibration_flagged_slices:.3f} of slices flagged); stored in "
            f"{args.run / 'anomaly'}"
        )
        return 0
    if args.input is None or args.out is None:
        raise ValueError("--input and --out are required (or give the action `calibrate`)")
    if args.healthy is not None:
        raise ValueError("--healthy goes with `brainvq anomaly calibrate`")
    output_folder(args.out)  # fail before any work when --out is a file
    result = find_anomalies(
        args.run,
        args.input,
        alpha=args.alpha,
        scan_alpha=args.scan_alpha,
        n_heal=args.n_heal,
        level=args.level,
        seed=args.seed,
        mask=args.mask,
        sampler=args.sampler,
        threads=args.threads,
        series=args.series,
    )
    write_anomalies(result, args.out)
    for note in result.notes:
        print(f"note: {note}")
    for answer in result.scans:
        print(answer.line())
    cal = result.calibration
    scans = ""
    if result.scans:
        flagged = sum(a.flagged for a in result.scans)
        scans = f"{flagged} of {len(result.scans)} scans flagged at scan alpha {cal.scan_alpha}; "
    print(
        f"{int(result.flagged.sum())} of {len(result.names)} slices flagged at alpha "
        f"{cal.alpha}; {scans}wrote {args.out / 'anomaly_maps.npz'} (maps, masks, names), "
        f"scores.csv, a PNG per slice, grid.png and summary.json to {args.out}"
    )
    return 0
