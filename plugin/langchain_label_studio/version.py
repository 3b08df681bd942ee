"""The package's version: pyproject.toml's ``[project] version``, read from the installed metadata."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("langchain-label-studio")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
