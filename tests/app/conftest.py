"""Fixtures of the app tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny import TINY_CONFIG

from brainvq.io.bundle import PRIOR_FOLDER, VQVAE_FOLDER, save_bundle
from brainvq.models.pixelcnn import GatedPixelCNN
from brainvq.models.vqvae import VQVAE
from brainvq.run_config import load_run_config, save_run_config


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory with untrained tiny models (tests/configs/tiny.yaml, the demo cohort at
    32x32): enough for sample, complete, reconstruct, export and prune."""
    run = tmp_path_factory.mktemp("run")
    config = load_run_config(TINY_CONFIG)
    save_run_config(config, run / "config.yaml")
    meta = {"n_levels": 32, "data_source": "demo"}
    torch.manual_seed(0)
    save_bundle(run / "vqvae" / VQVAE_FOLDER, VQVAE(config.vqvae), config.vqvae, "vqvae", meta)
    side = config.vqvae.latent_size
    prior_meta = {"latent_shape": [side, side]}
    save_bundle(
        run / "prior" / PRIOR_FOLDER, GatedPixelCNN(config.prior), config.prior, "prior", prior_meta
    )
    return run


@pytest.fixture(scope="module")
def fake_subject_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run like fake_run whose prior knows the slice below (`prior: {neighbour: previous}`)
    and the 32 levels, its weights perturbed so that the slice below matters: enough for
    `sample --subjects` and its files."""
    import dataclasses

    run = tmp_path_factory.mktemp("subject_run")
    config = load_run_config(TINY_CONFIG, {"prior": {"neighbour": "previous"}})
    save_run_config(config, run / "config.yaml")
    meta = {"n_levels": 32, "data_source": "demo"}
    torch.manual_seed(0)
    save_bundle(run / "vqvae" / VQVAE_FOLDER, VQVAE(config.vqvae), config.vqvae, "vqvae", meta)
    side = config.vqvae.latent_size
    prior_config = dataclasses.replace(config.prior, n_levels=32, map_size=side)
    torch.manual_seed(0)
    prior = GatedPixelCNN(prior_config)
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    save_bundle(
        run / "prior" / PRIOR_FOLDER, prior, prior_config, "prior", {"latent_shape": [side, side]}
    )
    return run


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user cache of this test's own."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("BRAINVQ_CACHE", str(folder))
    return folder
