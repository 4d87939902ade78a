"""Subjects as volumes: stacking a split's slices in level order, the loaders, 3D augmentation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from brainvq.data.augment import AugmentConfig, augment_batch
from brainvq.data.dataset import VolumeDataModule
from brainvq.data.demo import build_demo
from brainvq.data.loader import load_slices
from brainvq.data.sliceset import SliceSet
from brainvq.data.subject_volumes import VolumeDataset, subject_stacks, subject_volumes

from .files import OASIS_SLICES, OASIS_SUBJECTS


@pytest.fixture(scope="module")
def demo() -> SliceSet:
    """The real demo cohort: 2 train, 1 validate and 1 test subject, 8 levels of 32x32."""
    return build_demo(size=32, n_levels=8, subjects=(2, 1, 1), show_progress=False, workers=1)


def test_a_subjects_slices_in_level_order_are_its_volume(demo: SliceSet) -> None:
    volumes = subject_volumes(demo, "train")
    assert list(volumes.subject) == ["demo_000", "demo_001"]
    assert volumes.depth == 8
    for subject, rows in zip(volumes.subject, volumes.rows, strict=True):
        assert (demo.subject[rows] == subject).all()
        assert demo.level[rows].tolist() == list(range(8))
    dataset = VolumeDataset(demo, "train")
    volume, level = dataset[1]
    assert volume.shape == (1, 8, 32, 32) and volume.dtype == torch.float32
    assert int(level) == 0
    expected = torch.from_numpy(demo.images[volumes.rows[1]]).float() / 255
    assert torch.equal(volume[0], expected)


def test_shuffled_slices_are_stacked_by_level(demo: SliceSet) -> None:
    order = np.random.default_rng(0).permutation(len(demo))
    shuffled = demo.subset(order)
    volume = VolumeDataset(shuffled, "validate")[0][0]
    assert torch.equal(volume, VolumeDataset(demo, "validate")[0][0])


def test_oasis_subjects_from_png_files_are_volumes(oasis_tree: Path, cache_dir: Path) -> None:
    oasis = load_slices(oasis_tree, 32, cache_dir=cache_dir, progress=False)
    volumes = subject_volumes(oasis, "train", level_stride=2)
    assert len(volumes) == len(OASIS_SUBJECTS["train"]) and volumes.depth == OASIS_SLICES


def test_loaders_batch_whole_volumes(demo: SliceSet) -> None:
    module = VolumeDataModule(demo, batch_size=2, seed=0, level_stride=2)
    x, level = next(iter(module.train_dataloader()))
    assert x.shape == (2, 1, 8, 32, 32) and level.shape == (2,)
    assert len(module.val_dataloader().dataset) == 1


def _relevel(sliceset: SliceSet, level: np.ndarray) -> SliceSet:
    return dataclasses.replace(sliceset, level=level.astype(np.int16))


def test_a_gap_in_the_levels_names_the_subject(demo: SliceSet) -> None:
    level = np.asarray(demo.level).copy()
    level[(demo.subject == "demo_001") & (demo.level == 3)] = 9
    with pytest.raises(ValueError, match=r"'demo_001' .* has levels \[0, 1, 2, 4, 5, 6, 7, 9\]"):
        subject_volumes(_relevel(demo, level), "train")


def test_slices_without_levels_are_refused(demo: SliceSet) -> None:
    with pytest.raises(ValueError, match="'demo_000' .* slices without a level"):
        subject_volumes(_relevel(demo, np.full(len(demo), -1)), "train")


def test_subjects_of_different_depths_are_refused(demo: SliceSet) -> None:
    keep = ~((demo.subject == "demo_001") & (demo.level == 7))
    with pytest.raises(ValueError, match="'demo_001' .* has 7 levels but 'demo_000' has 8"):
        subject_volumes(demo.subset(keep), "train")


def test_levels_not_divisible_by_the_level_stride_are_refused(demo: SliceSet) -> None:
    with pytest.raises(ValueError, match="8 levels, not a multiple of .* level stride 16"):
        subject_volumes(demo, "train", level_stride=16)


def test_a_missing_split_names_it(demo: SliceSet) -> None:
    with pytest.raises(ValueError, match="no 'test' split"):
        subject_volumes(demo.require_split("train"), "test")


def test_every_subject_of_every_split_is_a_stack_of_its_own_depth(demo: SliceSet) -> None:
    keep = ~((demo.subject == "demo_001") & (demo.level >= 6))  # demo_001: levels 0..5
    sliceset = demo.subset(keep)
    stacks = subject_stacks(sliceset, level_stride=2)
    assert [s.subject for s in stacks] == ["demo_000", "demo_001", "demo_002", "demo_003"]
    assert [len(s.rows) for s in stacks] == [8, 6, 8, 8]
    for stack in stacks:
        assert (sliceset.subject[stack.rows] == stack.subject).all()
        assert sliceset.level[stack.rows].tolist() == list(range(len(stack.rows)))
        assert stack.first_level == 0


def test_a_stack_of_a_depth_the_stride_does_not_divide_names_its_subject(demo: SliceSet) -> None:
    keep = ~((demo.subject == "demo_002") & (demo.level == 7))  # demo_002: levels 0..6
    with pytest.raises(ValueError, match=r"'demo_002' .* 7 levels \(0 to 6\), not a multiple"):
        subject_stacks(demo.subset(keep), level_stride=2)


def test_a_stack_with_a_gap_names_its_subject(demo: SliceSet) -> None:
    keep = ~((demo.subject == "demo_003") & (demo.level == 4))
    with pytest.raises(ValueError, match=r"'demo_003' .* has levels \[0, 1, 2, 3, 5, 6, 7\]"):
        subject_stacks(demo.subset(keep), level_stride=1)


def test_3d_augmentation_moves_every_slice_of_a_volume_alike() -> None:
    torch.manual_seed(0)
    slice_ = torch.rand(1, 1, 16, 16)
    volume = slice_[:, :, None].expand(2, 1, 5, 16, 16).contiguous()  # (2, 1, 5, 16, 16)
    cfg = AugmentConfig(enabled=True, max_rotate_deg=20, max_translate=0.1, max_scale=0.2)
    out = augment_batch(volume, cfg, torch.Generator().manual_seed(1))
    assert out.shape == volume.shape and 0 <= out.min() and out.max() <= 1
    for level in range(1, 5):
        assert torch.equal(out[:, :, level], out[:, :, 0])
    assert not torch.equal(out[0], out[1])  # one draw per volume
    assert not torch.equal(out[0, :, 0], volume[0, :, 0])
