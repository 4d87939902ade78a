"""How codes are drawn: one small options object from a caller down to the samplers.

Temperature, top-k, seed and sampler say what a draw gives, whatever is drawn (slices,
completions, whole subjects, healings). The notebook API and the commands take them as keyword
arguments and make one SamplingOptions at the top; every layer between them and the samplers
(brainvq.inference.generate, context_healing, the app's writers) hands that object on, and the
samplers themselves (sampling.sample, subjects.sample_subjects, healing.heal) take its
keywords (`as_keywords`). Threads and progress bars are not in it: they change how fast a draw
runs, never what it gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from brainvq.inference.subjects import SUBJECT_SAMPLERS
from brainvq.values import COUNT, POSITIVE, SEED


@dataclass(frozen=True)
class SamplingOptions:
    """temperature > 0 (-> 0 approaches argmax decoding); top_k: keep the k most likely codes
    at each step (None: every code; the model's codebook size bounds it where the sampler
    runs); seed: the draws' uniforms; sampler: one of SUBJECT_SAMPLERS, or None for the
    sampler's own default (cached for slices and healings, wavefront for whole subjects).
    Checked when made, each value by its rule (brainvq.values) and named as its argument."""

    temperature: float = 1.0
    top_k: int | None = None
    seed: int = 0
    sampler: str | None = None

    def __post_init__(self) -> None:
        POSITIVE.check("temperature", self.temperature)
        if self.top_k is not None:
            COUNT.check("top_k", self.top_k)
        SEED.check("seed", self.seed)
        if self.sampler is not None and self.sampler not in SUBJECT_SAMPLERS:
            raise ValueError(
                f"sampler: expected None or one of {list(SUBJECT_SAMPLERS)}, got {self.sampler!r}"
            )

    def as_keywords(self) -> dict[str, Any]:
        """The samplers' keyword arguments: temperature, top_k, seed, and sampler where one is
        named (else each sampler keeps its own default)."""
        named = {} if self.sampler is None else {"sampler": self.sampler}
        return {"temperature": self.temperature, "top_k": self.top_k, "seed": self.seed, **named}


DEFAULT_OPTIONS = SamplingOptions()  # temperature 1, every code, seed 0, each sampler's default
