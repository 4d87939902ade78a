"""Fixtures for the data layer: real files in tmp dirs with the real naming schemes."""

from __future__ import annotations

from pathlib import Path

import pytest

from .files import make_oasis_tree, make_oasis_zip


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A fresh cache folder (not created yet): tests check that bad input leaves it absent."""
    return tmp_path / "cache"


@pytest.fixture
def oasis_tree(tmp_path: Path) -> Path:
    """An OASIS layout one level below the returned folder (download/keras_png_slices_data/)."""
    root = tmp_path / "download"
    make_oasis_tree(root)
    return root


@pytest.fixture
def oasis_zip(tmp_path: Path) -> Path:
    return make_oasis_zip(tmp_path / "keras_png_slices_data.zip", tmp_path / "zip_src")
