"""ONNX export of the VQ-VAE for edge devices.

`export_onnx` writes the VQ-VAE as two ONNX models that need nothing but an ONNX runtime:

- `encoder.onnx`: images (B, 1, H, W) float32 in [0, 1] (uint8 / 255) -> indices (B, h, w)
  int64 in [0, K): the conv encoder and the nearest-code lookup, argmin inside the graph;
- `decoder.onnx`: indices (B, h, w) int64 in [0, K) -> reconstruction (B, 1, H, W) float32 in
  [0, 1]: the codebook lookup and the conv decoder;

with a dynamic batch size and a fixed working size, plus `export.json` describing both, and
optionally int8 versions made by onnxruntime's dynamic quantization. Exporting works on a copy,
so the model handed in is never changed.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brainvq import __version__
from brainvq.io.bundle import Bundle, load_vqvae
from brainvq.models.vqvae import VQVAE

ONNX_OPSET = 17
MANIFEST_FILE = "export.json"
MANIFEST_FORMAT = "brainvq-onnx"
MANIFEST_VERSION = 1
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
ENCODER_INT8_FILE = "encoder.int8.onnx"
DECODER_INT8_FILE = "decoder.int8.onnx"
EXPORT_EXTRA = "pip install 'brainvq[export]'"
# Dynamic quantization has integer kernels for Conv (ConvInteger) but none for ConvTranspose;
# the nearest-code MatMul stays float32 on purpose, since 8-bit distances would change the codes.
QUANTIZED_OP_TYPES = ("Conv",)
# The decoder check at export time: ONNX vs PyTorch on the same indices. Float32 runtimes agree
# to ~1e-6 here; a larger gap means the exporter produced a different network.
DECODER_TOLERANCE = 1e-3
CHECK_BATCH = 2
CHECK_SEED = 0
# Lowest resolution of the smooth random images the export check feeds the encoder.
CHECK_COARSE = 8


def require_onnx() -> tuple[Any, Any]:
    """The `onnx` and `onnxruntime` modules, or an ImportError that names the extra to install."""
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ImportError(
            f"ONNX export needs the optional packages onnx and onnxruntime ({e.name or e} is "
            f"missing): {EXPORT_EXTRA}"
        ) from None
    return onnx, onnxruntime


class OnnxEncoder(nn.Module):
    """The exported encoder: images (B, C, H, W) float in [0, 1] -> indices (B, h, w) int64.

    The same computation as VQVAE.encode (eval-mode layers, squared-distance argmin), so the
    graph gives the indices PyTorch gives.
    """

    def __init__(self, model: VQVAE) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.quantizer = model.quantizer

    def forward(self, images: Tensor) -> Tensor:
        return self.quantizer.lookup(self.encoder(images))


class OnnxDecoder(nn.Module):
    """The exported decoder: indices (B, h, w) int64 in [0, K) -> images (B, C, H, W) in (0, 1).

    The value checks of VQVAE.decode_indices are data-dependent Python and cannot be traced.
    In the graph an index >= K makes the runtime's Gather fail, but a negative one counts from
    the end (ONNX Gather semantics): callers must keep indices in [0, K), as export.json says.
    """

    def __init__(self, model: VQVAE) -> None:
        super().__init__()
        self.codebook = model.quantizer.embedding
        self.decoder = model.decoder

    def forward(self, indices: Tensor) -> Tensor:
        codes = F.embedding(indices, self.codebook).permute(0, 3, 1, 2)  # (B, D, h, w)
        return self.decoder(codes)


def check_out_dir(out_dir: str | Path) -> Path:
    """`out_dir` as a Path; NotADirectoryError if it exists and is not a folder."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; expected a folder (new or existing)")
    return out


