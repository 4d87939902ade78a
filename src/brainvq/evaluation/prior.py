"""How good a trained prior is: NLL in bits per code, and the quality of what it generates.

The results go to metrics.json under `prior`; the generated slices to RUN/samples/generated.npz
and the level classifier to RUN/evaluation/LevelClassifier (a bundle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainvq.data.sliceset import SliceSet
from brainvq.evaluation.consistency import as_stacks, subject_metrics, subject_volumes
from brainvq.evaluation.generation_metrics import generation_report
from brainvq.evaluation.level_classifier import train_level_classifier
from brainvq.inference.codes import CodeSet, code_counts, decode_codes, has_codes, load_codes
from brainvq.inference.generate import (
    RunModels,
    generate_slices,
    generate_subjects,
    spread_levels,
)
from brainvq.inference.slice_below import below_codes, code_below_rows
from brainvq.io.atomic import atomic_path
from brainvq.io.bundle import Bundle, save_bundle
from brainvq.metrics import perplexity
from brainvq.models.level_classifier import LevelClassifierConfig
from brainvq.models.pixelcnn import nll_bits_per_code
from brainvq.run import RunLayout
from brainvq.run_config import RunConfig

# The level classifier sees about this many slices whatever the cohort size (4 epochs of the
# 4,800 OASIS training slices in ../shared/oasis).
CLASSIFIER_PRESENTATIONS = 20_000
CLASSIFIER_SIZE = 64
NLL_BATCH = 64


@torch.inference_mode()
def code_nll_bits(
    prior: Bundle, codes: CodeSet, batch_size: int = NLL_BATCH, neighbour: bool = True
) -> float:
    """Mean NLL of `codes` under the prior, in bits per code; a prior with the neighbour sees
    each map's slice below (neighbour=False: none, as for the lowest slice of a subject)."""
    model = prior.model.eval()
    rows = code_below_rows(codes) if prior.config.has_neighbour and neighbour else None
    total, n = 0.0, 0
    for start in range(0, len(codes.codes), batch_size):
        part = slice(start, start + batch_size)
        c = torch.from_numpy(codes.codes[part].astype(np.int64))  # (b, h, w)
        level = torch.from_numpy(codes.level[part].astype(np.int64))
        below = None if rows is None else torch.from_numpy(below_codes(codes.codes, rows[part]))
        logits = model(c, level if prior.config.n_levels > 0 else None, below)
        total += float(nll_bits_per_code(logits, c)) * len(c)
        n += len(c)
    return total / max(n, 1)


def histogram_floor_codes(
    train_codes: np.ndarray, codebook_size: int, n: int, seed: int
) -> np.ndarray:
    """Code maps (n, h, w) drawn independently per position from the training code histogram."""
    counts = np.bincount(train_codes.ravel(), minlength=codebook_size).astype(np.float64)
    rng = np.random.default_rng(seed)
    return rng.choice(codebook_size, size=(n, *train_codes.shape[1:]), p=counts / counts.sum())


@dataclass(frozen=True)
class References:
    """The real slices generated ones are compared with.

    test: the reference set; validate: real slices of other subjects (the FD ceiling);
    split: where `test` came from ("test", or "validate" when the source has no test split and
    the validate subjects were split in two halves: the second half is `test`)."""

    test: SliceSet
    validate: SliceSet
    split: str


