"""Consistency of whole subjects: do a volume's adjacent slices belong to one brain?

Subjects are volumes (S, L, H, W) uint8: S subjects, L slices bottom to top. Two measures, each
read against real subjects (the ceiling) and independent per-level slices (the floor: slices
drawn one level at a time, as a prior without the neighbour draws them):

1. Adjacent-slice SSIM (`adjacent_ssim`): the SSIM between slice k and slice k + 1 of every
   subject. Real adjacent slices share most of their anatomy; two slices of two brains much
   less. The measure is the Wasserstein-1 distance between the generated subjects'
   distribution and real validate subjects' (`ssim_distance`); the ceiling is the distance
   between real validate and real training subjects, what finite samples alone give.
   Assumption: the per-slice quality is comparable (a blurrier generator has higher SSIM
   between any two slices), so it is read next to the per-slice sharpness.
2. Same-subject pairs (`train_pair_classifier`, `same_subject_share`): a small CNN
   (brainvq.models.pair_classifier) trained on real training subjects to tell slice k and
   k + 1 of one subject from slice k of one subject and slice k + 1 of another; the share of a
   set's adjacent pairs it calls "one subject". Assumption: it judges anatomy that continues
   across slices, not the look of real slices; `pair_check` measures it on held-out real
   subjects (both kinds of pairs), which says how far its answers can be read.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import wasserstein_distance

from brainvq.evaluation.classifier_training import train_classifier
from brainvq.inference.levels import classifier_input
from brainvq.metrics import ssim
from brainvq.models.eval_mode import eval_mode
from brainvq.models.pair_classifier import PairClassifierConfig, SlicePairClassifier

BATCH = 256


def check_volumes(volumes: np.ndarray, name: str) -> np.ndarray:
    """volumes: (S, L, H, W) uint8 with L >= 2 -> the same array; ValueError naming it else."""
    volumes = np.asarray(volumes)
    if volumes.ndim != 4 or volumes.dtype != np.uint8 or volumes.shape[1] < 2 or not len(volumes):
        raise ValueError(
            f"{name}: expected subjects (S, L, H, W) uint8 with S >= 1 and L >= 2 slices, "
            f"got {volumes.shape} {volumes.dtype}"
        )
    return volumes


def subject_volumes(
    images: np.ndarray, subject: np.ndarray, level: np.ndarray, n_levels: int
) -> np.ndarray:
    """The subjects of a slice set that have every level 0 .. n_levels - 1 once, as volumes
    (S, n_levels, H, W) uint8 (subjects in sorted order); (0, n_levels, H, W) when none has."""
    subject, level = np.asarray(subject), np.asarray(level)
    out = []
    for name in np.unique(subject):
        rows = np.flatnonzero(subject == name)
        if len(rows) == n_levels and set(level[rows].tolist()) == set(range(n_levels)):
            out.append(np.asarray(images[rows[np.argsort(level[rows])]]))
    if not out:
        return np.zeros((0, n_levels, *images.shape[1:]), dtype=np.uint8)
    return np.stack(out)


def as_stacks(images: np.ndarray, levels: np.ndarray, n_levels: int) -> np.ndarray:
    """Slices drawn one level at a time, (N, H, W) at levels (N,), arranged as stacks
    (S, n_levels, H, W): stack s holds the s-th slice drawn at each level (the floor of the
    measures: no two of its slices were drawn together). S = the fewest slices at any level."""
    levels = np.asarray(levels)
    per_level = [np.flatnonzero(levels == k) for k in range(n_levels)]
    s = min(len(rows) for rows in per_level)
    return np.stack([images[rows[:s]] for rows in per_level], axis=1)


def subject_metrics(generated: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """The adjacent-slice SSIM of generated and real subjects (S, L, H, W) uint8: their means
    and the distance between their distributions (the metrics.json keys)."""
    gen, ref = adjacent_ssim(generated), adjacent_ssim(real)
    return {
        "subject_adjacent_ssim": float(gen.mean()),
        "subject_adjacent_ssim_real": float(ref.mean()),
        "subject_ssim_distance": ssim_distance(gen, ref),
    }


def adjacent_ssim(volumes: np.ndarray) -> np.ndarray:
    """(S, L, H, W) uint8 -> (S, L - 1) float64: SSIM(slice k, slice k + 1) of every subject."""
    volumes = check_volumes(volumes, "volumes")
    s, n = volumes.shape[:2]
    lower = volumes[:, :-1].reshape(-1, *volumes.shape[2:])  # (S * (L-1), H, W)
    upper = volumes[:, 1:].reshape(-1, *volumes.shape[2:])
    out = []
    for start in range(0, len(lower), BATCH):
        x = torch.from_numpy(lower[start : start + BATCH]).float().div(255).unsqueeze(1)
        y = torch.from_numpy(upper[start : start + BATCH]).float().div(255).unsqueeze(1)
        out.append(ssim(x, y).double().numpy())
    return np.concatenate(out).reshape(s, n - 1)


def ssim_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 distance between two sets of adjacent-slice SSIMs (any shapes, flattened)."""
    return float(wasserstein_distance(np.ravel(a), np.ravel(b)))


