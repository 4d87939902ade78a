"""The options object of a draw: refused when made if a value breaks its rule, naming the value;
handed to the samplers as their keywords, the sampler left to each one's default unless named;
made by the notebook API before anything is loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import brainvq
from brainvq.inference.sampling_options import SamplingOptions


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(temperature=0.0), r"^temperature: expected a finite number > 0, got 0\.0$"),
        (dict(temperature=-1), r"^temperature: .* got -1$"),
        (dict(temperature=float("nan")), r"^temperature: .* got nan$"),
        (dict(temperature="1"), r"^temperature: .* got '1'$"),
        (dict(top_k=0), r"^top_k: expected an integer in \[1, \d+\], got 0$"),
        (dict(top_k=2.5), r"^top_k: .* got 2\.5$"),
        (dict(top_k=True), r"^top_k: .* got True$"),
        (dict(seed=-1), r"^seed: expected an integer seed in \[0, \d+\], got -1$"),
        (dict(seed=2**32), r"^seed: .* got 4294967296$"),
        (dict(sampler="fast"), r"^sampler: expected None or one of .*wavefront.*, got 'fast'$"),
    ],
)
def test_a_bad_value_is_refused_when_made_naming_it(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SamplingOptions(**bad)


def test_the_keywords_leave_the_sampler_to_its_default_unless_named() -> None:
    unnamed = SamplingOptions(temperature=0.5, top_k=3, seed=7).as_keywords()
    assert unnamed == {"temperature": 0.5, "top_k": 3, "seed": 7}
    named = SamplingOptions(sampler="naive").as_keywords()
    assert named == {"temperature": 1.0, "top_k": None, "seed": 0, "sampler": "naive"}


@pytest.mark.parametrize(
    "call",
    [
        lambda run: brainvq.sample(run, temperature=0),
        lambda run: brainvq.sample_subjects(run, top_k=0),
        lambda run: brainvq.complete(run, np.zeros((1, 32, 32), np.uint8), 1, seed=-1),
    ],
)
def test_the_notebook_api_refuses_bad_options_before_loading_a_run(call, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^(temperature|top_k|seed): expected"):
        call(tmp_path / "no-run")  # no run there: refused before it is looked for
