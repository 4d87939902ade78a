"""The evaluations read their slices in chunks and keep bounded sets, and give what the
all-at-once computation gives: the VQ-VAE's metrics accumulated per batch from a store equal
SSIM/PSNR/MAE/MSE and code counts of the whole split at once; the nearest training slice found
a chunk of the training set at a time is the one found over all of it; the level classifier's
slices and the real subjects compared with generated ones are bounded sets chosen from the
columns, and the whole sets below their bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY_CONFIG

from brainvq.data.builder import SlicePart
from brainvq.data.sliceset import SliceSet
from brainvq.data.store import StoreWriter, open_store
from brainvq.evaluation.consistency import subject_volumes
from brainvq.evaluation.generation_metrics import nearest_train_ssim
from brainvq.evaluation.prior import classifier_slices, complete_subject_rows
from brainvq.evaluation.reconstruction import evaluate_vqvae
from brainvq.inference.codes import reconstruct
from brainvq.inference.levels import classifier_input
from brainvq.io.bundle import Bundle, load_vqvae, save_bundle
from brainvq.metrics import ReconstructionMetrics, code_histogram, mae, mse, psnr, ssim
from brainvq.models.vqvae import VQVAE
from brainvq.run_config import load_run_config

LEVELS, SIZE = 8, 32


def cohort(n_subjects: int, seed: int = 0) -> SliceSet:
    """n_subjects x LEVELS smooth random slices, split 60/20/20 by subject, in memory."""
    rng = np.random.default_rng(seed)
    n = n_subjects * LEVELS
    noise = torch.from_numpy(rng.random((n, 1, SIZE, SIZE), dtype=np.float32))
    smooth = torch.nn.functional.avg_pool2d(noise, 5, 1, 2)[:, 0].numpy()
    images = (smooth * 255).astype(np.uint8)
    per = ["train"] * (n_subjects * 3 // 5) + ["validate"] * (n_subjects // 5)
    per += ["test"] * (n_subjects - len(per))
    return SliceSet(
        images=images,
        split=np.repeat(per, LEVELS),
        subject=np.repeat([f"s{i:03d}" for i in range(n_subjects)], LEVELS),
        level=np.tile(np.arange(LEVELS, dtype=np.int16), n_subjects),
        filename=np.array([f"f{i}.png" for i in range(n)]),
        source="test cohort",
        n_levels=LEVELS,
    )


def as_store(s: SliceSet, path: Path) -> SliceSet:
    """The same slices written to a store and opened memory-mapped."""
    with StoreWriter(path, SIZE) as writer:
        for split in ("train", "validate", "test"):
            rows = s.split_rows(split)
            columns = (s.split[rows], s.subject[rows], s.level[rows], s.filename[rows])
            writer.add_part(SlicePart(s.images[rows], *(list(c) for c in columns)))
        writer.commit(s.source, "test", n_levels=LEVELS)
    return open_store(path)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    config = load_run_config(TINY_CONFIG).vqvae
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vqvae") / "VQVAE_Model"
    return load_vqvae(save_bundle(path, VQVAE(config), config, "vqvae"))


def test_metrics_accumulated_from_a_store_equal_those_of_the_whole_split(
    bundle: Bundle, tmp_path: Path
) -> None:
    s = cohort(40)  # a test split of 64 slices; evaluated in batches of 128 = one batch
    big = cohort(200, seed=1)  # 320 test slices: three batches, the last short
    for memory in (s, big):
        stored = as_store(memory, tmp_path / f"{len(memory)}.store")
        metrics, arrays = evaluate_vqvae(bundle, stored, "test")
        part = memory.require_split("test")
        y, codes = reconstruct(bundle.model, part.images, batch_size=len(part))  # at once
        x = torch.from_numpy(part.images).float().div(255).unsqueeze(1)
        y = torch.from_numpy(y).unsqueeze(1)
        every = ssim(x, y).double().numpy()
        p = psnr(x, y).double()
        assert metrics["n_images"] == len(part)
        np.testing.assert_allclose(arrays["ssim"], every, rtol=1e-5, atol=1e-6)
        assert metrics["ssim"] == pytest.approx(every.mean(), rel=1e-5)
        assert metrics["ssim_min"] == pytest.approx(every.min(), rel=1e-5)
        assert metrics["psnr"] == pytest.approx(float(p[torch.isfinite(p)].mean()), rel=1e-5)
        assert metrics["mae"] == pytest.approx(float(mae(x, y).double().mean()), rel=1e-5)
        assert metrics["mse"] == pytest.approx(float(mse(x, y).double().mean()), rel=1e-5)
        np.testing.assert_array_equal(arrays["counts"], code_histogram(codes, 16))
        shown = arrays["shown"]
        assert len(shown) == 10 and len(set(shown.tolist())) == 10
        np.testing.assert_array_equal(arrays["originals"], part.images[shown])
        assert metrics == evaluate_vqvae(bundle, memory, "test")[0]  # in memory: the same


def test_reconstruction_metrics_keep_no_batch() -> None:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((300, 1, 16, 16), dtype=np.float32))
    y = x.clone()
    y[1:] += 0.05 * torch.from_numpy(rng.random((299, 1, 16, 16), dtype=np.float32))
    acc = ReconstructionMetrics()
    for start in range(0, 300, 7):
        acc.update(x[start : start + 7], y[start : start + 7])
    got = acc.compute()
    p = psnr(x, y).double()
    assert got["n_images"] == 300
    assert got["psnr"] == pytest.approx(float(p[torch.isfinite(p)].mean()), rel=1e-9)
    assert np.isinf(p[0])  # image 0 is exact: left out of the PSNR mean, as before
    np.testing.assert_allclose(got["ssim_per_image"], ssim(x, y).double().numpy(), rtol=1e-6)
    acc.reset()
    with pytest.raises(ValueError, match="before any update"):
        acc.compute()


def test_the_nearest_training_slice_found_in_chunks_is_the_one_found_at_once() -> None:
    train = cohort(30).images  # 240 slices
    queries = np.concatenate([train[[5, 100, 239]], cohort(2, seed=3).images])
    once = nearest_train_ssim(queries, train, train_chunk=len(train))
    np.testing.assert_array_equal(nearest_train_ssim(queries, train, train_chunk=7), once)
    np.testing.assert_allclose(once[:3], 1.0, atol=1e-5)  # copies of training slices


def test_the_level_classifier_sees_every_training_slice_below_its_bound() -> None:
    s = cohort(20)
    x, levels = classifier_slices(s, 16, seed=0)
    train = s.require_split("train")
    np.testing.assert_array_equal(x, classifier_input(train.images, 16, "train")[:, 0].numpy())
    np.testing.assert_array_equal(levels, train.level)
    x, levels = classifier_slices(s, 16, seed=0, most=10)
    assert x.shape == (10, 16, 16) and levels.shape == (10,)


def test_real_subjects_are_the_whole_ones_in_sorted_order_up_to_the_bound() -> None:
    s = cohort(6)
    keep = np.ones(len(s), bool)
    keep[[3, 20]] = False  # subject 0 and 2 each lose a slice: no longer whole
    part = s.subset(keep)
    order = np.random.default_rng(0).permutation(len(part))  # rows in any order
    part = part.subset(order)
    whole = subject_volumes(part.images, part.subject, part.level, LEVELS)
    rows = complete_subject_rows(part.subject, part.level, LEVELS)
    got = subject_volumes(part.images[rows], part.subject[rows], part.level[rows], LEVELS)
    np.testing.assert_array_equal(got, whole)
    assert len(whole) == 4
    rows = complete_subject_rows(part.subject, part.level, LEVELS, most=2 * LEVELS + 3)
    bounded = subject_volumes(part.images[rows], part.subject[rows], part.level[rows], LEVELS)
    np.testing.assert_array_equal(bounded, whole[:2])
    assert len(complete_subject_rows(part.subject, part.level, LEVELS, most=1)) == LEVELS
