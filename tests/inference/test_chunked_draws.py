"""Any number of maps is drawn a chunk at a time (brainvq.inference.generate), and the chunks are
the draw of all maps at once: sampled slices, whole subjects and completions drawn in chunks
of 3 (or 2 subjects) equal one call of the samplers with the same seed, decoded. Code maps
written to a code file a batch at a time equal those encoded at once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY_CONFIG

from brainvq.inference.codes import decode_codes, encode_images, write_codes_file
from brainvq.inference.generate import chunk_size, iter_completions, iter_slices, iter_subjects
from brainvq.inference.run_models import RunModels, load_run_models
from brainvq.inference.sampling import complete, sample
from brainvq.inference.sampling_options import SamplingOptions
from brainvq.inference.subjects import sample_subjects
from brainvq.io.bundle import PRIOR_FOLDER, VQVAE_FOLDER, save_bundle
from brainvq.models.pixelcnn import GatedPixelCNN
from brainvq.models.vqvae import VQVAE
from brainvq.run_config import load_run_config

N_LEVELS = 8


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> RunModels:
    """Untrained tiny models (tests/configs/tiny.yaml) whose prior knows 8 levels and the slice
    below, its weights perturbed so that its draws depend on both."""
    run = tmp_path_factory.mktemp("chunked")
    config = load_run_config(TINY_CONFIG, {"prior": {"neighbour": "previous"}})
    torch.manual_seed(0)
    save_bundle(run / "vqvae" / VQVAE_FOLDER, VQVAE(config.vqvae), config.vqvae, "vqvae")
    side = config.vqvae.latent_size
    prior_config = dataclasses.replace(config.prior, n_levels=N_LEVELS, map_size=side)
    prior = GatedPixelCNN(prior_config)
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    save_bundle(run / "prior" / PRIOR_FOLDER, prior, prior_config, "prior")
    return load_run_models(run)


def joined(chunks) -> tuple[np.ndarray, ...]:
    """The chunks an iter_* gave, checked to follow each other, joined."""
    parts = list(chunks)
    starts = [p[0] for p in parts]
    assert starts == list(np.cumsum([0] + [len(p[1]) for p in parts[:-1]]))
    return tuple(np.concatenate([p[i] for p in parts]) for i in (1, 2))


def test_slices_drawn_in_chunks_are_one_draw(models: RunModels) -> None:
    levels = np.arange(10) % N_LEVELS
    seeded = SamplingOptions(seed=5)
    codes, images = joined(
        iter_slices(models, 10, lambda a, b: levels[a:b], options=seeded, progress=False, chunk=3)
    )
    once = sample(models.prior.model, 10, models.latent_hw, level=torch.from_numpy(levels), seed=5)
    np.testing.assert_array_equal(codes, once.numpy())
    np.testing.assert_array_equal(images, decode_codes(models.vqvae.model, once))


def test_subjects_drawn_in_chunks_are_one_draw(models: RunModels) -> None:
    seeded = SamplingOptions(seed=2)
    drawn = list(iter_subjects(models, 5, n_slices=3, options=seeded, progress=False, chunk=2))
    assert [d[0] for d in drawn] == [0, 2, 4]
    codes = np.concatenate([d[1] for d in drawn])
    once = sample_subjects(models.prior.model, 5, models.latent_hw, n_slices=3, seed=2)
    np.testing.assert_array_equal(codes, once.numpy())
    assert drawn[0][3].tolist() == [0, 1, 2]


def test_completions_drawn_in_chunks_are_one_draw(models: RunModels) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 32, 32), dtype=np.uint8)
    levels, seeded = np.array([1, 6]), SamplingOptions(seed=1)
    codes, _ = joined(
        iter_completions(models, images, levels, 3, 4, options=seeded, progress=False, chunk=3)
    )
    kept = torch.from_numpy(encode_images(models.vqvae.model, images).astype(np.int64))
    once = complete(models.prior.model, kept, 3, 4, level=torch.from_numpy(levels), seed=1)
    np.testing.assert_array_equal(codes, once.numpy())


def test_a_chunk_is_bounded_and_decodes_in_whole_batches(models: RunModels) -> None:
    assert chunk_size(models) >= 1 and chunk_size(models) % 64 == 0
    assert chunk_size(models, 32) * 32 % 64 == 0


def test_a_code_file_written_a_batch_at_a_time_equals_encoding_at_once(
    models: RunModels, tmp_path: Path
) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (150, 32, 32), dtype=np.uint8)
    names = np.array([f"case_{i}_slice_{i % 8}.png" for i in range(150)])
    levels = np.arange(150, dtype=np.int16) % 8
    path = write_codes_file(tmp_path / "codes.npz", models.vqvae.model, images, names, levels)
    with np.load(path) as f:
        np.testing.assert_array_equal(f["codes"], encode_images(models.vqvae.model, images))
        assert f["codes"].dtype == np.int16 and f["levels"].dtype == np.int64
        assert f["names"].tolist() == names.tolist() and f["levels"].tolist() == levels.tolist()
        assert int(f["dims"]) == 2
