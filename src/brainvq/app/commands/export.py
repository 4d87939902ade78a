"""`brainvq export`: ONNX encoder/decoder for edge devices, or a trusted checkpoint to a bundle."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export the VQ-VAE to ONNX, or convert a trusted Lightning checkpoint to a bundle",
        description=(
            "With --run or --model: write encoder.onnx, decoder.onnx and export.json to --out "
            "(and int8 versions with --quantize int8). With --from-ckpt: convert a Lightning "
            "checkpoint you trust into a VQVAE_Model/ or PixelCNN_Model/ bundle inside --out."
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
        choices=["int8"],
        help="also write int8 models (onnxruntime dynamic quantization)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from brainvq.app.cli import CliError
    from brainvq.io.checkpoint import checkpoint_to_bundle
    from brainvq.io.onnx import export_onnx

    if args.from_ckpt is not None:
        if args.quantize:
            raise CliError("--quantize applies to ONNX export, not to --from-ckpt")
        folder = checkpoint_to_bundle(args.from_ckpt, args.out)
        print(f"wrote the model bundle {folder} (converted from {args.from_ckpt})")
        return 0
    if args.run is not None and not args.run.is_dir():
        raise FileNotFoundError(f"run directory not found: {args.run}")
    try:
        manifest = export_onnx(args.run or args.model, args.out, quantize=args.quantize == "int8")
    except ImportError as e:
        raise CliError(str(e)) from None
    for name, size in manifest["file_bytes"].items():
        print(f"wrote {args.out / name} ({size / 1e6:.2f} MB)")
    for name, check in manifest["checks"].items():
        if isinstance(check, dict):
            print(
                f"check {name}: indices agree {check['index_agreement']:.1%}, decoder max abs "
                f"difference {check['decoder_max_abs_diff']:.2g}"
            )
    print(f"described in {args.out / 'export.json'}")
    return 0
