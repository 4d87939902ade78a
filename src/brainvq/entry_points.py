"""The original project's entry points: `python train.py` and `python predict.py [-m PATH]`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from brainvq.commands.train import add_training_flags, stage_overrides

RUNS_DIR = Path("runs")
DEFAULT_OASIS = (
    Path("keras_png_slices_data.zip"),
    Path("keras_png_slices_data"),
    Path("data/keras_png_slices_data.zip"),
    Path("data/keras_png_slices_data"),
    Path("../shared/oasis"),
)


def default_source() -> tuple[str, str]:
    """(source, why): an OASIS folder or zip at a default path if present, else the demo cohort."""
    for path in DEFAULT_OASIS:
        if path.exists():
            return str(path), f"found OASIS data at {path}"
    return "demo", "no OASIS data at " + ", ".join(
        map(str, DEFAULT_OASIS)
    ) + "; using the demo cohort"


def default_config(source: str) -> Path:
    import torch

    from brainvq.pipeline import packaged_config

    if source == "demo":
        return packaged_config("demo")
    return packaged_config("oasis" if torch.cuda.is_available() else "oasis_cpu")


def train_main(argv: list[str] | None = None) -> int:
    """`python train.py`: the full pipeline (both stages, evaluation, report)."""
    from brainvq.pipeline import prepare_run, train_all

    p = argparse.ArgumentParser(
        prog="train.py", description="Train the VQ-VAE and the PixelCNN prior."
    )
    p.add_argument(
        "--data", help="data source (default: OASIS at a default path if present, else demo)"
    )
    p.add_argument("--size", type=int)
    p.add_argument("--out", type=Path, help="run directory (default: runs/run-<time>)")
    add_training_flags(p)
    args = p.parse_args(argv)
    try:
        if args.data is None:
            args.data, why = default_source()
            print(f"train.py: {why}")
        run_dir = args.out or RUNS_DIR / time.strftime("run-%Y%m%d-%H%M%S")
        config_file = args.config or default_config(args.data)
        print(f"train.py: data {args.data}, config {config_file}, run directory {run_dir}")
        config = prepare_run(run_dir, config_file, stage_overrides(args, ("vqvae", "prior")))
        train_all(run_dir, config, resume=args.resume)
    except (ValueError, FileNotFoundError, NotADirectoryError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    return 0


def latest_model() -> Path | None:
    """The VQVAE_Model of the most recently trained run under runs/, if any."""
    found = sorted(
        RUNS_DIR.glob("*/vqvae/VQVAE_Model/model.safetensors"), key=lambda p: p.stat().st_mtime
    )
    return found[-1].parent if found else None


def predict_main(argv: list[str] | None = None) -> int:
    """`python predict.py [-m PATH]`: reconstruct, sample, write figures, print metrics."""
    from brainvq.bundle import load_vqvae
    from brainvq.predict import predict

    p = argparse.ArgumentParser(
        prog="predict.py", description="Reconstruct and generate with a trained model."
    )
    p.add_argument(
        "-m",
        "--model",
        type=Path,
        help="a VQVAE_Model folder or a run directory (default: latest run)",
    )
    p.add_argument("--data", help="data to reconstruct (default: the run's)")
    p.add_argument(
        "--split", default=None, help="split to reconstruct (default: test, else validate)"
    )
    p.add_argument("--out", type=Path, help="output folder (default: RUN/predict)")
    p.add_argument(
        "--strict", action="store_true", help="fail instead of falling back to the default model"
    )
    args = p.parse_args(argv)
    fallback = latest_model()
    model_path = args.model or fallback
    if model_path is None:
        print(
            "predict.py: error: no trained model found under runs/; train one first with "
            "`python train.py` (or `brainvq demo`), or pass -m PATH/VQVAE_Model",
            file=sys.stderr,
        )
        return 2
    try:
        bundle = load_vqvae(model_path)
    except (ValueError, FileNotFoundError, NotADirectoryError) as e:
        if (
            args.strict
            or args.model is None
            or fallback is None
            or Path(fallback) == Path(model_path)
        ):
            print(f"predict.py: error: cannot load the model at {model_path}: {e}", file=sys.stderr)
            return 2
        print(
            f"predict.py: WARNING: cannot load the model at {model_path} ({e}); "
            "falling back to the "
            f"default model {fallback} (pass --strict to make this an error)",
            file=sys.stderr,
        )
        bundle = load_vqvae(fallback)
    try:
        predict(bundle, data=args.data, split=args.split, out_dir=args.out)
    except (ValueError, FileNotFoundError, NotADirectoryError) as e:
        print(f"predict.py: error: {e}", file=sys.stderr)
        return 2
    return 0
