"""Generation metrics on toy slices: 8 levels drawn as disks of growing radius, 64x64."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from brainvq.config import ConfigError, from_dict
from brainvq.evaluation.generation_metrics import (
    extract_features,
    frechet_distance,
    generation_report,
    high_frequency_share,
    level_accuracy,
    level_error,
    nearest_train_ssim,
    sharpness_ratio,
)
from brainvq.evaluation.level_classifier import train_level_classifier
from brainvq.inference.levels import predict_levels
from brainvq.io.bundle import load_level_classifier, save_bundle
from brainvq.models.level_classifier import LevelClassifier, LevelClassifierConfig

N_LEVELS = 8
SIZE = 64
TOY_CONFIG = dict(
    image_size=32, n_levels=N_LEVELS, channels=(8, 16, 16), epochs=8, batch_size=16, lr=1e-2, seed=0
)


def toy_slices(per_level: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 64, 64) uint8 disks whose radius grows with the level, with jitter and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float64)
    images, levels = [], []
    for level in range(N_LEVELS):
        for _ in range(per_level):
            cy, cx = SIZE / 2 + rng.uniform(-3, 3, size=2)
            radius = 5 + 3.2 * level + rng.uniform(-0.8, 0.8)
            disk = np.hypot(yy - cy, xx - cx) <= radius
            img = 0.15 + 0.6 * disk * rng.uniform(0.85, 1.0) + rng.normal(0, 0.05, disk.shape)
            images.append(np.clip(img * 255, 0, 255).astype(np.uint8))
            levels.append(level)
    return np.stack(images), np.array(levels)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small models run fastest on one thread when the CPU is shared; restore the setting after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy_train() -> tuple[np.ndarray, np.ndarray]:
    return toy_slices(per_level=16, seed=0)


@pytest.fixture(scope="module")
def toy_model(toy_train) -> LevelClassifier:
    images, levels = toy_train
    return train_level_classifier(images, levels, LevelClassifierConfig(**TOY_CONFIG), False)


def test_classifier_learns_toy_levels(toy_model):
    images, levels = toy_slices(per_level=8, seed=1)
    exact = level_accuracy(toy_model, images, levels, tolerance=0)
    assert exact > 0.8, f"exact accuracy {exact} on held-out toy slices (chance is 1/8)"
    assert level_accuracy(toy_model, images, levels, tolerance=1) >= exact
    assert not toy_model.training


def test_training_is_deterministic(toy_train, toy_model):
    images, levels = toy_train
    again = train_level_classifier(images, levels, LevelClassifierConfig(**TOY_CONFIG), False)
    for key, value in toy_model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_features_shape_and_dtype_invariance(toy_model):
    images, _ = toy_slices(per_level=2, seed=2)
    feats = extract_features(toy_model, images)
    assert feats.shape == (len(images), TOY_CONFIG["channels"][-1])
    as_float = extract_features(toy_model, images.astype(np.float32) / 255.0)
    np.testing.assert_allclose(feats, as_float, rtol=1e-5, atol=1e-6)
    toy_model.train()
    try:
        np.testing.assert_array_equal(extract_features(toy_model, images), feats)
        assert toy_model.training, "extract_features must restore the model's mode"
    finally:
        toy_model.eval()


def test_bundle_round_trip_is_bit_exact(toy_model, tmp_path):
    save_bundle(tmp_path / "clf", toy_model, toy_model.config, kind="level_classifier")
    loaded = load_level_classifier(tmp_path / "clf")
    assert loaded.config == toy_model.config and loaded.meta == {}
    assert not loaded.model.training
    for key, value in toy_model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key]), key
    images, _ = toy_slices(per_level=2, seed=3)
    np.testing.assert_array_equal(
        extract_features(loaded.model, images), extract_features(toy_model, images)
    )


def test_load_errors(toy_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="no level classifier at"):
        load_level_classifier(tmp_path / "missing")
    folder = save_bundle(tmp_path / "clf", toy_model, toy_model.config, kind="level_classifier")
    doc = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").write_text(json.dumps({**doc, "kind": "vqvae"}))
    with pytest.raises(ValueError, match="holds a 'vqvae' model, expected 'level_classifier'"):
        load_level_classifier(folder)
    doc["config"]["channels"] = [8, 32]
    (folder / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="does not match"):
        load_level_classifier(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_level_classifier(folder)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"image_size": 30}, "image_size"),
        ({"n_levels": 1}, "n_levels"),
        ({"channels": []}, "channels"),
        ({"channels": [8, 0]}, "channels"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"seed": -1}, "seed"),
        ({"dropout": 0.1}, "dropout"),
    ],
)
def test_config_validation(change, key):
    with pytest.raises(ConfigError, match=f"^{key}"):
        from_dict(LevelClassifierConfig, {**TOY_CONFIG, **change})


def test_training_input_errors():
    images, levels = toy_slices(per_level=1, seed=4)
    config = LevelClassifierConfig(**TOY_CONFIG)
    with pytest.raises(ValueError, match=r"levels must lie in \[0, 8\)"):
        train_level_classifier(images, levels + 1, config, False)
    with pytest.raises(ValueError, match="integer levels"):
        train_level_classifier(images, levels[:-1], config, False)
    with pytest.raises(ValueError, match="multiple of 32"):
        train_level_classifier(images[:, :48, :48], levels, config, False)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        train_level_classifier(images.astype(np.float32), levels, config, False)


def test_level_accuracy_tolerance(toy_model):
    images, _ = toy_slices(per_level=2, seed=5)
    predicted = predict_levels(toy_model, images)
    for offset in (0, 1, 2, 3):
        asked = np.where(predicted + offset < N_LEVELS, predicted + offset, predicted - offset)
        assert level_accuracy(toy_model, images, asked, tolerance=offset) == 1.0
        if offset > 0:
            assert level_accuracy(toy_model, images, asked, tolerance=offset - 1) == 0.0
    half = predicted.copy()
    half[::2] = np.where(predicted[::2] + 3 < N_LEVELS, predicted[::2] + 3, predicted[::2] - 3)
    assert level_accuracy(toy_model, images, half) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="tolerance"):
        level_accuracy(toy_model, images, predicted, tolerance=-1)


def test_level_error_is_the_mean_distance_to_the_level_asked_for(toy_model):
    """Where 2 levels of tolerance say nothing (3 levels off or 4), the error tells them apart."""
    images, _ = toy_slices(per_level=2, seed=5)
    predicted = predict_levels(toy_model, images)
    assert level_error(toy_model, images, predicted) == 0.0
    for offset in (3, 4):
        asked = np.where(predicted + offset < N_LEVELS, predicted + offset, predicted - offset)
        assert level_accuracy(toy_model, images, asked) == 0.0
        assert level_error(toy_model, images, asked) == pytest.approx(offset)
    with pytest.raises(ValueError, match=r"levels must lie in \[0, 8\)"):
        level_error(toy_model, images, predicted + N_LEVELS)


def test_frechet_distance_properties():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Same covariance, mean shifted by s in every one of the 6 dims: FD = 6 s^2.
    shifted = [frechet_distance(a, a + s) for s in (0.5, 1.0, 2.0)]
    np.testing.assert_allclose(shifted, [6 * 0.25, 6 * 1.0, 6 * 4.0], rtol=1e-6)
    b = rng.normal(size=(400, 6))
    assert 0.0 < frechet_distance(a, b) < shifted[0]


def test_frechet_distance_matches_1d_gaussians():
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, size=(300, 1))
    b = rng.normal(3.0, 2.0, size=(200, 1))
    # 1-D: FD = (m_a - m_b)^2 + (s_a - s_b)^2 with sample means and standard deviations.
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(10.0, rel=0.15)


def test_frechet_distance_singular_covariance_and_errors():
    constant = np.ones((50, 4))
    rng = np.random.default_rng(2)
    fd = frechet_distance(constant, rng.normal(size=(50, 4)))
    assert np.isfinite(fd) and fd > 4.0
    with pytest.raises(ValueError, match="feature dims differ"):
        frechet_distance(constant, constant[:, :3])
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(constant[:1], constant)


def test_high_frequency_share_definition():
    yy, xx = np.mgrid[:64, :64]
    low = 0.5 + 0.4 * np.sin(2 * np.pi * 6 * xx / 64)  # radius 6 <= 64/8: all low
    high = 0.5 + 0.4 * np.sin(2 * np.pi * 10 * yy / 64)  # radius 10 > 64/8: all high
    shares = high_frequency_share(np.stack([low, high, np.full((64, 64), 0.3)]))
    np.testing.assert_allclose(shares, [0.0, 1.0, 0.0], atol=1e-9)


def test_sharpness_ratio_identical_and_blurred():
    images, _ = toy_slices(per_level=2, seed=6)
    assert sharpness_ratio(images, images) == pytest.approx(1.0)
    blurred = np.stack([gaussian_filter(x.astype(np.float32), 2.0) for x in images])
    ratio = sharpness_ratio(np.rint(blurred).astype(np.uint8), images)
    assert ratio < 0.5, ratio
    with pytest.raises(ValueError, match="slice sizes differ"):
        sharpness_ratio(images[:, :32, :32], images)


def test_nearest_train_ssim_finds_copies(toy_train):
    train, _ = toy_train
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, size=(2, SIZE, SIZE), dtype=np.uint8)
    scores = nearest_train_ssim(np.concatenate([train[[3, 40]], noise]), train)
    np.testing.assert_allclose(scores[:2], 1.0, atol=1e-5)
    assert (scores[2:] < 0.2).all(), scores
    fresh, _ = toy_slices(per_level=1, seed=8)
    assert (nearest_train_ssim(fresh, train) < 0.95).all()
    small = train[:, 20:36, 20:36]  # 16x16, below the 32x32 preselection size
    np.testing.assert_allclose(nearest_train_ssim(small[[5]], small), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="slice sizes differ"):
        nearest_train_ssim(train[:2, :32, :32], train)
    with pytest.raises(ValueError, match="multiple of 32"):
        nearest_train_ssim(train[:2, :48, :48], train[:, :48, :48])


def test_generation_report(toy_model, toy_train):
    train, train_levels = toy_train
    test, test_levels = toy_slices(per_level=4, seed=9)
    validate, _ = toy_slices(per_level=4, seed=10)
    fresh, fresh_levels = toy_slices(per_level=3, seed=11)
    generated = np.concatenate([fresh, train[:5]])
    generated_levels = np.concatenate([fresh_levels, train_levels[:5]])
    noise = np.random.default_rng(12).integers(0, 256, size=(32, SIZE, SIZE), dtype=np.uint8)
    report = generation_report(
        toy_model, generated, generated_levels, test, test_levels, validate, train, noise
    )
    assert set(report) == {
        "fd", "fd_ceiling", "fd_floor", "level_accuracy", "level_accuracy_real",
        "level_error", "level_error_real", "sharpness_ratio", "memorisation_ssim_mean",
        "memorisation_ssim_real_mean",
        "near_copies", "n_generated",
    }  # fmt: skip
    assert report["near_copies"] == 5
    assert report["n_generated"] == len(generated)
    assert report["fd_ceiling"] < report["fd_floor"]
    assert report["fd"] < report["fd_floor"]
    assert report["level_accuracy"] > 0.6
    assert report["level_error"] == level_error(toy_model, generated, generated_levels)
    assert report["memorisation_ssim_mean"] > report["memorisation_ssim_real_mean"]
    assert report["sharpness_ratio"] == pytest.approx(sharpness_ratio(generated, test))
    unconditional = generation_report(
        toy_model, generated, None, test, test_levels, validate, train, noise
    )
    assert unconditional["level_accuracy"] is None and unconditional["level_error"] is None
    assert unconditional["fd"] == report["fd"]
