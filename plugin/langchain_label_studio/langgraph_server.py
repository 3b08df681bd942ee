"""LangGraph Server specifics: who ran a run, and delivering what was captured before the server stops.

``langgraph.json``::

    "http": {
        "app": "langchain_label_studio.langgraph_server:app",
        "configurable_headers": {"include": ["x-user-id"]}
    }

``app`` is an empty Starlette app whose lifespan delivers, on shutdown, what the server's
graphs captured (up to :data:`DRAIN_TIMEOUT_S`); with an app of your own, give it
``lifespan=drain`` (or enter ``drain(app)`` in your lifespan).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from .pipeline import live_pipelines

#: How long the lifespan of :data:`app` waits, on shutdown, for captures to reach Label Studio.
DRAIN_TIMEOUT_S = 10.0
def drain_all(timeout: float = DRAIN_TIMEOUT_S) -> bool:
    """Deliver everything captured in this process so far. True if it was done in ``timeout``."""
    deadline = time.monotonic() + timeout
    done = True
    for pipeline in live_pipelines():
        done = pipeline.flush(max(0.0, deadline - time.monotonic())) and done
    return done


@asynccontextmanager
async def drain(app: Any = None, timeout: float = DRAIN_TIMEOUT_S) -> AsyncIterator[None]:
    """A lifespan that, on shutdown, delivers what was captured (without blocking the event loop)."""
    yield
    await asyncio.to_thread(drain_all, timeout)


def __getattr__(name: str) -> Any:
    """``app``: a Starlette app for ``"http": {"app": ...}`` in ``langgraph.json`` (no routes, the drain lifespan).

    Made on first use, so importing this module does not need Starlette.
    """
    if name == "app":
        from starlette.applications import Starlette

        globals()["app"] = Starlette(lifespan=drain)
        return globals()["app"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