def _trace_to_onnx(module: nn.Module, example: Tensor, path: Path, names: tuple[str, str]) -> None:
    """Export `module` with the TorchScript-based exporter at ONNX_OPSET, batch axis dynamic.

    The torch.export-based exporter needs onnxscript, which the export extra does not install;
    its deprecation notice and the tracer's note about the (static) shape check are expected.
    """
    input_name, output_name = names
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
        )


def _quantize_int8(source: Path, target: Path, scratch: Path) -> None:
    """Dynamic int8 quantization (int8 weights, activations quantized at run time) of the
    QUANTIZED_OP_TYPES nodes, after onnxruntime's recommended pre-processing pass."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = scratch / f"{source.stem}.prepared.onnx"
    quant_pre_process(str(source), str(prepared))
    quantize_dynamic(
        str(prepared),
        str(target),
        op_types_to_quantize=list(QUANTIZED_OP_TYPES),
        weight_type=QuantType.QInt8,
    )
    prepared.unlink()


def _session(path: Path) -> Any:
    _, ort = require_onnx()
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check_images(config: Any) -> Tensor:
    """Smooth random images for the export check: (CHECK_BATCH, C, S, S) float in [0, 1]."""
    g = torch.Generator().manual_seed(CHECK_SEED)
    coarse = torch.rand(CHECK_BATCH, config.in_channels, CHECK_COARSE, CHECK_COARSE, generator=g)
    size = (config.image_size, config.image_size)
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def _run_pair(
    folder: Path, names: tuple[str, str], images: Tensor, indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Run an exported (encoder, decoder) pair: the encoder on images (B, C, H, W) float and
    the decoder on indices (B, h, w) int64. Returns (B, h, w) int64 and (B, C, H, W) float32."""
    encoder, decoder = (_session(folder / name) for name in names)
    codes = encoder.run(None, {"images": images.numpy()})[0]
    decoded = decoder.run(None, {"indices": indices})[0]
    return codes, decoded


