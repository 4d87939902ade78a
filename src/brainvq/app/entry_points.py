"""The original project's entry points: `python train.py` and `python predict.py [-m PATH]`.

Both report errors as `brainvq` does (brainvq.app.cli.guarded): one line, exit code 2.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from brainvq.app.cli import CliError, guarded
from brainvq.app.commands.train import (
    add_training_flags,
    say_resume,
    show_trained,
    stage_overrides,
)
from brainvq.app.flags import Parser, apply_rules
from brainvq.app.quiet_log import quiet_third_party_lines
from brainvq.hardware import keep_freed_memory

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


def train_parser() -> Parser:
    p = Parser(prog="train.py", description="Train the VQ-VAE and the PixelCNN prior.")
    p.add_argument(
        "--data", help="data source (default: OASIS at a default path if present, else demo)"
    )
    p.add_argument("--size", type=int)
    p.add_argument("--out", type=Path, help="run directory (default: runs/run-<time>)")
    add_training_flags(p)
    return apply_rules(p)


def train_main(argv: list[str] | None = None) -> int:
    """`python train.py`: the full pipeline (both stages, evaluation, report)."""
    args = train_parser().parse_args(argv)
    keep_freed_memory()
    quiet_third_party_lines()

    def run() -> int:
        from brainvq.app.pipeline import train_all
        from brainvq.app.presets import prepare_training_run

        if args.data is None:
            args.data, why = default_source()
            print(f"train.py: {why}")
        run_dir = args.out or RUNS_DIR / time.strftime("run-%Y%m%d-%H%M%S")
        overrides = stage_overrides(args, ("vqvae", "prior"))
        config, note = prepare_training_run(run_dir, args.config, args.data, overrides)
        if note:
            print(f"train.py: {note}")
        print(f"train.py: data {args.data}, run directory {run_dir}")
        say_resume(run_dir, args.resume)
        show_trained(train_all(run_dir, config, resume=args.resume), run_dir)
        return 0

    return guarded("train.py", run)


def latest_model() -> Path | None:
    """The VQVAE_Model of the most recently trained run under runs/, if any."""
    from brainvq.run import RunLayout

    found = sorted(
        (p for p in RUNS_DIR.glob("*") if RunLayout(p).bundle("vqvae").is_dir()),
        key=lambda p: RunLayout(p).bundle("vqvae").stat().st_mtime,
    )
    return RunLayout(found[-1]).bundle("vqvae") if found else None


def predict_parser() -> Parser:
    p = Parser(prog="predict.py", description="Reconstruct and generate with a trained model.")
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
    return apply_rules(p)


def predict_main(argv: list[str] | None = None) -> int:
    """`python predict.py [-m PATH]`: reconstruct, sample, write figures, print metrics."""
    args = predict_parser().parse_args(argv)
    keep_freed_memory()
    quiet_third_party_lines()

    def run() -> int:
        from brainvq.app.predict import predict
        from brainvq.io.bundle import load_vqvae
        from brainvq.report.summary import print_summary

        fallback = latest_model()
        model_path = args.model or fallback
        if model_path is None:
            raise CliError(
                "no trained model found under runs/; train one first with `python train.py` "
                "(or `brainvq demo`), or pass -m PATH/VQVAE_Model"
            )
        try:
            bundle = load_vqvae(model_path)
        except (ValueError, OSError) as e:
            if args.strict or args.model is None or fallback is None or fallback == model_path:
                raise CliError(f"cannot load the model at {model_path}: {e}") from None
            print(
                f"predict.py: WARNING: cannot load the model at {model_path} ({e}); falling "
                f"back to the default model {fallback} (pass --strict to make this an error)",
                file=sys.stderr,
            )
            bundle = load_vqvae(fallback)
        done = predict(bundle, data=args.data, split=args.split, out_dir=args.out)
        title = f"brainvq predict: {bundle.path} on {done.source} ({done.split})"
        print_summary(done.metrics, title=title)
        for path, caption in done.figures:
            print(f"{path}: {caption}")
        return 0

    return guarded("predict.py", run)
