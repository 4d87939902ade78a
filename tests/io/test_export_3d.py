"""`brainvq export` of a 3D run: the encoder and decoder as ONNX graphs over volumes that give
PyTorch's codes and reconstruction (any batch, any number of levels the level stride divides),
export.json saying so, and what a 3D export does not have (int8, the prior, the edge runtime)
refused in one line with exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tiny import (
    assert_codes_agree,
    brainvq_cli,
    small_3d_vqvae_config,
    train_tiny_3d,
)

from brainvq.edge import EdgeModel
from brainvq.io.bundle import load_vqvae, save_bundle
from brainvq.io.onnx import export_onnx
from brainvq.models.vqvae import VQVAE

SIZE, STRIDE = 32, 2  # tiny_3d.yaml: 32x32 slices, level_downsample 2, downsample 4
SMALL_3D = small_3d_vqvae_config()
# ONNX Runtime's float32 convolutions against PyTorch's, on the same indices
DECODER_TOLERANCE = 1e-4


def structured_volumes(n: int, depth: int, size: int = SIZE) -> torch.Tensor:
    """Balls, shells and gradients through the levels: (n, 1, depth, size, size) in [0, 1]."""
    zz, yy, xx = np.mgrid[0:depth, 0:size, 0:size].astype(np.float32)
    zz, yy, xx = zz / max(depth - 1, 1) - 0.5, yy / (size - 1) - 0.5, xx / (size - 1) - 0.5
    r = np.sqrt(zz**2 + yy**2 + xx**2)
    shapes = [
        (r < 0.35) * 0.9,
        ((r > 0.2) & (r < 0.4)) * 0.7 + 0.1,
        (xx + 0.5) * (zz + 0.5),
        0.5 + 0.5 * np.sin(12 * yy + 6 * zz),
    ]
    volumes = np.stack([shapes[i % len(shapes)] for i in range(n)]).astype(np.float32)
    return torch.from_numpy(volumes).unsqueeze(1)  # (n, 1, depth, size, size)


@pytest.fixture(scope="module")
def exported_3d(tmp_path_factory: pytest.TempPathFactory) -> tuple[VQVAE, Path, dict]:
    """A 3D VQ-VAE with random weights and a codebook spread over its latents (k-means init of
    one training-mode pass), so volumes use many codes, exported to ONNX."""
    torch.manual_seed(0)
    model = VQVAE(SMALL_3D)
    with torch.no_grad():
        model.train()(structured_volumes(6, 4 * STRIDE))
    model.eval()
    bundle = save_bundle(tmp_path_factory.mktemp("m") / "VQVAE_Model", model, SMALL_3D, "vqvae")
    out = tmp_path_factory.mktemp("onnx")
    return model, out, export_onnx(bundle, out)


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize(("batch", "depth"), [(1, 8), (3, 6)])
def test_onnx_volumes_give_pytorchs_codes_and_reconstruction(exported_3d, batch, depth) -> None:
    model, out, _ = exported_3d
    x = structured_volumes(batch, depth)
    codes = session(out / "encoder.onnx").run(None, {"images": x.numpy()})[0]
    assert codes.shape == (batch, depth // STRIDE, SIZE // 4, SIZE // 4)
    assert codes.dtype == np.int64
    assert_codes_agree(codes, model, x)  # equal, but where two codes tie
    assert len(np.unique(codes)) > 3, "the check is only meaningful with varied codes"
    expected = model.encode(x)
    decoder = session(out / "decoder.onnx")
    g = torch.Generator().manual_seed(depth)
    for indices in (expected, torch.randint(0, 16, tuple(expected.shape), generator=g)):
        decoded = decoder.run(None, {"indices": indices.numpy()})[0]
        assert decoded.shape == (batch, 1, depth, SIZE, SIZE) and decoded.dtype == np.float32
        gap = np.abs(decoded - model.decode_indices(indices).numpy()).max()
        assert gap < DECODER_TOLERANCE, gap


def test_export_json_describes_the_3d_graphs(exported_3d) -> None:
    _, out, manifest = exported_3d
    doc = json.loads((out / "export.json").read_text(encoding="utf-8"))
    assert doc == manifest
    assert (doc["dims"], doc["level_stride"], doc["format_version"]) == (3, STRIDE, 4)
    assert doc["encoder"]["input"]["shape"] == ["batch", 1, "levels", SIZE, SIZE]
    assert doc["encoder"]["output"]["shape"] == ["batch", "latent_levels", 8, 8]
    assert doc["decoder"]["output"]["shape"] == ["batch", 1, "levels", SIZE, SIZE]
    assert doc["int8"] is None and doc["prior"] is None and doc["edge_runtime"] is None
    check = doc["checks"]["fp32_vs_pytorch"]
    assert check["index_agreement"] >= 0.99 and check["decoder_max_abs_diff"] < DECODER_TOLERANCE
    assert "volumes of 4 levels" in doc["checks"]["images"]
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx", "encoder.onnx", "export.json"]


def test_the_edge_runtime_refuses_a_3d_export(exported_3d) -> None:
    _, out, _ = exported_3d
    with pytest.raises(ValueError, match="a 3D VQ-VAE's export"):
        EdgeModel(out)


@pytest.fixture(scope="module")
def run_3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 3D run: `train vqvae` on tiny_3d.yaml (seconds)."""
    return train_tiny_3d(tmp_path_factory.mktemp("run3d"))


def test_cli_exports_a_3d_run_that_codes_its_own_subject(run_3d: Path, tmp_path: Path) -> None:
    out = tmp_path / "onnx"
    done = brainvq_cli("export", "--run", run_3d, "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrote" in done.stdout and "indices agree" in done.stdout
    model = load_vqvae(run_3d / "vqvae" / "VQVAE_Model").model
    x = structured_volumes(2, 16)  # a run's depth: 16 levels
    codes = session(out / "encoder.onnx").run(None, {"images": x.numpy()})[0]
    assert_codes_agree(codes, model, x)
    decoded = session(out / "decoder.onnx").run(None, {"indices": codes})[0]
    gap = np.abs(decoded - model.decode_indices(torch.from_numpy(codes)).numpy()).max()
    assert gap < DECODER_TOLERANCE, gap


@pytest.mark.parametrize(
    ("flags", "what"),
    [
        (("--quantize", "int8"), "int8 quantization (int8)"),
        (("--quantize", "int8-static"), "int8 quantization (int8-static)"),
        (("--with-prior",), "the prior"),
    ],
    ids=["int8", "int8-static", "with-prior"],
)
def test_what_a_3d_export_lacks_is_refused_in_one_line(
    run_3d: Path, tmp_path: Path, flags: tuple[str, ...], what: str
) -> None:
    out = tmp_path / "onnx"
    done = brainvq_cli("export", "--run", run_3d, "--out", out, *flags)
    assert done.returncode == 2, (done.stdout[-2000:], done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert f"a 3D VQ-VAE (vqvae.dims: 3) has no {what}" in lines[0], lines[0]
    assert not out.exists() or not any(out.iterdir())
