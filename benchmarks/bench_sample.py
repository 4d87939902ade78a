"""Sampling speed: the naive sampler (one full forward pass per position) against the cached one.

Draws --n code maps of --size x --size codes with each sampler from the same seed, with the
default PixelCNNConfig (or --n-levels > 0 for a level-conditioned prior, sampled at level
--level). The weights are a random initialisation: the cost of a forward pass does not depend
on them. Prints seconds per image, the speedup, whether the two samplers drew identical code
maps, and how far the cached logits are from the full forward pass on the drawn maps.

    .venv/bin/python benchmarks/bench_sample.py [--n 16] [--size 32] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from brainvq.hardware import machine
from brainvq.inference.sampling import sample, teacher_forced_logits
from brainvq.inference.threads import sampler_threads
from brainvq.models.pixelcnn import GatedPixelCNN, PixelCNNConfig


def timed(fn) -> tuple[torch.Tensor, float]:
    """Run fn() once -> (its result, wall seconds), synchronising CUDA around it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="code maps per sampler")
    parser.add_argument("--size", type=int, default=32, help="code map height and width")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--n-levels", type=int, default=0, help="0: unconditional prior")
    parser.add_argument("--level", type=int, default=16, help="level to sample when conditional")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads while sampling (default: the samplers' policy for --n maps)",
    )
    parser.add_argument("--skip-naive", action="store_true", help="time the cached sampler only")
    args = parser.parse_args(argv)
    args.threads = sampler_threads(args.n, args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available", file=sys.stderr)
        return 2

    torch.manual_seed(args.seed)
    config = PixelCNNConfig(n_levels=args.n_levels)
    model = GatedPixelCNN(config).to(args.device).eval()
    level = args.level if args.n_levels > 0 else None
    shape = (args.size, args.size)
    samplers = ("cached",) if args.skip_naive else ("cached", "naive")
    for sampler in samplers:  # warm-up: first-call allocations and kernel choice
        sample(model, 2, (2, 2), level=level, sampler=sampler, threads=args.threads)

    results = {}
    for sampler in samplers:
        results[sampler] = timed(
            lambda s=sampler: sample(
                model, args.n, shape, level=level, seed=args.seed, sampler=s, threads=args.threads
            )
        )
    cached, t_cached = results["cached"]
    with torch.inference_mode():
        full = model(cached, None if level is None else torch.full((args.n,), level))
    logit_err = (teacher_forced_logits(model, cached, level) - full).abs().max().item()

    params = sum(p.numel() for p in model.parameters())
    gpu = f", {torch.cuda.get_device_name(0)}" if args.device.startswith("cuda") else ""
    print(
        f"# {machine().describe()}; device {args.device}{gpu}; fp32; "
        f"{args.threads} sampling threads"
    )
    print(
        f"{params:,} parameters, {args.n} samples of {args.size}x{args.size} codes, "
        f"K={config.codebook_size}, n_levels={config.n_levels}, random init"
    )
    print(f"config: {config}")
    print()
    print("| sampler | total s | s / image | speedup |")
    print("| --- | ---: | ---: | ---: |")
    if "naive" in results:
        t_naive = results["naive"][1]
        print(f"| naive | {t_naive:.2f} | {t_naive / args.n:.3f} | 1.0x |")
        speedup = f"{t_naive / t_cached:.1f}x"
    else:
        speedup = "-"
    print(f"| cached | {t_cached:.2f} | {t_cached / args.n:.4f} | {speedup} |")
    print()
    same = "naive" not in results or torch.equal(results["naive"][0], cached)
    if "naive" in results:
        print(f"identical code maps: {'yes' if same else 'NO'}")
    print(f"max |cached logit - full forward logit|: {logit_err:.2e}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
