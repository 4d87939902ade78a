"""Config files are read strictly: a key given twice is refused, not silently overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainvq.config import ConfigError, read_yaml

PACKAGED = sorted((Path(__file__).parents[1] / "src" / "brainvq" / "configs").glob("*.yaml"))


def test_a_key_given_twice_names_the_key_and_its_line(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("prior:\n  channels: 24\n  channels: 32\n", encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"twice\.yaml: not valid YAML .*'channels' is given twice"
    ):
        read_yaml(path)
    assert "line 3" in str(pytest.raises(ConfigError, read_yaml, path).value)


def test_the_same_key_in_two_sections_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("vqvae_train:\n  lr: 0.002\nprior_train:\n  lr: 0.008\n", encoding="utf-8")
    assert read_yaml(path) == {"vqvae_train": {"lr": 0.002}, "prior_train": {"lr": 0.008}}


@pytest.mark.parametrize("path", PACKAGED, ids=lambda p: p.name)
def test_every_packaged_config_reads_strictly(path: Path) -> None:
    assert read_yaml(path)
