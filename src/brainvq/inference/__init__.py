"""Using trained models: a run's models (run_models), code maps (batched encode/decode, the
RUN/codes cache), the samplers (the naive reference and the cached one, sampling; their row
cache, row_cache) and their thread policy, generation and completion of slices, healing, and
anomaly maps (anomaly_maps)."""
