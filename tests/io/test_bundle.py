"""Model bundles: safetensors + JSON only, bit-exact round trips, a clear error per defect,
and no code from a file ever runs."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from brainvq.io.bundle import BundleError, load_prior, load_vqvae, save_bundle
from brainvq.models.pixelcnn import GatedPixelCNN, PixelCNNConfig
from brainvq.models.vqvae import VQVAE, VQVAEConfig

SMALL = VQVAEConfig(
    image_size=32, channels=(8, 16), res_blocks=1, res_channels=8, code_dim=8, codebook_size=16
)


@pytest.fixture
def vq_bundle(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_bundle(
        tmp_path / "VQVAE_Model", VQVAE(SMALL), SMALL, kind="vqvae", meta={"note": "test"}
    )


def test_vqvae_round_trip_is_bit_exact(vq_bundle: Path) -> None:
    torch.manual_seed(0)
    original = VQVAE(SMALL)
    loaded = load_vqvae(vq_bundle)
    assert loaded.config == SMALL and loaded.meta == {"note": "test"}
    for key, value in original.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key]), key
    x = torch.rand(2, 1, 32, 32)
    assert torch.equal(original.eval()(x)[0], loaded.model(x)[0])
    assert sorted(p.name for p in vq_bundle.iterdir()) == ["config.json", "model.safetensors"]


def test_prior_round_trip_and_run_directory_lookup(tmp_path: Path) -> None:
    cfg = PixelCNNConfig(
        codebook_size=16, n_levels=4, embed_dim=8, channels=8, n_layers=2, head_channels=16
    )
    model = GatedPixelCNN(cfg)
    save_bundle(tmp_path / "run" / "prior" / "PixelCNN_Model", model, cfg, kind="prior")
    loaded = load_prior(tmp_path / "run")
    codes = torch.randint(0, 16, (2, 6, 6))
    level = torch.tensor([0, 3])
    assert torch.equal(model.eval()(codes, level), loaded.model(codes, level))


def test_a_version_1_prior_bundle_still_loads(tmp_path: Path) -> None:
    """Version 1 named the codebook size `num_codes` and kept one level map per level."""
    cfg = PixelCNNConfig(
        codebook_size=16,
        n_levels=4,
        embed_dim=8,
        channels=8,
        n_layers=2,
        head_channels=16,
        level_map_rank=0,
        map_size=6,
    )
    model = GatedPixelCNN(cfg)
    folder = save_bundle(tmp_path / "PixelCNN_Model", model, cfg, kind="prior")
    doc = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    doc["format_version"] = 1
    doc["config"]["num_codes"] = doc["config"].pop("codebook_size")
    del doc["config"]["level_map_rank"]
    (folder / "config.json").write_text(json.dumps(doc))
    loaded = load_prior(folder)
    assert loaded.config == cfg
    codes = torch.randint(0, 16, (2, 6, 6))
    level = torch.tensor([1, 2])
    assert torch.equal(model.eval()(codes, level), loaded.model(codes, level))


def test_save_replaces_an_existing_bundle_whole(vq_bundle: Path) -> None:
    other = VQVAEConfig(**{**SMALL.__dict__, "codebook_size": 32})
    save_bundle(vq_bundle, VQVAE(other), other, kind="vqvae")
    assert load_vqvae(vq_bundle).config.codebook_size == 32
    assert not list(vq_bundle.parent.glob(".VQVAE_Model*"))


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_vqvae(tmp_path / "nothing")


def test_missing_weights(vq_bundle: Path) -> None:
    (vq_bundle / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_vqvae(vq_bundle)


def test_missing_config(vq_bundle: Path) -> None:
    (vq_bundle / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_vqvae(vq_bundle)


def test_config_that_does_not_match_the_weights(vq_bundle: Path) -> None:
    doc = json.loads((vq_bundle / "config.json").read_text(encoding="utf-8"))
    doc["config"]["codebook_size"] = 64
    (vq_bundle / "config.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="does not match"):
        load_vqvae(vq_bundle)


def test_weights_that_are_not_safetensors(vq_bundle: Path) -> None:
    (vq_bundle / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(BundleError, match="not a valid safetensors"):
        load_vqvae(vq_bundle)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["config"].update(codebook_size=1), "codebook_size"),
        (lambda d: d["config"].update(surprise=3), "surprise: unknown key"),
        (lambda d: d["config"].update(channels="wide"), "channels"),
        (lambda d: d.update(kind="prior"), "expected 'vqvae'"),
        (lambda d: d.update(format_version=99), "format_version"),
    ],
)
def test_config_is_validated_before_anything_is_built(vq_bundle: Path, edit, message: str) -> None:
    doc = json.loads((vq_bundle / "config.json").read_text(encoding="utf-8"))
    edit(doc)
    (vq_bundle / "config.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=message):
        load_vqvae(vq_bundle)


def test_config_that_is_not_json(vq_bundle: Path) -> None:
    (vq_bundle / "config.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_vqvae(vq_bundle)


class _Exploit:
    """Unpickling this object writes a marker file: the proof that code from a file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_pickles_are_refused_and_never_executed(tmp_path: Path, vq_bundle: Path) -> None:
    marker = tmp_path / "marker.txt"
    payload = pickle.dumps({"state_dict": _Exploit(marker)})
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(payload)
    with pytest.raises(BundleError, match="brainvq export --from-ckpt"):
        load_vqvae(ckpt)
    (vq_bundle / "model.safetensors").write_bytes(payload)
    with pytest.raises(BundleError):
        load_vqvae(vq_bundle)
    assert not marker.exists()
