"""``capture(graph, project)``: every run of a LangGraph graph captured, wherever it runs.

The graph keeps being a graph (``Pregel.with_config`` returns a compiled graph): streaming,
interrupts, the checkpointer and ``get_state`` are untouched. Each thread is one dialogue
task (``session_id`` = ``thread_id``); runs of LangGraph Server add ``run_id``,
``assistant_id`` and ``graph_id``. Served by LangServe behind
``LabelStudioMiddleware``, the middleware's capture is used and the graph's stays quiet, so a
run is never recorded twice.
"""

from __future__ import annotations

from typing import Any, TypeVar

from .capture import CaptureContext, CaptureHandler, current_handler
from .middleware import ProjectLike, as_project
from .pipeline import get_pipeline
from .project import Project
from .settings import Settings

G = TypeVar("G")
#: Where ``capture`` sends a graph's threads unless told otherwise.
DEFAULT_GRAPH_PROJECT = Project("LangGraph-%Y-%m-%d", mode="chat")


class GraphCaptureHandler(CaptureHandler):
    """A capture handler bound to a graph rather than to a request."""

    def _defer_to_request(self) -> bool:
        active = current_handler.get()
        return active is not None and active is not self


def capture(
    graph: G,
    project: ProjectLike = DEFAULT_GRAPH_PROJECT,
    *,
    settings: Settings | None = None,
    **settings_options: Any,
) -> G:
    """The same graph, with every run captured into ``project`` (chat mode: one task per thread).

    >>> graph = capture(builder.compile(), Project("Support chats", mode="chat"))

    ``settings_options`` are :class:`Settings` fields (``url``, ``api_key``, ``state_dir``,
    ``redact``...); by default they come from the environment.
    """
    target = as_project(project)
    pipeline = get_pipeline(settings or Settings(**settings_options))
    handler = GraphCaptureHandler(pipeline, CaptureContext(project=target, route=f"graph:{_name(graph)}"))
    return graph.with_config(callbacks=[handler])  # type: ignore[attr-defined,no-any-return]


def _name(graph: Any) -> str:
    return str(getattr(graph, "name", None) or type(graph).__name__)
