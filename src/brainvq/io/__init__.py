"""Files in and out: atomic writes, model bundles (safetensors + JSON), checkpoint conversion,
ONNX export, and 8-bit image grids and PNGs. Nothing here is imported by `brainvq.io` itself, so
`brainvq.io.atomic` stays free of torch for the data layer."""
