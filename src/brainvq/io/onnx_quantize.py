"""int8 versions of an exported encoder and decoder (brainvq.io.onnx), with onnxruntime.

- "int8": dynamic quantization: int8 weights, activations quantized at run time, for the
  QUANTIZED_OP_TYPES nodes;
- "int8-static": QDQ static quantization: per-channel int8 weights and uint8 activations whose
  ranges are calibrated on real slices, for the STATIC_OP_TYPES nodes, so that onnxruntime fuses
  each DQ -> op -> Q group into one integer kernel.

The codebook and the nearest-code search stay float32 in both: 8-bit distances would change the
codes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from brainvq.models.vqvae import VQVAE

QUANTIZE_MODES = ("int8", "int8-static")
QUANTIZED_FILES = {
    "int8": ("encoder.int8.onnx", "decoder.int8.onnx"),
    "int8-static": ("encoder.int8-static.onnx", "decoder.int8-static.onnx"),
}
# Dynamic quantization has integer kernels for Conv (ConvInteger) but none for ConvTranspose;
# the nearest-code MatMul stays float32 on purpose, since 8-bit distances would change the codes.
QUANTIZED_OP_TYPES = ("Conv",)
# Static (QDQ) quantization of the convolutions and what runs between them, so that
# onnxruntime fuses each DQ -> op -> Q group into one integer kernel (ConvTranspose included);
# the codebook Gather and the nearest-code search (MatMul, ReduceSum, ArgMin) stay float32.
# The encoder keeps more in float32, because 8-bit latents move codes across the boundary to
# their nearest neighbour: its last convolution (the latents) and the residual additions.
STATIC_OP_TYPES = {
    "encoder": ("Conv", "Relu"),
    "decoder": ("Conv", "ConvTranspose", "Relu", "Add"),
}
CALIBRATION_BATCH = 16


def _prepare(source: Path, scratch: Path) -> Path:
    """onnxruntime's recommended pre-processing before quantization (shape inference, fusions)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = scratch / f"{source.stem}.prepared.onnx"
    quant_pre_process(str(source), str(prepared))
    return prepared


def _quantize_dynamic(source: Path, target: Path, scratch: Path) -> None:
    """Dynamic int8 quantization (int8 weights, activations quantized at run time) of the
    QUANTIZED_OP_TYPES nodes."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    prepared = _prepare(source, scratch)
    quantize_dynamic(
        str(prepared),
        str(target),
        op_types_to_quantize=list(QUANTIZED_OP_TYPES),
        weight_type=QuantType.QInt8,
    )
    prepared.unlink()


def _quantize_static(source: Path, target: Path, scratch: Path, part: str, data: np.ndarray):
    """QDQ static int8 quantization of the STATIC_OP_TYPES[part] nodes (the encoder's last
    convolution excluded): per-channel int8 weights, uint8 activations whose ranges come from
    running the model on `data` (the input of `part`)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    name = "images" if part == "encoder" else "indices"

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            starts = range(0, len(data), CALIBRATION_BATCH)
            self.batches = iter([{name: data[i : i + CALIBRATION_BATCH]} for i in starts])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    prepared = _prepare(source, scratch)
    convs = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Conv"]
    quantize_static(
        str(prepared),
        str(target),
        Batches(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(STATIC_OP_TYPES[part]),
        nodes_to_exclude=convs[-1:] if part == "encoder" else [],  # nodes in graph order
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    prepared.unlink()


def quantize_pair(
    model: VQVAE,
    folder: Path,
    files: tuple[str, str],
    mode: str,
    calibration: np.ndarray | None,
) -> list[str]:
    """Write the int8 versions (`mode`, one of QUANTIZE_MODES) of the fp32 encoder and decoder
    `files` in `folder`, next to them; returns their names. int8-static calibrates the encoder
    on `calibration` (N, H, W) uint8 slices and the decoder on `model`'s codes of them."""
    encoder, decoder = QUANTIZED_FILES[mode]
    if mode == "int8":
        _quantize_dynamic(folder / files[0], folder / encoder, folder)
        _quantize_dynamic(folder / files[1], folder / decoder, folder)
    else:
        x = torch.from_numpy(calibration).float().div(255).unsqueeze(1)  # (N, 1, H, W)
        codes = model.encode(x).numpy()  # (N, h, w): the decoder sees the codes it decodes
        _quantize_static(folder / files[0], folder / encoder, folder, "encoder", x.numpy())
        _quantize_static(folder / files[1], folder / decoder, folder, "decoder", codes)
    return [encoder, decoder]


def int8_doc(mode: str, calibration: int) -> dict:
    """export.json's `int8` entry: the files, how they were made, the calibration size."""
    encoder, decoder = QUANTIZED_FILES[mode]
    if mode == "int8":
        method = (
            "onnxruntime quantize_dynamic: int8 weights and run-time quantized activations for "
            f"{', '.join(QUANTIZED_OP_TYPES)} nodes; ConvTranspose, the codebook and the "
            "nearest-code distances stay float32"
        )
    else:
        method = (
            "onnxruntime quantize_static, QDQ format: per-channel int8 weights and uint8 "
            "activations, ranges calibrated (min/max) on "
            f"{calibration} training slices, for the encoder's "
            f"{', '.join(STATIC_OP_TYPES['encoder'])} nodes but its last Conv (the latents) and "
            f"the decoder's {', '.join(STATIC_OP_TYPES['decoder'])} nodes; the codebook and the "
            "nearest-code distances stay float32"
        )
    doc = {"mode": mode, "encoder": encoder, "decoder": decoder, "method": method}
    return doc | ({"calibration_slices": calibration} if mode == "int8-static" else {})
