"""The VQ-VAE for deployment: PyTorch fp32, ONNX fp32, ONNX int8 (dynamic, static), pruned
models; and the torch-free edge sampler against the PyTorch cached sampler.

Table 1, one row per variant: file size (MB on disk), parameters, MFLOPs of encode + decode of
one image, encode+decode throughput (images/s, a batch, median of a few repeats, --threads
threads), SSIM of the reconstruction vs the input, and the share of codes identical to the
unpruned fp32 PyTorch model's. Table 2: slices/s generated (sample the code maps, then decode)
by brainvq.edge (numpy + onnxruntime) and by the PyTorch cached sampler, both on the same
uniforms, and the share of codes they agree on.

With --run: the run's VQ-VAE and prior on its own data (test split, else validate), int8-static
calibrated on --calibration training slices, and pruned models made as `brainvq prune` makes
them (each amount in --prune-amounts, fine-tuned --finetune-minutes) in --pruned-dir (a run
there from an earlier call is reused). Without --run: default-config models with RANDOM weights
on demo-cohort slices, pruned without fine-tuning (SSIM vs the input says nothing then; the
speed and agreement columns still do).

    .venv/bin/python benchmarks/bench_export.py [--run RUN] [--quick]
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

from brainvq.app.run_data import run_slices
from brainvq.data import load_slices
from brainvq.edge import EdgeModel
from brainvq.hardware import machine
from brainvq.inference.codes import decode_codes
from brainvq.inference.sampling import sample
from brainvq.io.bundle import WEIGHTS_FILE, Bundle, load_prior, load_vqvae, save_bundle
from brainvq.io.onnx import DECODER_FILE, ENCODER_FILE, export_onnx
from brainvq.io.onnx_quantize import QUANTIZED_FILES
from brainvq.metrics import ssim
from brainvq.models.pixelcnn import GatedPixelCNN, PixelCNNConfig
from brainvq.models.vqvae import VQVAE, VQVAEConfig
from brainvq.run import RunLayout, load_run
from brainvq.training.pruning import model_cost, prune_vqvae

SEED = 0
DEMO_SUBJECTS = (4, 1, 2)  # train (calibration), validate, test: 32 slices per subject
Codec = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def models_and_data(args: argparse.Namespace) -> tuple[Bundle, Bundle, np.ndarray, np.ndarray, str]:
    """(VQ-VAE, prior, images (N, 1, S, S) float32 in [0, 1], calibration (M, S, S) uint8,
    a description)."""
    if args.run is not None:
        vqvae, prior = load_vqvae(args.run), load_prior(args.run)
        slices = run_slices(load_run(args.run), progress=False)
        split = slices.eval_split()
        part = slices.require_split(split)
        what = f"the VQ-VAE and prior of {args.run} on {split} slices of {slices.source}"
    else:
        torch.manual_seed(SEED)
        config = VQVAEConfig()
        vqvae = Bundle(VQVAE(config).eval(), config, {}, Path("random-weights"))
        prior_config = PixelCNNConfig(codebook_size=config.codebook_size, n_levels=32)
        prior = Bundle(GatedPixelCNN(prior_config).eval(), prior_config, {}, Path("random-weights"))
        slices = load_slices("demo", size=config.image_size, demo_subjects=DEMO_SUBJECTS)
        part = slices.require_split("test")
        what = "default-config models with RANDOM weights (no --run) on demo-cohort test slices"
    train = slices.require_split("train").images
    n = min(args.calibration, len(train))
    calibration = train[np.linspace(0, len(train) - 1, n).round().astype(int)]
    images = part.images[: args.n_images].astype(np.float32) / 255.0  # (N, S, S)
    return vqvae, prior, images[:, None], calibration, what


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


def pruned_models(args: argparse.Namespace, vqvae: Bundle, folder: Path) -> dict[float, Bundle]:
    """amount -> the pruned VQ-VAE: fine-tuned runs with --run, else pruned random weights."""
    out = {}
    for amount in args.prune_amounts:
        if args.run is None:
            result = prune_vqvae(vqvae.model, amount)
            out[amount] = Bundle(result.model, result.config, {}, Path("random-weights"))
            continue
        from brainvq.app.prune import prune_run

        run = folder / f"pruned_{amount:g}"
        if RunLayout(run).bundle("vqvae").is_dir():
            print(f"reusing the pruned run {run}")
        else:
            prune_run(args.run, amount, args.finetune_minutes, run)
        out[amount] = load_vqvae(run)
    return out


def codec_table(args: argparse.Namespace, vqvae: Bundle, prior: Bundle, images, calibration, tmp):
    """Rows of table 1: (name, bytes, parameters, MFLOPs, images/s, SSIM, codes identical),
    and the folder of the export with the prior. Exports go to `tmp`."""
    save_bundle(tmp / "VQVAE_Model", vqvae.model, vqvae.config, kind="vqvae")
    dynamic = export_onnx(vqvae, tmp / "dynamic", quantize="int8", prior=prior)
    static = export_onnx(vqvae, tmp / "static", quantize="int8-static", calibration=calibration)
    cost = model_cost(vqvae.model)
    sizes_d, sizes_s = dynamic["file_bytes"], static["file_bytes"]
    fp32_bytes = sizes_d[ENCODER_FILE] + sizes_d[DECODER_FILE]
    (enc_d, dec_d), (enc_s, dec_s) = QUANTIZED_FILES["int8"], QUANTIZED_FILES["int8-static"]
    t = args.threads
    variants = [
        (
            "PyTorch fp32",
            torch_codec(vqvae.model),
            (tmp / "VQVAE_Model" / WEIGHTS_FILE).stat().st_size,
            cost,
        ),
        (
            "ONNX fp32",
            onnx_codec(tmp / "dynamic" / ENCODER_FILE, tmp / "dynamic" / DECODER_FILE, t),
            fp32_bytes,
            cost,
        ),
        (
            "ONNX int8 dynamic",
            onnx_codec(tmp / "dynamic" / enc_d, tmp / "dynamic" / dec_d, t),
            sizes_d[enc_d] + sizes_d[dec_d],
            cost,
        ),
        (
            "ONNX int8 static",
            onnx_codec(tmp / "static" / enc_s, tmp / "static" / dec_s, t),
            sizes_s[enc_s] + sizes_s[dec_s],
            cost,
        ),
        (
            "ONNX fp32 enc + int8 static dec",
            onnx_codec(tmp / "static" / ENCODER_FILE, tmp / "static" / dec_s, t),
            sizes_s[ENCODER_FILE] + sizes_s[dec_s],
            cost,
        ),
    ]
    for amount, bundle in pruned_models(args, vqvae, args.pruned_dir or tmp).items():
        folder = tmp / f"pruned_onnx_{amount:g}"
        manifest = export_onnx(bundle, folder)
        save_bundle(folder / "VQVAE_Model", bundle.model, bundle.config, kind="vqvae")
        c = model_cost(bundle.model)
        onnx_bytes = manifest["file_bytes"][ENCODER_FILE] + manifest["file_bytes"][DECODER_FILE]
        torch_bytes = (folder / "VQVAE_Model" / WEIGHTS_FILE).stat().st_size
        variants.append(
            (f"pruned {amount:g} PyTorch fp32", torch_codec(bundle.model), torch_bytes, c)
        )
        codec = onnx_codec(folder / ENCODER_FILE, folder / DECODER_FILE, t)
        variants.append((f"pruned {amount:g} ONNX fp32", codec, onnx_bytes, c))
    reference = round_trip(variants[0][1], images, args.batch)[0]
    x = torch.from_numpy(images)
    rows = []
    for name, codec, size, c in variants:
        speed = throughput(codec, images[: args.batch], args.repeats)
        indices, recon = round_trip(codec, images, args.batch)
        score = float(ssim(torch.from_numpy(recon), x).mean())
        rows.append(
            (
                name,
                size,
                c["parameters"],
                c["mflops"],
                speed,
                score,
                float(np.mean(indices == reference)),
            )
        )
    return rows, tmp / "dynamic"


def sampler_table(args: argparse.Namespace, vqvae: Bundle, prior: Bundle, folder: Path):
    """Rows of table 2: (sampler, slices/s, codes identical to the PyTorch sampler's)."""
    n, h = args.samples, vqvae.config.latent_size
    level = prior.config.n_levels // 2 if prior.config.n_levels else None
    g = torch.Generator().manual_seed(SEED)
    uniforms = torch.rand(n, h, h, generator=g, dtype=torch.float64).numpy()
    start = time.perf_counter()
    want = sample(prior.model, n, (h, h), level=level, seed=SEED)
    decode_codes(vqvae.model, want.numpy())
    torch_s = time.perf_counter() - start
    edge = EdgeModel(folder, threads=args.threads)
    edge.decode(want.numpy()[:1])  # the decoder session starts outside the timing
    start = time.perf_counter()
    got = edge.sample(n, level, uniforms=uniforms)
    edge.decode(got)
    edge_s = time.perf_counter() - start
    same = float(np.mean(got == want.numpy()))
    return [
        ("PyTorch cached sampler", n / torch_s, 1.0),
        ("brainvq.edge (numpy + ONNX)", n / edge_s, same),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run directory (default: random weights)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-images", type=int, default=64, help="slices scored for SSIM")
    parser.add_argument(
        "--calibration", type=int, default=128, help="int8-static calibration slices"
    )
    parser.add_argument("--prune-amounts", type=float, nargs="*", default=[0.3, 0.6])
    parser.add_argument("--finetune-minutes", type=float, default=5.0)
    parser.add_argument(
        "--pruned-dir", type=Path, help="where the pruned runs go (default: temporary)"
    )
    parser.add_argument("--samples", type=int, default=16, help="slices generated per sampler")
    parser.add_argument("--quick", action="store_true", help="a smoke run (under a minute)")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.repeats, args.n_images, args.calibration, args.samples = 16, 2, 32, 32, 2
        args.finetune_minutes = 0.0
    torch.set_num_threads(args.threads)
    vqvae, prior, images, calibration, what = models_and_data(args)
    if len(images) < args.batch:
        raise SystemExit(f"need at least --batch={args.batch} slices, got {len(images)}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.pruned_dir is not None:
            args.pruned_dir.mkdir(parents=True, exist_ok=True)
        rows, folder = codec_table(args, vqvae, prior, images, calibration, tmp)
        samplers = sampler_table(args, vqvae, prior, folder)
    size = vqvae.config.image_size
    print(f"# {machine().describe()}; torch {torch.__version__}, onnxruntime {ort.__version__}")
    print(f"models: {what}")
    print(
        f"{len(images)} slices of {size}x{size}; encode+decode of a batch of {args.batch}, "
        f"median of {args.repeats} runs, {args.threads} threads; int8 static calibrated on "
        f"{len(calibration)} training slices; pruned models fine-tuned "
        f"{args.finetune_minutes if args.run else 0:g} min each"
    )
    print(
        "| variant | size MB | parameters | MFLOPs/image | images/s | SSIM vs input "
        "| codes = fp32 |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, nbytes, params, mflops, speed, score, agree in rows:
        print(
            f"| {name} | {nbytes / 1e6:.3f} | {params:,} | {mflops:.1f} | {speed:.1f} | "
            f"{score:.4f} | {agree:.2%} |"
        )
    latent = vqvae.config.latent_size
    print(
        f"\n{args.samples} slices ({latent}x{latent} codes, then decoded), prior on 1 thread, "
        f"decoder on {args.threads}; the same uniforms for both samplers"
    )
    print("| sampler | slices/s | codes = PyTorch sampler |")
    print("| --- | ---: | ---: |")
    for name, rate, same in samplers:
        print(f"| {name} | {rate:.2f} | {same:.2%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
