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

from brainvq.models.pixelcnn import GatedPixelCNN, PixelCNNConfig
from brainvq.sampling import sample, teacher_forced_logits


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
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available", file=sys.stderr)
        return 2

    torch.manual_seed(args.seed)
    config = PixelCNNConfig(n_levels=args.n_levels)
    model = GatedPixelCNN(config).to(args.device).eval()
    cond = args.level if args.n_levels > 0 else None
    shape = (args.size, args.size)
    for sampler in ("naive", "cached"):  # warm-up: first-call allocations and kernel choice
        sample(model, 2, (2, 2), cond=cond, sampler=sampler)

    results = {}
    for sampler in ("cached", "naive"):
        results[sampler] = timed(
            lambda s=sampler: sample(model, args.n, shape, cond=cond, seed=args.seed, sampler=s)
        )
    (cached, t_cached), (naive, t_naive) = results["cached"], results["naive"]
    with torch.inference_mode():
        full = model(cached, None if cond is None else torch.full((args.n,), cond))
    logit_err = (teacher_forced_logits(model, cached, cond) - full).abs().max().item()

    params = sum(p.numel() for p in model.parameters())
    print(
        f"device {args.device}, torch threads {torch.get_num_threads()}, {params:,} parameters, "
        f"{args.n} samples of {args.size}x{args.size} codes, K={config.num_codes}, "
        f"n_levels={config.n_levels}, random init"
    )
    print(f"config: {config}")
    print()
    print("| sampler | total s | s / image | speedup |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| naive | {t_naive:.2f} | {t_naive / args.n:.3f} | 1.0x |")
    print(f"| cached | {t_cached:.2f} | {t_cached / args.n:.4f} | {t_naive / t_cached:.1f}x |")
    print()
    same = torch.equal(naive, cached)
    print(f"identical code maps: {'yes' if same else 'NO'}")
    print(f"max |cached logit - full forward logit|: {logit_err:.2e}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