def _agreement(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> dict:
    """Fraction of equal indices and largest decoder difference between two (codes, decoded)."""
    return {
        "index_agreement": float(np.mean(got[0] == want[0])),
        "decoder_max_abs_diff": float(np.abs(got[1] - want[1]).max()),
    }


def _tensor_doc(name: str, dtype: str, shape: list, value_range: list) -> dict:
    return {"name": name, "dtype": dtype, "shape": shape, "range": value_range}


def _manifest(bundle: Bundle, files: dict[str, int], checks: dict, quantized: bool) -> dict:
    """The content of export.json: sizes, tensor names/shapes/ranges, files and checks."""
    cfg = bundle.config
    size, latent, k = cfg.image_size, cfg.latent_size, cfg.codebook_size
    images = _tensor_doc("images", "float32", ["batch", cfg.in_channels, size, size], [0, 1])
    indices = _tensor_doc("indices", "int64", ["batch", latent, latent], [0, k - 1])
    reconstruction = {**images, "name": "reconstruction"}
    int8 = {
        "encoder": ENCODER_INT8_FILE,
        "decoder": DECODER_INT8_FILE,
        "method": (
            "onnxruntime quantize_dynamic: int8 weights and run-time quantized activations for "
            f"{', '.join(QUANTIZED_OP_TYPES)} nodes; ConvTranspose, the codebook and the "
            "nearest-code distances stay float32"
        ),
    }
    return {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "brainvq_version": __version__,
        "torch_version": torch.__version__,
        "opset": ONNX_OPSET,
        "source": str(bundle.path),
        "image_size": size,
        "latent_size": latent,
        "downsample": cfg.downsample,
        "in_channels": cfg.in_channels,
        "codebook_size": k,
        "code_dim": cfg.code_dim,
        "intensity": (
            "encoder input float32 in [0, 1] = uint8 / 255; decoder output float32, clamp to "
            "[0, 1] (uint8 = round(255 * y))"
        ),
        "encoder": {"file": ENCODER_FILE, "input": images, "output": indices},
        "decoder": {"file": DECODER_FILE, "input": indices, "output": reconstruction},
        "int8": int8 if quantized else None,
        "file_bytes": files,
        "checks": checks,
    }


def _write_models(
    model: VQVAE, images: Tensor, indices: Tensor, folder: Path, quantize: bool
) -> list[str]:
    """Export encoder and decoder (and their int8 versions) into `folder`; returns the names."""
    onnx, _ = require_onnx()
    _trace_to_onnx(OnnxEncoder(model), images, folder / ENCODER_FILE, ("images", "indices"))
    _trace_to_onnx(
        OnnxDecoder(model), indices, folder / DECODER_FILE, ("indices", "reconstruction")
    )
    names = [ENCODER_FILE, DECODER_FILE]
    if quantize:
        _quantize_int8(folder / ENCODER_FILE, folder / ENCODER_INT8_FILE, folder)
        _quantize_int8(folder / DECODER_FILE, folder / DECODER_INT8_FILE, folder)
        names += [ENCODER_INT8_FILE, DECODER_INT8_FILE]
    for name in names:
        onnx.checker.check_model(str(folder / name))
    return names


def export_onnx(bundle_or_path: Bundle | str | Path, out_dir: str | Path, quantize: bool) -> dict:
    """Export a VQ-VAE's encoder and decoder to ONNX in `out_dir` (see the module docstring).

    bundle_or_path: a loaded Bundle, a VQVAE_Model folder or a run directory holding one.
    quantize: also write encoder.int8.onnx and decoder.int8.onnx.
    Every file is made in a temporary folder and then moved into `out_dir`, export.json last;
    int8 files left by an earlier export are removed when `quantize` is off. Returns the
    manifest written to export.json, including the export check: fp32 ONNX vs PyTorch (and
    int8 vs fp32 ONNX) index agreement and decoder max abs difference on smooth random images.
    """
    require_onnx()
    out = check_out_dir(out_dir)
    bundle = bundle_or_path if isinstance(bundle_or_path, Bundle) else load_vqvae(bundle_or_path)
    if not isinstance(bundle.model, VQVAE):
        raise ValueError(
            f"{bundle.path}: expected a VQ-VAE bundle, got {type(bundle.model).__name__}"
        )
    model = copy.deepcopy(bundle.model).cpu().eval()
    images = _check_images(bundle.config)
    indices = model.encode(images)  # (B, h, w)
    reference = (indices.numpy(), model.decode_indices(indices).numpy())
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".export.", dir=out))
    try:
        names = _write_models(model, images, indices, scratch, quantize)
        checks: dict[str, Any] = {
            "images": f"{CHECK_BATCH} smooth random images, seed {CHECK_SEED}"
        }
        fp32 = _run_pair(scratch, (ENCODER_FILE, DECODER_FILE), images, reference[0])
        checks["fp32_vs_pytorch"] = _agreement(fp32, reference)
        gap = checks["fp32_vs_pytorch"]["decoder_max_abs_diff"]
        if gap > DECODER_TOLERANCE:
            raise RuntimeError(
                f"the exported decoder differs from PyTorch by up to {gap:.3g} (tolerance "
                f"{DECODER_TOLERANCE}); the ONNX exporter changed the network, please report this"
            )
        if quantize:
            int8 = _run_pair(scratch, (ENCODER_INT8_FILE, DECODER_INT8_FILE), images, reference[0])
            checks["int8_vs_fp32"] = _agreement(int8, fp32)
        files = {name: (scratch / name).stat().st_size for name in names}
        manifest = _manifest(bundle, files, checks, quantize)
        (scratch / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        for name in [*names, MANIFEST_FILE]:
            with open(scratch / name, "rb") as f:
                os.fsync(f.fileno())
            os.replace(scratch / name, out / name)
        if not quantize:
            for stale in (ENCODER_INT8_FILE, DECODER_INT8_FILE):
                (out / stale).unlink(missing_ok=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return manifest
