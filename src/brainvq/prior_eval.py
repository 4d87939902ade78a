"""Evaluation of a trained prior: NLL in bits per code and generation quality.

The results go to metrics.json under `prior`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainvq.atomic import atomic_path
from brainvq.bundle import Bundle
from brainvq.codes import CodeSet, decode_codes, load_codes
from brainvq.data.sliceset import SliceSet
from brainvq.generation import LevelClassifierConfig, generation_report, train_level_classifier
from brainvq.metrics import perplexity
from brainvq.models.pixelcnn import nll_bits_per_code
from brainvq.sampling import sample
from brainvq.training.config import RunConfig

GENERATED_FILE = "generated.npz"
CLASSIFIER_PRESENTATIONS = 20_000


@torch.inference_mode()
def code_nll_bits(prior: Bundle, codes: CodeSet, batch_size: int = 64) -> float:
    """Mean NLL of `codes` under the prior, in bits per code."""
    model = prior.model.eval()
    total, n = 0.0, 0
    for start in range(0, len(codes.codes), batch_size):
        c = torch.from_numpy(codes.codes[start : start + batch_size].astype(np.int64))  # (b, h, w)
        cond = torch.from_numpy(codes.levels[start : start + batch_size].astype(np.int64))
        logits = model(c, cond if prior.config.n_levels > 0 else None)
        total += float(nll_bits_per_code(logits, c)) * len(c)
        n += len(c)
    return total / max(n, 1)


def histogram_floor_codes(train_codes: np.ndarray, num_codes: int, n: int, seed: int) -> np.ndarray:
    """Code maps (n, h, w) drawn independently per position from the training code histogram."""
    counts = np.bincount(train_codes.ravel(), minlength=num_codes).astype(np.float64)
    rng = np.random.default_rng(seed)
    return rng.choice(num_codes, size=(n, *train_codes.shape[1:]), p=counts / counts.sum())


def generation_levels(n: int, n_levels: int) -> np.ndarray | None:
    """Levels spread evenly over [0, n_levels) for n samples, or None for an unconditional prior."""
    if n_levels <= 0:
        return None
    return (np.arange(n) * n_levels // n).astype(np.int64)


def generate(
    prior: Bundle,
    vqvae: Bundle,
    n: int,
    levels: np.ndarray | None,
    config: RunConfig,
    latent_hw: tuple[int, int],
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample n code maps (cached sampler) and decode them.

    Returns (codes (n, h, w), images uint8 (n, H, W)).
    """
    cond = torch.from_numpy(levels) if levels is not None else None
    codes = sample(
        prior.model,
        n,
        latent_hw,
        cond=cond,
        temperature=config.sample.temperature,
        top_k=config.sample.top_k,
        seed=seed,
        progress=True,
    )
    return codes.numpy(), decode_codes(vqvae.model, codes)


def _at_most(part: SliceSet, n: int, rng: np.random.Generator) -> SliceSet:
    """`part`, or a random subset of n of its slices when it has more."""
    if len(part) <= n:
        return part
    return part.subset(np.sort(rng.choice(len(part), n, replace=False)))


def evaluate_prior(
    run_dir: Path, config: RunConfig, sliceset: SliceSet, vqvae: Bundle, prior: Bundle
) -> dict[str, Any]:
    """NLL (val/test) and generation metrics; generated slices go to RUN/samples/."""
    run_dir = Path(run_dir)
    codes_dir = run_dir / "codes"
    train = load_codes(codes_dir, "train")
    K = prior.config.num_codes
    hist = np.bincount(train.codes.ravel().astype(np.int64), minlength=K)
    metrics: dict[str, Any] = {
        "nll_bits_per_code_val": code_nll_bits(prior, load_codes(codes_dir, "validate")),
        "nll_bits_per_code_test": None,
        "uniform_bits_per_code": math.log2(K),
        "independent_bits_per_code": math.log2(perplexity(hist)),
        "conditional": prior.config.n_levels > 0,
    }
    if (codes_dir / "test.npz").is_file():
        metrics["nll_bits_per_code_test"] = code_nll_bits(prior, load_codes(codes_dir, "test"))
    n = config.sample.n_generation_eval
    if n == 0 or prior.config.n_levels < 2:
        # The generation metrics live in the features of a slice-level classifier: a source
        # without slice levels has none to train.
        return metrics
    latent_hw = tuple(train.codes.shape[1:])
    levels = generation_levels(n, prior.config.n_levels)
    gen_codes, generated = generate(prior, vqvae, n, levels, config, latent_hw, config.sample.seed)
    floor = decode_codes(vqvae.model, histogram_floor_codes(train.codes, K, n, config.sample.seed))
    with atomic_path(run_dir / "samples" / GENERATED_FILE) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            codes=gen_codes.astype(np.int16),
            images=generated,
            levels=levels if levels is not None else np.full(n, -1),
            floor=floor,
        )
    real_train = sliceset.require_split("train")
    real_val = sliceset.require_split("validate")
    test_split = "test" if (sliceset.split == "test").any() else "validate"
    real_test = sliceset.require_split(test_split)
    if test_split == "validate":
        # No test split: compare against one half of the validate subjects, ceiling from the other.
        subjects = np.unique(real_val.subject)
        half = np.isin(real_val.subject, subjects[: len(subjects) // 2])
        real_test, real_val = real_val.subset(~half), real_val.subset(half)
    # The Frechet distance shrinks with sample size: compare equal-sized sets.
    rng = np.random.default_rng(config.sample.seed)
    real_val, real_test = _at_most(real_val, n, rng), _at_most(real_test, n, rng)
    classifier = train_level_classifier(
        real_train.images,
        real_train.slice_index,
        LevelClassifierConfig(
            image_size=min(64, sliceset.size),
            n_levels=int(sliceset.n_levels),
            # about 20k slice presentations whatever the cohort size (4 epochs of OASIS's 4,800)
            epochs=max(4, math.ceil(CLASSIFIER_PRESENTATIONS / len(real_train))),
            seed=config.sample.seed,
        ),
        progress=True,
    )
    report = generation_report(
        classifier,
        generated,
        levels,
        real_test.images,
        real_test.slice_index,
        real_val.images,
        real_train.images,
        floor,
    )
    metrics.update(report)
    metrics["generation_reference_split"] = test_split
    return metrics
