"""PyTorch fp32 vs ONNX fp32 vs ONNX int8 (dynamic quantization) for the VQ-VAE, side by side.

For each: model size (MB on disk), encode+decode throughput (images/s, batch 32, a few
repeats, 2 threads) and round-trip quality: SSIM of the reconstruction vs the input, and how
far it is from PyTorch's (share of identical code indices, max abs difference of the images).
With --run, the run's VQ-VAE on its own data (test split, else validate); without, a
default-config VQ-VAE with random weights on demo-cohort slices (so SSIM vs the input says
nothing about a trained model; the agreement columns still do).

    .venv/bin/python benchmarks/bench_export.py [--run RUN] [--batch 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from brainvq.app.pipeline import run_slices
from brainvq.data import load_slices
from brainvq.hardware import machine
from brainvq.io.bundle import WEIGHTS_FILE, Bundle, load_vqvae, save_bundle
from brainvq.io.onnx import (
    DECODER_FILE,
    DECODER_INT8_FILE,
    ENCODER_FILE,
    ENCODER_INT8_FILE,
    export_onnx,
)
from brainvq.metrics import ssim
from brainvq.models.vqvae import VQVAE, VQVAEConfig
from brainvq.run import load_run

SEED = 0
DEMO_SUBJECTS = (1, 1, 2)  # the test split: 2 subjects x 32 slices
Codec = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def model_and_images(run: Path | None, n_images: int) -> tuple[Bundle, np.ndarray, str]:
    """(the bundle, images (N, 1, S, S) float32 in [0, 1], a description of both)."""
    if run is not None:
        bundle = load_vqvae(run)
        slices = run_slices(load_run(run), progress=False)
        split = slices.eval_split()
        slices = slices.require_split(split)
        what = f"the VQ-VAE of {run} on {split} slices of {slices.source}"
    else:
        torch.manual_seed(SEED)
        config = VQVAEConfig()
        bundle = Bundle(VQVAE(config).eval(), config, {}, Path("random-weights"))
        slices = load_slices("demo", size=config.image_size, demo_subjects=DEMO_SUBJECTS)
        slices = slices.require_split("test")
        what = "a default-config VQ-VAE with RANDOM weights (no --run) on demo-cohort test slices"
    images = slices.images[:n_images].astype(np.float32) / 255.0  # (N, S, S)
    return bundle, images[:, None], what


def torch_codec(model: VQVAE) -> Codec:
    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            indices = model.encode(torch.from_numpy(x))
            return indices.numpy(), model.decode_indices(indices).numpy()

    return run


def onnx_codec(encoder: Path, decoder: Path, threads: int) -> Codec:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    enc, dec = (
        ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
        for p in (encoder, decoder)
    )

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = enc.run(None, {"images": x})[0]
        return indices, dec.run(None, {"indices": indices})[0]

    return run


def throughput(codec: Codec, batch: np.ndarray, repeats: int) -> float:
    """Images per second for encode+decode of `batch`: median of `repeats` timed runs."""
    codec(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        codec(batch)
        times.append(time.perf_counter() - start)
    return len(batch) / statistics.median(times)


def round_trip(codec: Codec, images: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (N, h, w) and reconstructions (N, 1, S, S) clamped to [0, 1], in batches."""
    parts = [codec(images[i : i + batch]) for i in range(0, len(images), batch)]
    indices = np.concatenate([p[0] for p in parts])
    return indices, np.clip(np.concatenate([p[1] for p in parts]), 0.0, 1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run directory (default: random weights)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-images", type=int, default=64, help="slices scored for SSIM")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle, images, what = model_and_images(args.run, args.n_images)
    if len(images) < args.batch:
        raise SystemExit(f"need at least --batch={args.batch} slices, got {len(images)}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        save_bundle(out / "VQVAE_Model", bundle.model, bundle.config, kind="vqvae")
        manifest = export_onnx(bundle, out / "onnx", quantize=True)
        sizes = {
            "PyTorch fp32": (out / "VQVAE_Model" / WEIGHTS_FILE).stat().st_size,
            "ONNX fp32": sum(manifest["file_bytes"][f] for f in (ENCODER_FILE, DECODER_FILE)),
            "ONNX int8": sum(
                manifest["file_bytes"][f] for f in (ENCODER_INT8_FILE, DECODER_INT8_FILE)
            ),
        }
        codecs = {
            "PyTorch fp32": torch_codec(bundle.model),
            "ONNX fp32": onnx_codec(
                out / "onnx" / ENCODER_FILE, out / "onnx" / DECODER_FILE, args.threads
            ),
            "ONNX int8": onnx_codec(
                out / "onnx" / ENCODER_INT8_FILE, out / "onnx" / DECODER_INT8_FILE, args.threads
            ),
        }
        reference = round_trip(codecs["PyTorch fp32"], images, args.batch)
        x = torch.from_numpy(images)
        size = bundle.config.image_size
        print(f"# {machine().describe()}; fp32 PyTorch, onnxruntime {ort.__version__}")
        print(f"model: {what}")
        print(
            f"{len(images)} slices of {size}x{size}; throughput: encode+decode of a batch of "
            f"{args.batch}, median of {args.repeats} runs, {args.threads} threads, "
            f"torch {torch.__version__}, onnxruntime {ort.__version__}"
        )
        header = (
            f"{'variant':<13} {'size MB':>8} {'images/s':>9} {'SSIM vs input':>14} "
            f"{'codes = PyTorch':>16} {'max |diff| vs PyTorch':>22}"
        )
        print(header)
        print("-" * len(header))
        for name, codec in codecs.items():
            speed = throughput(codec, images[: args.batch], args.repeats)
            indices, recon = round_trip(codec, images, args.batch)
            score = float(ssim(torch.from_numpy(recon), x).mean())
            agree = float(np.mean(indices == reference[0]))
            diff = float(np.abs(recon - reference[1]).max())
            print(
                f"{name:<13} {sizes[name] / 1e6:>8.3f} {speed:>9.1f} {score:>14.4f} "
                f"{agree:>16.2%} {diff:>22.2e}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
