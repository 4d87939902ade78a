"""Code maps: batched encode/decode/reconstruct agree with the model, and RUN/codes/ is reused
exactly when it was made by the same weights from the same slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from brainvq.data.sliceset import SliceSet
from brainvq.inference.codes import decode_codes, encode_images, encode_splits, reconstruct
from brainvq.io.bundle import load_vqvae, save_bundle
from brainvq.models.vqvae import VQVAE, VQVAEConfig

CONFIG = VQVAEConfig(
    image_size=32, channels=(8, 16), res_blocks=1, res_channels=8, code_dim=8, codebook_size=16
)


def slices(seed: int = 0) -> SliceSet:
    rng = np.random.default_rng(seed)
    n = 12
    return SliceSet(
        images=rng.integers(0, 256, (n, 32, 32), dtype=np.uint8),
        split=np.array(["train"] * 6 + ["validate"] * 3 + ["test"] * 3),
        subject=np.array([f"s{i // 3}" for i in range(n)]),
        level=np.array([i % 3 for i in range(n)], dtype=np.int16),
        filename=np.array([f"f{i}.png" for i in range(n)]),
        source="test",
        n_levels=3,
    )


def bundle(tmp_path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = VQVAE(CONFIG)
    with torch.no_grad():  # the k-means codebook init, so that slices get different codes
        model.train()(torch.rand(8, 1, 32, 32))
    return save_bundle(tmp_path / f"m{seed}" / "VQVAE_Model", model.eval(), CONFIG, "vqvae")


def test_batched_loops_agree_with_the_model_at_any_batch_size(tmp_path: Path) -> None:
    model = load_vqvae(bundle(tmp_path, 0)).model
    images = slices().images
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)
    expected = model.encode(x).numpy()
    for batch in (1, 5, 64):
        np.testing.assert_array_equal(encode_images(model, images, batch_size=batch), expected)
        recons, codes = reconstruct(model, images, batch_size=batch)
        np.testing.assert_array_equal(codes, expected)
        want = model.decode_indices(torch.from_numpy(expected)).clamp(0, 1)[:, 0].numpy()
        np.testing.assert_allclose(recons, want, atol=1e-6)
        decoded = decode_codes(model, expected, batch_size=batch)
        assert decoded.dtype == np.uint8
        np.testing.assert_array_equal(decoded, (want * 255).round().astype(np.uint8))
    assert encode_images(model, images[:0]).shape == (0, 8, 8)


def test_code_maps_are_reused_only_for_the_same_weights_and_slices(tmp_path: Path) -> None:
    codes_dir = tmp_path / "codes"

    def stamps() -> dict[str, int]:
        return {p.name: p.stat().st_mtime_ns for p in codes_dir.iterdir()}

    def check(result, model, sliceset) -> None:  # every split = the model's own codes
        for split, code_set in result.items():
            part = sliceset.require_split(split)
            np.testing.assert_array_equal(code_set.codes, encode_images(model, part.images))
            np.testing.assert_array_equal(code_set.level, part.level)

    first = load_vqvae(bundle(tmp_path, 0))
    made = encode_splits(first, slices(), codes_dir)
    assert set(made) == {"train", "validate", "test"}
    check(made, first.model, slices())
    before = stamps()
    check(encode_splits(first, slices(), codes_dir), first.model, slices())
    assert stamps() == before  # reused: nothing rewritten
    second = load_vqvae(bundle(tmp_path, 1))
    for model, sliceset in ((second, slices()), (first, slices(seed=5))):
        before = stamps()
        check(encode_splits(model, sliceset, codes_dir), model.model, sliceset)
        assert all(stamps()[name] != before[name] for name in before)  # all rewritten
    relevelled = slices()
    relevelled.level[:] = 2
    assert (encode_splits(first, relevelled, codes_dir)["train"].level == 2).all()


def test_missing_code_maps_name_the_command(tmp_path: Path) -> None:
    from brainvq.inference.codes import load_codes

    with pytest.raises(FileNotFoundError, match="brainvq train prior"):
        load_codes(tmp_path, "train")