def pairs(
    volumes: np.ndarray, rng: np.random.Generator, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every adjacent pair of every subject (label 1) and as many pairs of slice k of one
    subject with slice k + 1 of another, drawn with rng (label 0): ((2P, 2, size, size) float,
    (2P,) float). Needs at least two subjects."""
    s, n = volumes.shape[:2]
    if s < 2:
        raise ValueError(f"volumes: two-subject pairs need at least 2 subjects, got {s}")
    subj = np.repeat(np.arange(s), n - 1)
    level = np.tile(np.arange(n - 1), s)
    other = (subj + rng.integers(1, s, len(subj))) % s  # never the same subject
    lower = np.concatenate([volumes[subj, level], volumes[subj, level]])
    upper = np.concatenate([volumes[subj, level + 1], volumes[other, level + 1]])
    x = torch.stack(
        [
            classifier_input(lower, size, "volumes")[:, 0],
            classifier_input(upper, size, "volumes")[:, 0],
        ],
        dim=1,
    )  # (2P, 2, size, size)
    y = torch.cat([torch.ones(len(subj)), torch.zeros(len(subj))])
    return x, y


def train_pair_classifier(
    volumes: np.ndarray, config: PairClassifierConfig, progress: bool = True
) -> SlicePairClassifier:
    """Train the pair classifier on real subjects (S, L, H, W) uint8 (see the module docstring);
    negatives are redrawn every epoch (brainvq.evaluation.classifier_training). The same seed
    gives the same weights. Eval mode."""
    volumes = check_volumes(volumes, "volumes")
    config.validate()
    rng = np.random.default_rng(config.seed)
    return train_classifier(
        SlicePairClassifier,
        config,
        lambda: pairs(volumes, rng, config.image_size),
        2 * len(volumes) * (volumes.shape[1] - 1),
        F.binary_cross_entropy_with_logits,
        "pair classifier",
        progress,
    )


@torch.no_grad()
def same_subject_probability(model: SlicePairClassifier, volumes: np.ndarray) -> np.ndarray:
    """(S, L, H, W) uint8 -> (S, L - 1) float64: the classifier's probability that slice k and
    slice k + 1 of each subject are of one subject."""
    volumes = check_volumes(volumes, "volumes")
    size = model.config.image_size
    lower = classifier_input(volumes[:, :-1].reshape(-1, *volumes.shape[2:]), size, "volumes")
    upper = classifier_input(volumes[:, 1:].reshape(-1, *volumes.shape[2:]), size, "volumes")
    x = torch.cat([lower, upper], dim=1)  # (P, 2, size, size)
    with eval_mode(model):
        logits = torch.cat([model(x[i : i + BATCH]) for i in range(0, len(x), BATCH)])
    return torch.sigmoid(logits).double().numpy().reshape(volumes.shape[0], -1)


def same_subject_share(model: SlicePairClassifier, volumes: np.ndarray) -> float:
    """The share of the subjects' adjacent pairs the classifier calls one subject (p > 0.5)."""
    return float((same_subject_probability(model, volumes) > 0.5).mean())


def pair_check(model: SlicePairClassifier, volumes: np.ndarray, seed: int = 0) -> dict[str, float]:
    """How well the classifier tells held-out real pairs apart: the share of one-subject pairs
    called one subject, of two-subject pairs called two, and the accuracy over both."""
    volumes = check_volumes(volumes, "volumes")
    x, y = pairs(volumes, np.random.default_rng(seed), model.config.image_size)
    with torch.no_grad(), eval_mode(model):
        p = torch.cat([model(x[i : i + BATCH]) for i in range(0, len(x), BATCH)]) > 0
    same, other = p[y == 1].float().mean().item(), (~p[y == 0]).float().mean().item()
    return {"same_called_same": same, "two_called_two": other, "accuracy": (same + other) / 2}