def reference_sets(sliceset: SliceSet, n: int, seed: int) -> References:
    """The reference sets for n generated slices, each of at most n slices (the Frechet
    distance shrinks with sample size, so sets are compared at equal sizes)."""
    validate = sliceset.require_split("validate")
    split = "test" if (sliceset.split == "test").any() else "validate"
    if split == "test":
        test = sliceset.require_split("test")
    else:
        subjects = np.unique(validate.subject)
        if len(subjects) < 2:
            raise ValueError(
                f"the source {sliceset.source} has no test split and only one validate subject: "
                "the generation metrics need real slices of two groups of subjects"
            )
        first = np.isin(validate.subject, subjects[: len(subjects) // 2])
        test, validate = validate.subset(~first), validate.subset(first)
    rng = np.random.default_rng(seed)

    def at_most(part: SliceSet) -> SliceSet:
        if len(part) <= n:
            return part
        return part.subset(np.sort(rng.choice(len(part), n, replace=False)))

    validate = at_most(validate)  # drawn first, then test: the order fixes which slices
    return References(test=at_most(test), validate=validate, split=split)


def evaluate_prior(
    run_dir: Path, config: RunConfig, sliceset: SliceSet, models: RunModels
) -> dict[str, Any]:
    """NLL (val/test) and generation metrics of the run's prior; writes RUN/samples/generated.npz
    and RUN/evaluation/LevelClassifier. A prior with the neighbour generates whole subjects
    (its slices are scored as slices, and its NLL also without the slice below); every prior's
    subjects (or stacks of independent slices, the floor) get the adjacent-slice SSIM measures
    of brainvq.evaluation.consistency against the evaluation split's real subjects."""
    layout = RunLayout(run_dir)
    prior = models.prior
    train = load_codes(layout.codes, "train")
    k = prior.config.codebook_size
    hist = code_counts(train.codes, k)
    validate = load_codes(layout.codes, "validate")
    metrics: dict[str, Any] = {
        "nll_bits_per_code_val": code_nll_bits(prior, validate),
        "nll_bits_per_code_test": None,
        "uniform_bits_per_code": math.log2(k),
        "independent_bits_per_code": math.log2(perplexity(hist)),
        "conditional": prior.config.n_levels > 0,
    }
    if prior.config.has_neighbour:  # the same prior never shown the slice below
        metrics["nll_bits_per_code_val_alone"] = code_nll_bits(prior, validate, neighbour=False)
    if has_codes(layout.codes, "test"):
        metrics["nll_bits_per_code_test"] = code_nll_bits(prior, load_codes(layout.codes, "test"))
    n = config.sample.n_generation_eval
    if n == 0 or prior.config.n_levels < 2:
        # The generation metrics live in the features of a slice-level classifier: a source
        # without slice levels has none to train.
        return metrics
    s = config.sample
    n_levels = prior.config.n_levels
    settings = {"temperature": s.temperature, "top_k": s.top_k, "seed": s.seed}
    if prior.config.has_neighbour:  # slices of whole subjects, every level once per subject
        codes_v, volumes, subject_levels = generate_subjects(models, -(-n // n_levels), **settings)
        gen_codes = codes_v.reshape(-1, *codes_v.shape[2:])[:n]
        generated = volumes.reshape(-1, *volumes.shape[2:])[:n]
        levels = np.tile(subject_levels, len(volumes))[:n]
    else:
        levels = spread_levels(n, n_levels)
        gen_codes, generated = generate_slices(models, n, levels, **settings)
        volumes = as_stacks(generated, levels, n_levels)  # the floor: independent slices
    floor_codes = histogram_floor_codes(train.codes, k, n, s.seed)
    floor = decode_codes(models.vqvae.model, floor_codes)
    with atomic_path(layout.generated) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            codes=gen_codes.astype(np.int16),
            images=generated,
            level=levels,
            floor=floor,
            subjects=volumes,  # (S, L, H, W): whole subjects, or stacks of independent slices
        )
    real_train = sliceset.require_split("train")
    refs = reference_sets(sliceset, n, s.seed)
    classifier = train_level_classifier(
        real_train.images,
        real_train.level,
        LevelClassifierConfig(
            image_size=min(CLASSIFIER_SIZE, sliceset.size),
            n_levels=int(sliceset.n_levels),
            epochs=max(4, math.ceil(CLASSIFIER_PRESENTATIONS / len(real_train))),
            seed=s.seed,
        ),
        progress=True,
    )
    save_bundle(layout.level_classifier, classifier, classifier.config, kind="level_classifier")
    report = generation_report(
        classifier,
        generated,
        levels,
        refs.test.images,
        refs.test.level,
        refs.validate.images,
        real_train.images,
        floor,
    )
    metrics["subjects_from"] = "neighbour" if prior.config.has_neighbour else "independent slices"
    part = sliceset.require_split(sliceset.eval_split())
    real = subject_volumes(part.images, part.subject, part.level, n_levels)
    if len(real) and len(volumes):
        metrics.update(subject_metrics(volumes, real))
    return {**metrics, **report, "generation_reference_split": refs.split}
