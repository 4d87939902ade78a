"""How good a trained prior is: NLL in bits per code, and the quality of what it generates.

The results go to metrics.json under `prior`; the generated slices to RUN/samples/generated.npz
and the level classifier to RUN/evaluation/LevelClassifier (a bundle).

Its memory does not grow with the cohort: code maps are read a batch at a time, the real slices
that generated ones are compared with are sets of fixed size (at most n_generation_eval slices,
CLASSIFIER_SLICES training slices for the level classifier, CONSISTENCY_SLICES slices of whole
real subjects), chosen from the columns before any image is read, and the memorisation measure
streams the training split (brainvq.evaluation.generation_metrics.nearest_train_ssim). Below
those sizes (OASIS: 9,664 training slices, 544 test slices) every slice is used, as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainvq.atomic import atomic_path
from brainvq.data.sliceset import SliceSet
from brainvq.data.store import RowReader
from brainvq.evaluation.consistency import as_stacks, subject_metrics, subject_volumes
from brainvq.evaluation.generation_metrics import generation_report
from brainvq.evaluation.level_classifier import train_level_classifier
from brainvq.inference.codes import CodeSet, code_counts, decode_codes, has_codes, load_codes
from brainvq.inference.generate import generate_slices, generate_subjects, spread_levels
from brainvq.inference.levels import classifier_input
from brainvq.inference.run_models import RunModels
from brainvq.inference.sampling_options import SamplingOptions
from brainvq.inference.slice_below import below_codes, code_below_rows
from brainvq.io.bundle import Bundle, save_bundle
from brainvq.metrics import perplexity
from brainvq.models.level_classifier import LevelClassifierConfig
from brainvq.models.pixelcnn import nll_bits_per_code
from brainvq.run import RunLayout
from brainvq.run_config import RunConfig

CLASSIFIER_SIZE = 64
# at most this many training slices (a seeded sample) train it: more than OASIS's 9,664, and
# their classifier inputs (64x64 float32) take 164 MB whatever the cohort
CLASSIFIER_SLICES = 10_000
# the real subjects the generated ones are compared with: whole subjects, in sorted order, up to
# this many slices (OASIS's test split has 544)
CONSISTENCY_SLICES = 4_096
NLL_BATCH = 64
READ_BATCH = 256  # slices read at once


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
    """Code maps (n, h, w) drawn independently per position from the training code histogram
    (counted a chunk of maps at a time)."""
    counts = code_counts(train_codes, codebook_size).astype(np.float64)
    rng = np.random.default_rng(seed)
    return rng.choice(codebook_size, size=(n, *train_codes.shape[1:]), p=counts / counts.sum())


def floor_images(models: RunModels, train_codes: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n slices (n, H, W) uint8 decoded from histogram codes (`histogram_floor_codes`): code
    maps of a 2D run; code volumes of a 3D run (its latent levels, as many subjects as n
    slices need), whose slices are taken in order."""
    k = models.prior.config.codebook_size
    if models.dims == 2:
        return decode_codes(models.vqvae.model, histogram_floor_codes(train_codes, k, n, seed))
    per_subject = models.latent_levels * models.level_stride
    subjects = -(-n // per_subject)
    codes = histogram_floor_codes(train_codes, k, subjects * models.latent_levels, seed)
    volumes = decode_codes(
        models.vqvae.model, codes.reshape(subjects, models.latent_levels, *codes.shape[1:])
    )
    return volumes.reshape(-1, *volumes.shape[2:])[:n]  # (n, H, W)


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
    distance shrinks with sample size, so sets are compared at equal sizes). The rows are
    chosen from the columns; only the chosen slices are read."""
    validate = sliceset.split_rows("validate")
    split = "test" if (sliceset.split == "test").any() else "validate"
    if split == "test":
        test = sliceset.split_rows("test")
    else:
        subject = sliceset.subject[validate]
        subjects = np.unique(subject)
        if len(subjects) < 2:
            raise ValueError(
                f"the source {sliceset.source} has no test split and only one validate subject: "
                "the generation metrics need real slices of two groups of subjects"
            )
        first = np.isin(subject, subjects[: len(subjects) // 2])
        test, validate = validate[~first], validate[first]
    rng = np.random.default_rng(seed)

    def at_most(rows: np.ndarray) -> np.ndarray:
        if len(rows) <= n:
            return rows
        return rows[np.sort(rng.choice(len(rows), n, replace=False))]

    validate = at_most(validate)  # drawn first, then test: the order fixes which slices
    return References(
        test=sliceset.subset(at_most(test)), validate=sliceset.subset(validate), split=split
    )


def classifier_slices(
    sliceset: SliceSet, size: int, seed: int, most: int = CLASSIFIER_SLICES
) -> tuple[np.ndarray, np.ndarray]:
    """The level classifier's training data: at most `most` training slices (all of them when
    there are fewer, else a seeded sample), box-downsampled to size x size as
    train_level_classifier would, read READ_BATCH at a time. Returns (images (M, size, size)
    float32 in [0, 1], levels (M,) int64)."""
    rows = sliceset.split_rows("train")
    if len(rows) > most:
        rows = np.sort(np.random.default_rng(seed).choice(rows, most, replace=False))
    reader = RowReader(sliceset.images)
    out = np.empty((len(rows), size, size), dtype=np.float32)
    for start in range(0, len(rows), READ_BATCH):
        part = rows[start : start + READ_BATCH]
        out[start : start + len(part)] = classifier_input(reader.read(part), size, "train")[:, 0]
    return out, np.asarray(sliceset.level[rows], dtype=np.int64)


def complete_subject_rows(
    subject: np.ndarray, level: np.ndarray, n_levels: int, most: int = CONSISTENCY_SLICES
) -> np.ndarray:
    """Rows (sorted by subject, then level) of the first subjects in sorted order that have
    every level 0 .. n_levels - 1 once, as many as fit in `most` slices (at least one when any
    has), from the columns alone: what brainvq.evaluation.consistency.subject_volumes would
    stack, bounded."""
    subject, level = np.asarray(subject), np.asarray(level, dtype=np.int64)
    names, gid, counts = np.unique(subject, return_inverse=True, return_counts=True)
    order = np.lexsort((level, gid))  # by subject, then level
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])  # each subject's first sorted row
    place = np.arange(len(order)) - start[gid[order]]  # 0, 1, ... within the subject
    wrong = np.bincount(gid[order], weights=level[order] != place, minlength=len(names))
    whole = np.flatnonzero((counts == n_levels) & (wrong == 0))  # subject ids, sorted
    keep = whole[: max(1, most // max(n_levels, 1))] if len(whole) else whole
    return order[np.isin(gid[order], keep)]


def evaluate_prior(
    run_dir: Path, config: RunConfig, sliceset: SliceSet, models: RunModels, level_mm: float
) -> dict[str, Any]:
    """NLL (val/test) and generation metrics of the run's prior; writes RUN/samples/generated.npz
    and RUN/evaluation/LevelClassifier. A prior with the neighbour generates whole subjects
    (its slices are scored as slices, and its NLL also without the slice below); every prior's
    subjects (or stacks of independent slices, the floor) get the adjacent-slice SSIM measures
    of brainvq.evaluation.consistency against the evaluation split's real subjects. level_mm:
    millimetres between the run's levels (its frame), in which the level errors are said
    (level_error_mm, level_error_mm_real)."""
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
    n_levels = models.n_levels  # slice levels of a subject (a 3D run's latent levels x stride)
    options = SamplingOptions(temperature=s.temperature, top_k=s.top_k, seed=s.seed)
    if prior.config.has_neighbour:  # slices of whole subjects, every level once per subject
        drawn = generate_subjects(models, -(-n // n_levels), options=options)
        codes_v, volumes, subject_levels = drawn
        gen_codes = codes_v.reshape(-1, *codes_v.shape[2:])[:n]
        generated = volumes.reshape(-1, *volumes.shape[2:])[:n]
        levels = np.tile(subject_levels, len(volumes))[:n]
    else:
        levels = spread_levels(n, n_levels)
        gen_codes, generated = generate_slices(models, n, levels, options=options)
        volumes = as_stacks(generated, levels, n_levels)  # the floor: independent slices
    floor = floor_images(models, train.codes, n, s.seed)
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
    size = min(CLASSIFIER_SIZE, sliceset.size)
    train_x, train_levels = classifier_slices(sliceset, size, s.seed)
    classifier = train_level_classifier(
        train_x,
        train_levels,
        LevelClassifierConfig(
            image_size=size,
            n_levels=int(sliceset.n_levels),
            epochs=max(4, math.ceil(s.classifier_presentations / len(train_x))),
            seed=s.seed,
        ),
        progress=True,
    )
    del train_x
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
    for key in ("level_error", "level_error_real"):
        error = report.pop(key)
        report[key.replace("error", "error_mm")] = None if error is None else error * level_mm
    metrics["subjects_from"] = "neighbour" if prior.config.has_neighbour else "independent slices"
    part = sliceset.require_split(sliceset.eval_split())
    rows = complete_subject_rows(part.subject, part.level, n_levels)
    real = subject_volumes(part.images[rows], part.subject[rows], part.level[rows], n_levels)
    if len(real) and len(volumes):
        metrics.update(subject_metrics(volumes, real))
    return {**metrics, **report, "generation_reference_split": refs.split}
