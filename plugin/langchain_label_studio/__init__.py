"""Capture LangChain, LangServe and LangGraph traffic into Label Studio for human review."""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from .graph import capture
from .handler import LabelStudioCallbackHandler, LabelStudioMode, get_default_label_configs
from .middleware import LabelStudioMiddleware
from .project import Project
from .record import CaptureRecord
from .settings import Settings
from .version import __version__ as __version__

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
