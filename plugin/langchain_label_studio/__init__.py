"""Capture LangChain, LangServe and LangGraph traffic into Label Studio for human review."""

from .handler import LabelStudioCallbackHandler, LabelStudioMode, get_default_label_configs
from .pipeline import Pipeline, get_pipeline
from .project import Project
from .record import CaptureRecord
from .settings import Settings

__all__ = [
    "CaptureRecord",
    "LabelStudioCallbackHandler",
    "LabelStudioMode",
    "Pipeline",
    "Project",
    "Settings",
    "get_default_label_configs",
    "get_pipeline",
]
__version__ = "0.1.0"
