"""Using trained models.

- A run's models, the one interface workflows ask for them (run_models).
- Code maps: batched encoding and decoding, and every split encoded once into RUN/codes (codes).
- A slice's level from the run's level classifier (levels).
- Drawing one slice: the naive reference sampler and the cached one (sampling, with the row cache
  they keep: row_cache) and their thread policy (threads); generation and completion of slices
  in chunks of bounded memory (generate). What a draw takes (temperature, top-k, seed,
  sampler) travels as one options object (sampling_options).
- Drawing whole subjects, each slice given the one below: slice by slice (subjects) or every
  slice at once as a wavefront (wavefront); which slice lies below which (slice_below).
- Anomaly maps: the prior's per-code NLL (code_nll), healing (healing; slices of a volume in 3D
  context: context_healing) and the maps built from them (anomaly_maps); a 3D run's volumes
  coded, healed and decoded whole (volume_anomaly).
"""
