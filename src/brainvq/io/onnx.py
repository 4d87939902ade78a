"""ONNX export of the VQ-VAE (and optionally the prior's sampler) for edge devices.

`export_onnx` writes the VQ-VAE as two ONNX models that need nothing but an ONNX runtime:

- `encoder.onnx`: images (B, 1, H, W) float32 in [0, 1] (uint8 / 255) -> indices (B, h, w)
  int64 in [0, K): the conv encoder and the nearest-code lookup, argmin inside the graph;
- `decoder.onnx`: indices (B, h, w) int64 in [0, K) -> reconstruction (B, 1, H, W) float32 in
  [0, 1]: the codebook lookup and the conv decoder;

with a dynamic batch size and a fixed working size, plus `export.json` describing everything
and `brainvq_edge.py`, a copy of brainvq.edge (numpy + onnxruntime only), so that the folder
runs on its own. A 3D VQ-VAE (`dims: 3`) exports the same two graphs over volumes: images
(B, 1, D, H, W) -> indices (B, D / level_stride, h, w) and back, the batch and the number of
levels D (a multiple of the level stride) dynamic; its export has no int8 versions, no prior
and no edge runtime (`check_3d_export`: the edge runtime codes, draws and decodes 2D code
maps, and int8 calibration takes slices), so the graphs run with onnxruntime directly.
Optionally (2D) also:

- int8 versions (brainvq.io.onnx_quantize): "int8", onnxruntime's dynamic quantization (int8
  weights, activations quantized at run time), or "int8-static", QDQ static quantization
  calibrated on real slices (per-channel int8 weights, activation ranges fixed by calibration);
- the prior's cached-sampler steps (brainvq.io.onnx_prior), for sampling without PyTorch.

Exporting works on a copy, so the models handed in are never changed.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brainvq._version import __version__
from brainvq.atomic import output_folder
from brainvq.io.bundle import Bundle, load_prior, load_vqvae
from brainvq.io.onnx_quantize import QUANTIZE_MODES, QUANTIZED_FILES, int8_doc, quantize_pair
from brainvq.io.onnx_trace import ONNX_OPSET, trace_to_onnx
from brainvq.models.vqvae import VQVAE

MANIFEST_FILE = "export.json"
MANIFEST_FORMAT = "brainvq-onnx"
# 2: int8.mode (dynamic or static), the prior's graphs, the edge runtime's copy; 3: the
# prior's neighbour graph (a prior of whole subjects), which a version-2 runtime would ignore;
# 4: dims and level_stride (a 3D model's graphs, which a version-3 runtime would misread)
MANIFEST_VERSION = 4
EXPORT_EXTRA = "pip install 'brainvq[export]'"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
EDGE_RUNTIME_FILE = "brainvq_edge.py"
# The export check: ONNX vs PyTorch on the same indices. Float32 runtimes agree far more
# closely (export.json records the gap); a larger one means the exporter made another network.
DECODER_TOLERANCE = 1e-3
CHECK_BATCH = 2
CHECK_SEED = 0
# Lowest resolution of the smooth random images the export check feeds the encoder.
CHECK_COARSE = 8
# Latent levels of the smooth random volumes a 3D export is checked on (any number works).
CHECK_LATENT_LEVELS = 2
# The graphs' dynamic axes: the batch; a 3D model's levels (images (B, C, D, H, W)) and latent
# levels (indices (B, d, h, w)) too.
DYNAMIC_AXES = {
    2: {"images": {0: "batch"}, "indices": {0: "batch"}, "reconstruction": {0: "batch"}},
    3: {
        "images": {0: "batch", 2: "levels"},
        "indices": {0: "batch", 1: "latent_levels"},
        "reconstruction": {0: "batch", 2: "levels"},
    },
}


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
    """The exported encoder: images (B, C, H, W) float in [0, 1] -> indices (B, h, w) int64;
    3D: volumes (B, C, D, H, W) -> indices (B, d, h, w).

    The same computation as VQVAE.encode (eval-mode layers, squared-distance argmin; a 3D
    latent's levels stacked along the rows for the lookup), so the graph gives the indices
    PyTorch gives.
    """

    def __init__(self, model: VQVAE) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.quantizer = model.quantizer
        self.dims = model.config.dims

    def forward(self, images: Tensor) -> Tensor:
        z = self.encoder(images)  # (B, D, h, w) or (B, D, d, h, w)
        if self.dims == 2:
            return self.quantizer.lookup(z)
        codes = self.quantizer.lookup(z.flatten(2, 3))  # (B, d*h, w)
        return codes.unflatten(1, (z.shape[2], z.shape[3]))  # (B, d, h, w)


class OnnxDecoder(nn.Module):
    """The exported decoder: indices (B, h, w) int64 in [0, K) -> images (B, C, H, W) in (0, 1);
    3D: indices (B, d, h, w) -> volumes (B, C, D, H, W).

    The value checks of VQVAE.decode_indices are data-dependent Python and cannot be traced.
    In the graph an index >= K makes the runtime's Gather fail, but a negative one counts from
    the end (ONNX Gather semantics): callers must keep indices in [0, K), as export.json says.
    """

    def __init__(self, model: VQVAE) -> None:
        super().__init__()
        self.codebook = model.quantizer.embedding
        self.decoder = model.decoder

    def forward(self, indices: Tensor) -> Tensor:
        codes = F.embedding(indices, self.codebook)  # (B, [d,] h, w, D)
        last = codes.ndim - 1  # a negative axis would reach the graph as a negative perm
        return self.decoder(codes.permute(0, last, *range(1, last)))  # (B, D, [d,] h, w)


def edge_runtime_source() -> Path:
    """The file of the module brainvq.edge (copied into every export as EDGE_RUNTIME_FILE),
    wherever the package is installed."""
    import brainvq.edge

    return Path(brainvq.edge.__file__)


def check_3d_export(config: Any, quantize: str | None, prior: object | None) -> None:
    """ValueError in one line when a 3D VQ-VAE's export asks for what only a 2D one has: int8
    versions (calibrated and checked on slices) or the prior's sampler steps (the edge runtime
    draws and decodes 2D code maps, not code volumes)."""
    if config.dims != 3:
        return
    for asked, what in ((quantize, f"int8 quantization ({quantize})"), (prior, "the prior")):
        if asked is not None:
            raise ValueError(
                f"ONNX export of a 3D VQ-VAE (vqvae.dims: 3) has no {what}: the encoder and "
                "decoder are exported in fp32 only, without the prior or the edge runtime"
            )


def _trace_pair_part(
    module: nn.Module, example: Tensor, path: Path, names: tuple[str, str], dims: int
) -> None:
    """Encoder or decoder: one input, one output, batch axis dynamic (3D: the levels too)."""
    axes = {name: dict(DYNAMIC_AXES[dims][name]) for name in names}
    trace_to_onnx(module, (example,), path, [names[0]], [names[1]], axes)


def _session(path: Path) -> Any:
    _, ort = require_onnx()
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check_images(config: Any) -> Tensor:
    """Smooth random images for the export check: (CHECK_BATCH, C, S, S) float in [0, 1];
    3D: volumes (CHECK_BATCH, C, CHECK_LATENT_LEVELS * level_stride, S, S)."""
    g = torch.Generator().manual_seed(CHECK_SEED)
    if config.dims == 3:
        depth = CHECK_LATENT_LEVELS * config.level_stride
        coarse = torch.rand(
            CHECK_BATCH, config.in_channels, depth, CHECK_COARSE, CHECK_COARSE, generator=g
        )
        size = (depth, config.image_size, config.image_size)
        return F.interpolate(coarse, size=size, mode="trilinear", align_corners=False)
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


def _manifest(bundle: Bundle, files: dict[str, int], checks: dict, int8: dict | None) -> dict:
    """The content of export.json: sizes, tensor names/shapes/ranges, files and checks."""
    cfg = bundle.config
    size, latent, k = cfg.image_size, cfg.latent_size, cfg.codebook_size
    levels, latent_levels = (["levels"], ["latent_levels"]) if cfg.dims == 3 else ([], [])
    image_shape = ["batch", cfg.in_channels, *levels, size, size]
    images = _tensor_doc("images", "float32", image_shape, [0, 1])
    indices = _tensor_doc("indices", "int64", ["batch", *latent_levels, latent, latent], [0, k - 1])
    reconstruction = {**images, "name": "reconstruction"}
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
        "dims": cfg.dims,
        # slices a latent level (3D: levels = latent_levels * level_stride); 1 in 2D
        "level_stride": cfg.level_stride,
        "in_channels": cfg.in_channels,
        "codebook_size": k,
        "code_dim": cfg.code_dim,
        "intensity": (
            "encoder input float32 in [0, 1] = uint8 / 255; decoder output float32, clamp to "
            "[0, 1] (uint8 = round(255 * y))"
        ),
        "encoder": {"file": ENCODER_FILE, "input": images, "output": indices},
        "decoder": {"file": DECODER_FILE, "input": indices, "output": reconstruction},
        "int8": int8,
        "prior": None,
        "edge_runtime": EDGE_RUNTIME_FILE if cfg.dims == 2 else None,
        "file_bytes": files,
        "checks": checks,
    }


def _write_models(
    model: VQVAE,
    images: Tensor,
    indices: Tensor,
    folder: Path,
    quantize: str | None,
    calibration: np.ndarray | None,
) -> list[str]:
    """Export encoder and decoder (and their int8 versions) into `folder`; returns the names."""
    onnx, _ = require_onnx()
    dims = model.config.dims
    encoder, decoder = OnnxEncoder(model), OnnxDecoder(model)
    _trace_pair_part(encoder, images, folder / ENCODER_FILE, ("images", "indices"), dims)
    _trace_pair_part(decoder, indices, folder / DECODER_FILE, ("indices", "reconstruction"), dims)
    names = [ENCODER_FILE, DECODER_FILE]
    if quantize is not None:
        names += quantize_pair(model, folder, (ENCODER_FILE, DECODER_FILE), quantize, calibration)
    for name in names:
        onnx.checker.check_model(str(folder / name))
    return names


def _check_calibration(calibration: np.ndarray | None, quantize: str | None, size: int):
    if quantize != "int8-static":
        if calibration is not None:
            raise ValueError("calibration: only quantize='int8-static' uses calibration slices")
        return
    if calibration is None:
        raise ValueError("quantize='int8-static' needs calibration slices (N, H, W) uint8")
    c = np.asarray(calibration)
    if c.dtype != np.uint8 or c.ndim != 3 or c.shape[1:] != (size, size) or len(c) == 0:
        raise ValueError(
            f"calibration: expected (N >= 1, {size}, {size}) uint8 slices, got {c.shape} {c.dtype}"
        )


def _load_prior(prior: Bundle | str | Path, vqvae: Bundle) -> Bundle:
    from brainvq.models.pixelcnn import GatedPixelCNN

    bundle = prior if isinstance(prior, Bundle) else load_prior(prior)
    if not isinstance(bundle.model, GatedPixelCNN):
        raise ValueError(
            f"{bundle.path}: expected a prior bundle, got {type(bundle.model).__name__}"
        )
    k, want = bundle.config.codebook_size, vqvae.config.codebook_size
    if k != want:
        raise ValueError(
            f"{bundle.path}: the prior models {k} codes but the VQ-VAE {vqvae.path} has {want}"
        )
    return bundle


def export_onnx(
    bundle_or_path: Bundle | str | Path,
    out_dir: str | Path,
    quantize: str | None = None,
    *,
    calibration: np.ndarray | None = None,
    prior: Bundle | str | Path | None = None,
) -> dict:
    """Export a VQ-VAE's encoder and decoder to ONNX in `out_dir` (see the module docstring).

    bundle_or_path: a loaded Bundle, a VQVAE_Model folder or a run directory holding one.
    quantize: None, "int8" (dynamic) or "int8-static" (QDQ, calibrated on `calibration`:
    (N, H, W) uint8 slices, e.g. from the run's training split). prior: a prior Bundle, a
    PixelCNN_Model folder or a run directory, to export its sampler steps too.
    Every file is made in a temporary folder and then moved into `out_dir`, export.json last;
    files of an earlier export that this one does not write (other int8 models, the prior's
    graphs) are removed. Returns the manifest written to export.json, including the export
    checks: fp32 ONNX vs PyTorch (and int8 vs fp32 ONNX) index agreement and decoder max abs
    difference on smooth random images, and the prior's teacher-forced logits vs PyTorch.
    """
    require_onnx()
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise ValueError(
            f"quantize: expected None or one of {list(QUANTIZE_MODES)}, got {quantize!r}"
        )
    out = output_folder(out_dir, "--out")
    bundle = bundle_or_path if isinstance(bundle_or_path, Bundle) else load_vqvae(bundle_or_path)
    if not isinstance(bundle.model, VQVAE):
        raise ValueError(
            f"{bundle.path}: expected a VQ-VAE bundle, got {type(bundle.model).__name__}"
        )
    check_3d_export(bundle.config, quantize, prior)
    _check_calibration(calibration, quantize, bundle.config.image_size)
    prior_bundle = None if prior is None else _load_prior(prior, bundle)
    model = copy.deepcopy(bundle.model).cpu().eval()
    images = _check_images(bundle.config)
    indices = model.encode(images)  # (B, h, w); 3D (B, d, h, w)
    reference = (indices.numpy(), model.decode_indices(indices).numpy())
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".export.", dir=out))
    try:
        names = _write_models(model, images, indices, scratch, quantize, calibration)
        what = "images" if bundle.config.dims == 2 else f"volumes of {images.shape[2]} levels"
        checks: dict[str, Any] = {
            "images": f"{CHECK_BATCH} smooth random {what}, seed {CHECK_SEED}"
        }
        fp32 = _run_pair(scratch, (ENCODER_FILE, DECODER_FILE), images, reference[0])
        checks["fp32_vs_pytorch"] = _agreement(fp32, reference)
        gap = checks["fp32_vs_pytorch"]["decoder_max_abs_diff"]
        if gap > DECODER_TOLERANCE:
            raise RuntimeError(
                f"the exported decoder differs from PyTorch by up to {gap:.3g} (tolerance "
                f"{DECODER_TOLERANCE}); the ONNX exporter changed the network, please report this"
            )
        int8 = None
        if quantize is not None:
            int8 = int8_doc(quantize, 0 if calibration is None else len(calibration))
            pair = (int8["encoder"], int8["decoder"])
            checks["int8_vs_fp32"] = _agreement(
                _run_pair(scratch, pair, images, reference[0]), fp32
            )
        prior_entry = None
        if prior_bundle is not None:
            from brainvq.io import onnx_prior

            latent = (bundle.config.latent_size, bundle.config.latent_size)
            prior_model = copy.deepcopy(prior_bundle.model).cpu().float().eval()
            prior_entry = onnx_prior.write_prior_graphs(prior_model, latent, scratch)
            prior_entry["source"] = str(prior_bundle.path)
            checks["prior_vs_pytorch"] = onnx_prior.check_prior_graphs(
                prior_model, scratch, prior_entry
            )
            names += [prior_entry["row"]["file"], prior_entry["position"]["file"]]
            if prior_entry["neighbour"]:
                names.append(prior_entry["neighbour"]["file"])
        if bundle.config.dims == 2:  # the edge runtime codes and draws 2D code maps
            shutil.copyfile(edge_runtime_source(), scratch / EDGE_RUNTIME_FILE)
            names.append(EDGE_RUNTIME_FILE)
        files = {name: (scratch / name).stat().st_size for name in names}
        manifest = _manifest(bundle, files, checks, int8)
        manifest["prior"] = prior_entry
        (scratch / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        for name in [*names, MANIFEST_FILE]:
            with open(scratch / name, "rb") as f:
                os.fsync(f.fileno())
            os.replace(scratch / name, out / name)
        from brainvq.io.onnx_prior import PRIOR_FILES

        for stale in {*sum(QUANTIZED_FILES.values(), ()), *PRIOR_FILES, EDGE_RUNTIME_FILE} - set(
            names
        ):
            (out / stale).unlink(missing_ok=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return manifest
