"""Tracing a PyTorch module to ONNX: the one exporter call that every brainvq export uses."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

ONNX_OPSET = 17


def trace_to_onnx(
    module: nn.Module,
    example: tuple[Tensor, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    """Export `module` with the TorchScript-based exporter at ONNX_OPSET.

    The torch.export-based exporter needs onnxscript, which the export extra does not install;
    its deprecation notice and the tracer's note about the (static) shape check are expected.
    """
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            example,
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
        )
