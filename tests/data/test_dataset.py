"""SliceDataset, SliceDataModule (with a real Lightning fit) and batch augmentation."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from brainvq.config import ConfigError, from_dict
from brainvq.data.augment import AugmentConfig, augment_batch
from brainvq.data.dataset import SliceDataModule, SliceDataset
from brainvq.data.sliceset import SliceSet
from brainvq.models.vqvae import VQVAEConfig
from brainvq.run_config import TrainConfig
from brainvq.training.vqvae_module import VQVAEModule


def tiny_sliceset(n_train: int = 10, n_val: int = 4, size: int = 16) -> SliceSet:
    rng = np.random.default_rng(0)
    n = n_train + n_val
    return SliceSet(
        images=rng.integers(0, 256, (n, size, size), dtype=np.uint8),
        split=np.array(["train"] * n_train + ["validate"] * n_val),
        subject=np.array([f"s{i // 2}" for i in range(n)]),
        level=np.array([i % 2 for i in range(n)], dtype=np.int16),
        filename=np.array([f"f{i}.png" for i in range(n)]),
        source="tiny",
        splits_present=("train", "validate"),
        n_levels=2,
    )


def test_items_are_float_images_in_unit_range_and_int64_levels() -> None:
    s = tiny_sliceset()
    ds = SliceDataset(s, "validate")
    assert len(ds) == 4
    x, level = ds[1]
    assert x.shape == (1, 16, 16) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    np.testing.assert_allclose(x[0].numpy() * 255, s.images[11], atol=1e-4)
    assert level.dtype == torch.int64 and int(level) == 1


def test_missing_split_names_it() -> None:
    with pytest.raises(ValueError, match=r"no 'test' split"):
        SliceDataset(tiny_sliceset(), "test")
    with pytest.raises(ValueError, match=r"no 'test' split"):
        SliceDataModule(tiny_sliceset(), batch_size=4).test_dataloader()


def test_loaders_shuffle_train_only_and_keep_every_slice() -> None:
    dm = SliceDataModule(tiny_sliceset(), batch_size=4, seed=1)
    train = list(dm.train_dataloader())
    assert [len(b[0]) for b in train] == [4, 4, 2]
    seen = torch.cat([b[0] for b in train]).flatten(1)
    expected = torch.from_numpy(tiny_sliceset().images[:10]).float().div(255).flatten(1)
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, expected.tolist()))
    assert not torch.equal(seen, expected)  # shuffled
    again = torch.cat(
        [b[0] for b in SliceDataModule(tiny_sliceset(), batch_size=4, seed=1).train_dataloader()]
    )
    assert torch.equal(again.flatten(1), seen)  # seeded
    val = torch.cat([b[0] for b in dm.val_dataloader()])
    assert torch.equal(val[:, 0], torch.from_numpy(tiny_sliceset().images[10:]).float().div(255))


def test_augment_disabled_is_identity_and_enabled_keeps_shape_and_range() -> None:
    x = torch.rand(6, 1, 16, 16)
    assert augment_batch(x, AugmentConfig(enabled=False)) is x
    cfg = AugmentConfig(enabled=True, max_rotate_deg=10, max_translate=0.1, gamma_range=(0.7, 1.4))
    y = augment_batch(x, cfg, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype and 0 <= y.min() and y.max() <= 1
    assert not torch.allclose(y, x)
    z = augment_batch(x, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(y, z)


def test_flip_reverses_rows_left_right_in_the_oasis_orientation() -> None:
    x = torch.rand(3, 1, 8, 8)
    cfg = AugmentConfig(
        enabled=True,
        max_rotate_deg=0,
        max_translate=0,
        max_scale=0,
        flip_prob=1.0,
        gamma_range=(1, 1),
    )
    torch.testing.assert_close(augment_batch(x, cfg), x.flip(-2))
    cfg_none = AugmentConfig(
        enabled=True,
        max_rotate_deg=0,
        max_translate=0,
        max_scale=0,
        flip_prob=0.0,
        gamma_range=(1, 1),
    )
    torch.testing.assert_close(augment_batch(x, cfg_none), x)


def test_gamma_only() -> None:
    x = torch.full((2, 1, 8, 8), 0.25)
    cfg = AugmentConfig(
        enabled=True,
        max_rotate_deg=0,
        max_translate=0,
        max_scale=0,
        flip_prob=0,
        gamma_range=(2, 2),
    )
    torch.testing.assert_close(augment_batch(x, cfg), torch.full_like(x, 0.0625))


def test_augment_config_from_dict_validates() -> None:
    cfg = from_dict(AugmentConfig, {"enabled": True, "gamma_range": [0.8, 1.2]})
    assert cfg.gamma_range == (0.8, 1.2)
    with pytest.raises(ConfigError, match=r"flip_prob: must be in \[0, 1\], got 1.5"):
        from_dict(AugmentConfig, {"flip_prob": 1.5})
    with pytest.raises(ConfigError, match="gamma_range"):
        from_dict(AugmentConfig, {"gamma_range": [1.2, 0.8]})
    with pytest.raises(ValueError, match=r"augment_batch expects \(B, 1, H, W\)"):
        augment_batch(torch.rand(2, 3, 8, 8), AugmentConfig(enabled=True))


class Recorder(VQVAEModule):
    """The real VQ-VAE module, recording the images each stage's loss sees."""

    def __init__(self, augment: AugmentConfig) -> None:
        config = VQVAEConfig(
            image_size=16,
            channels=(8, 16),
            res_blocks=1,
            res_channels=8,
            code_dim=8,
            codebook_size=16,
            restart_buffer=64,
        )
        super().__init__(config, TrainConfig(warmup_steps=0, channels_last=False), augment, 1)
        self.seen: dict[str, list[torch.Tensor]] = {"train": [], "val": []}

    def losses(self, x):
        self.seen["train" if self.training else "val"].append(x.detach().clone())
        return super().losses(x)


def test_the_vqvae_module_augments_training_batches_only_in_a_real_fit() -> None:
    s = tiny_sliceset()
    flip = AugmentConfig(
        enabled=True,
        max_rotate_deg=0,
        max_translate=0,
        max_scale=0,
        flip_prob=1.0,
        gamma_range=(1, 1),
    )
    dm = SliceDataModule(s, batch_size=10, seed=0)
    model = Recorder(flip)
    before = [p.detach().clone() for p in model.model.parameters()]
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    after = list(model.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))  # a step ran
    train = model.seen["train"][0].flatten(1)
    originals = torch.from_numpy(s.images[:10]).float().div(255).unsqueeze(1)
    to_flipped = torch.cdist(train, originals.flip(-2).flatten(1)).min(dim=1).values
    to_plain = torch.cdist(train, originals.flatten(1)).min(dim=1).values
    assert to_flipped.max() < 1e-3 and to_plain.min() > 1.0  # every training image was flipped
    torch.testing.assert_close(
        model.seen["val"][0][:, 0], torch.from_numpy(s.images[10:]).float().div(255)
    )
