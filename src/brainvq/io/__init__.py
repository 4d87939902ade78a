"""Files in and out: model bundles (safetensors + JSON), checkpoint conversion, ONNX export,
and 8-bit image grids and PNGs. Atomic writes are a shared helper below every layer
(`brainvq.atomic`), so nothing here is imported by the run's layout or configs."""
