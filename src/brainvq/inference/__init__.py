"""Using trained models: code maps (batched encode/decode, the RUN/codes cache), the samplers
(naive reference and row cache), generation and completion of slices, and the thread policy."""
