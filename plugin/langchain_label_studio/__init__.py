"""Capture LangChain, LangServe and LangGraph traffic into Label Studio for human review."""

from .capture import CaptureContext, CaptureHandler
from .graph import capture
from .handler import LabelStudioCallbackHandler, LabelStudioMode, get_default_label_configs
from .middleware import LabelStudioMiddleware
from .pipeline import Pipeline, get_pipeline
from .project import Project
from .record import CaptureRecord
from .settings import Settings

__all__ = [
    "CaptureContext",
    "CaptureHandler",
    "CaptureRecord",
    "LabelStudioCallbackHandler",
    "LabelStudioMiddleware",
    "LabelStudioMode",
    "Pipeline",
    "Project",
    "Settings",
    "capture",
    "get_default_label_configs",
    "get_pipeline",
]
__version__ = "0.1.0"
