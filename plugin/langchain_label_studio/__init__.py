"""Capture LangChain, LangServe and LangGraph traffic into Label Studio for human review."""

from __future__ import annotations

import importlib
import warnings
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .graph import capture
from .handler import LabelStudioCallbackHandler, LabelStudioMode, get_default_label_configs
from .middleware import LabelStudioMiddleware
from .project import Project
from .record import CaptureRecord
from .settings import Settings

__all__ = [
    "CaptureRecord",
    "LabelStudioCallbackHandler",
    "LabelStudioMiddleware",
    "LabelStudioMode",
    "Project",
    "Settings",
    "capture",
    "get_default_label_configs",
]

try:  # the one version source is pyproject.toml's [project] version, read from the installed metadata
    __version__ = version("langchain-label-studio")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

#: Internals this package used to export, still importable from here (with a warning) for a while.
_MOVED = {
    "Pipeline": "pipeline",
    "get_pipeline": "pipeline",
    "CaptureHandler": "capture",
    "CaptureContext": "capture",
}


def __getattr__(name: str) -> Any:
    """Resolve the old top-level names of internals, warning that they are not public API."""
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"langchain_label_studio.{name} is internal and no longer exported from the package; "
        f"import it from langchain_label_studio.{module} if you must (it may change without notice)",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(f".{module}", __name__), name)
