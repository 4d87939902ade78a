"""One version: brainvq/_version.py is the only place it is written, and pyproject.toml, the
package face and `brainvq --version` all read it from there."""

from __future__ import annotations

from pathlib import Path

import pytest

import brainvq
from brainvq._version import __version__
from brainvq.app.cli import main

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
PYPROJECT = Path(__file__).parent.parent / "pyproject.toml"


def test_pyproject_reads_the_version_from_the_package() -> None:
    doc = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    assert "version" not in doc["project"] and "version" in doc["project"]["dynamic"]
    assert doc["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "brainvq._version.__version__"
    }


def test_the_face_and_the_command_show_that_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert brainvq.__version__ == __version__
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"brainvq {__version__}"
