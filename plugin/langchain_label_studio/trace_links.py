"""Links from a task to the LangSmith trace of the run it captured.

When LangSmith tracing is on for a run (``LANGSMITH_TRACING=true``, or a
``tracing_v2_enabled`` block), the capture records the trace's ids and LangSmith
project (:func:`trace_of`); delivery turns them into the trace's web address
(:class:`TraceLinks`), asking LangSmith once per project for the project's address.
Nothing here ever holds a capture back: a LangSmith that cannot be asked leaves the task
without the link (its ids stay in the task), and is asked again a few minutes later.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from langchain_core.tracers.context import tracing_v2_callback_var
from langsmith import run_helpers, utils

logger = logging.getLogger("langchain_label_studio")

#: Task columns: the ids a capture records, and the link delivery adds.
TRACE_ID_KEY = "langsmith_trace_id"
RUN_ID_KEY = "langsmith_run_id"
PROJECT_KEY = "langsmith_project"
URL_KEY = "langsmith_url"
TRACE_KEYS = (RUN_ID_KEY, TRACE_ID_KEY, PROJECT_KEY, URL_KEY)
#: Seconds before a LangSmith project that could not be looked up is asked about again.
RETRY_AFTER_S = 300.0
#: LangSmith projects remembered at most (they are forgotten all at once past it).
MAX_PROJECTS = 1000


def trace_of(run_id: UUID) -> dict[str, str] | None:
    """The LangSmith ids of a root run starting now (task columns), or None when it is not traced."""
    tracer = tracing_v2_callback_var.get()
    context = run_helpers.get_tracing_context()
    if tracer is None and utils.tracing_is_enabled(context) is not True:
        return None
    parent = context["parent"]
    project = (
        getattr(tracer, "project_name", None)
        or context.get("project_name")
        or (parent.session_name if parent is not None else None)
        or utils.get_tracer_project()
    )
    if not project:
        return None
    return {
        RUN_ID_KEY: str(run_id),
        TRACE_ID_KEY: str(parent.trace_id) if parent is not None else str(run_id),
        PROJECT_KEY: str(project),
    }


def _read_project_url(name: str) -> str | None:
    """The web address of a LangSmith project: one request, with the user's LangSmith settings,
    no retries (a LangSmith that does not answer is asked again later, not now)."""
    url = _langsmith_client().read_project(project_name=name).url
    return str(url) if url else None


@functools.cache
def _langsmith_client() -> Any:
    from langsmith import Client
    from urllib3.util import Retry

    return Client(timeout_ms=(2000, 5000), retry_config=Retry(total=0), auto_batch_tracing=False)


class TraceLinks:
    """Adds ``langsmith_url`` to task data that names a LangSmith trace. Used by one thread."""

    def __init__(self, project_url: Callable[[str], str | None] = _read_project_url) -> None:
        self._project_url = project_url
        self._known: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def add(self, data: dict[str, Any]) -> None:
        """Put the trace's address into ``data`` when it names a trace and LangSmith can say where."""
        project, run_id, trace_id = data.get(PROJECT_KEY), data.get(RUN_ID_KEY), data.get(TRACE_ID_KEY)
        if not (isinstance(project, str) and isinstance(run_id, str) and isinstance(trace_id, str)):
            return
        base = self._project(project)
        if base is not None:
            data[URL_KEY] = f"{base}/r/{run_id}?trace_id={trace_id}&poll=true"

    def _project(self, name: str) -> str | None:
        with self._lock:
            known = self._known.get(name)
            if known is not None and (known[0] is not None or known[1] > time.monotonic()):
                return known[0]
        try:
            url = self._project_url(name)
        except Exception as exc:  # LangSmith unreachable, no key, no such project: no link for now
            logger.warning("no LangSmith link for project %r: %s", name, type(exc).__name__)
            url = None
        with self._lock:
            if len(self._known) >= MAX_PROJECTS:
                self._known.clear()
            self._known[name] = (url, time.monotonic() + RETRY_AFTER_S)
        return url
