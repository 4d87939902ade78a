"""brainvq's version: the one place it is written. pyproject.toml reads it from here
(setuptools' dynamic version), the package face re-exports it, and whatever records it
(`brainvq --version`, export.json) imports it from here, never from the package face."""

__version__ = "0.2.0"
