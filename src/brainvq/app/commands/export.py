"""`brainvq export`: ONNX encoder/decoder (and prior steps) for edge devices, or a trusted
checkpoint to a bundle."""

from __future__ import annotations

import argparse
from pathlib import Path

from brainvq.app.export import DEFAULT_CALIBRATION


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export the VQ-VAE (and prior) to ONNX, or convert a trusted Lightning checkpoint",
        description=(
            "With --run or --model: write encoder.onnx, decoder.onnx, export.json and "
            "brainvq_edge.py to --out (and int8 versions with --quantize; the prior's sampler "
            "steps with --with-prior). With --from-ckpt: convert a Lightning checkpoint you "
            "trust into a VQVAE_Model/ or PixelCNN_Model/ bundle inside --out."
        ),
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="a run directory (uses RUN/vqvae/VQVAE_Model)")
    source.add_argument("--model", type=Path, help="a VQVAE_Model folder")
    source.add_argument(
        "--from-ckpt",
        type=Path,
        metavar="FILE.ckpt",
        help="a Lightning checkpoint to convert (loaded with weights_only=True)",
    )
    p.add_argument("--out", type=Path, required=True, help="the output folder")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format (onnx)")
    p.add_argument(
        "--quantize",
        choices=["int8", "int8-static"],
        help=(
            "also write int8 models: int8 = onnxruntime dynamic quantization, int8-static = "
            "QDQ static quantization calibrated on the run's training slices (needs --run)"
        ),
    )
    p.add_argument(
        "--calibration",
        type=int,
        metavar="N",
        help=f"training slices to calibrate int8-static on (default {DEFAULT_CALIBRATION})",
    )
    p.add_argument(
        "--with-prior",
        action="store_true",
        help="also export the prior's sampler steps (RUN/prior/PixelCNN_Model; needs --run)",
    )
    p.set_defaults(func=run)


def _check_flags(args: argparse.Namespace) -> None:
    from brainvq.app.cli import CliError

    if args.from_ckpt is not None:
        for flag, value in (("--quantize", args.quantize), ("--with-prior", args.with_prior)):
            if value:
                raise CliError(f"{flag} applies to ONNX export, not to --from-ckpt")
    if args.calibration is not None and args.quantize != "int8-static":
        raise CliError("--calibration applies to --quantize int8-static only")
    if args.quantize == "int8-static" and args.run is None:
        raise CliError("--quantize int8-static needs --run: it calibrates on the run's slices")
    if args.with_prior and args.run is None:
        raise CliError("--with-prior needs --run: the prior is RUN/prior/PixelCNN_Model")


def run(args: argparse.Namespace) -> int:
    from brainvq.app.cli import CliError
    from brainvq.app.export import export_run
    from brainvq.io.checkpoint import checkpoint_to_bundle

    _check_flags(args)
    if args.from_ckpt is not None:
        folder = checkpoint_to_bundle(args.from_ckpt, args.out)
        print(f"wrote the model bundle {folder} (converted from {args.from_ckpt})")
        return 0
    if args.run is not None and not args.run.is_dir():
        raise FileNotFoundError(f"run directory not found: {args.run}")
    try:
        manifest = export_run(
            args.run or args.model,
            args.out,
            quantize=args.quantize,
            calibration=args.calibration,
            with_prior=args.with_prior,
        )
    except ImportError as e:
        raise CliError(str(e)) from None
    for name, size in manifest["file_bytes"].items():
        print(f"wrote {args.out / name} ({size / 1e6:.2f} MB)")
    for name, check in manifest["checks"].items():
        if isinstance(check, dict) and "index_agreement" in check:
            print(
                f"check {name}: indices agree {check['index_agreement']:.1%}, decoder max abs "
                f"difference {check['decoder_max_abs_diff']:.2g}"
            )
        elif isinstance(check, dict):
            print(f"check {name}: logits max abs difference {check['logits_max_abs_diff']:.2g}")
    print(f"described in {args.out / 'export.json'}")
    return 0
