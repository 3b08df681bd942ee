"""``capture(graph, project)``: every run of a LangGraph graph captured, wherever it runs.

The result is the same compiled graph, as an instance of a subclass of its class (which
``copy`` and ``with_config`` keep): streaming, interrupts, subgraphs, the checkpointer and
``get_state`` are untouched. Each run gets a capture handler of its own that knows:

- who asked: under LangGraph Server, the authenticated user (``langgraph_auth_user_id``),
  else the user header the deployment copies into the run (``configurable_headers``);
- how the run ended: a run that fails or is cancelled is recorded with the state its thread
  was left in and the error; a rolled-back run is not recorded (its thread is back where it
  was, and so is its task).

Each thread is one dialogue task (``session_id`` = ``thread_id``); runs of LangGraph Server
add ``run_id``, ``assistant_id`` and ``graph_id``. Served by LangServe behind
``LabelStudioMiddleware``, the middleware's capture is used and the graph's stays quiet, so a
run is never recorded twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeVar

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import merge_configs

from .capture import CaptureContext, CaptureHandler, RunCancelled, current_handler
from .identity import run_user
from .pipeline import Pipeline, get_pipeline
from .project import Project, ProjectLike, as_project
from .prometheus import register as register_metrics
from .record import CaptureRecord
from .settings import Settings

G = TypeVar("G")
#: Where ``capture`` sends a graph's threads unless told otherwise.
DEFAULT_GRAPH_PROJECT = Project("LangGraph-%Y-%m-%d", mode="chat")
_CHECKPOINTER_KEY = "__pregel_checkpointer"


class GraphCaptureHandler(CaptureHandler):
    """A capture handler bound to a graph run rather than to a request.

    With ``hold_failures`` a failed run is not recorded at once: :meth:`settle` records it
    once the state its thread was left in is known.
    """

    def __init__(self, pipeline: Pipeline, context: CaptureContext, *, hold_failures: bool = False) -> None:
        super().__init__(pipeline, context)
        self.hold_failures = hold_failures
        self.failed: list[tuple[Any, BaseException]] = []

    def _defer_to_request(self) -> bool:
        active = current_handler.get()
        return active is not None and active is not self

    def defers(self) -> bool:
        """Whether a request's own capture records this run."""
        return self._defer_to_request()

    def _submit(self, root: Any, outputs: Any, error: BaseException | None) -> None:
        if error is not None and self.hold_failures:
            self.failed.append((root, error))
            return
        super()._submit(root, outputs, error)

    def _record(self, root: Any, outputs: Any, error: BaseException | None) -> CaptureRecord | None:
        record = super()._record(root, outputs, error)
        if record is not None and error is not None and record.response is None and self.context.project.mode == "chat":
            record.response = ""  # the last question went unanswered: no answer to pre-fill
        return record

    def settle(self, state: Any, error: BaseException) -> None:
        """Record the held failures with the thread's ``state`` (None: what the run itself saw)."""
        failed, self.failed = self.failed, []
        if not (isinstance(state, dict) and state.get("messages")):
            state = None  # not a conversation: the run's own view of it
        if _rolled_back(error):
            if failed:
                self.pipeline.metrics.skip("rolled_back")
            return
        for root, run_error in failed:
            super()._submit(root, state, _as_cancelled(run_error))


@dataclass
class _GraphCapture:
    """What a captured graph needs to capture a run: where to, and how to find the user."""

    pipeline: Pipeline
    context: CaptureContext
    user_header: str

    def handler(self, config: RunnableConfig | None) -> GraphCaptureHandler:
        """A handler for one run, with the run's user."""
        configurable = (config or {}).get("configurable") or {}
        user = run_user(configurable, self.user_header)
        context = replace(self.context, user_id=user) if user else self.context
        return GraphCaptureHandler(self.pipeline, context, hold_failures=True)


class _CapturedGraph:
    """Mixed in before a compiled graph's class: every run goes through a capture handler.

    ``invoke``, ``ainvoke``, ``astream_events`` and ``batch`` all run through ``stream`` or
    ``astream``, so those two are enough.
    """

    _label_studio: ClassVar[_GraphCapture]

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        handler = self._label_studio.handler(config)
        state_config = _thread_config(config)
        run = super().stream(input, merge_configs(config, {"callbacks": [handler]}), **kwargs)  # type: ignore[misc]
        try:
            yield from run
        except BaseException as exc:
            run.close()
            state = None
            if _wants_state(handler, state_config, exc):
                try:
                    state = self.get_state(state_config).values  # type: ignore[attr-defined]
                except Exception:  # no checkpointer, or it cannot be read: record what the run saw
                    state = None
            handler.settle(state, exc)
            raise

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        handler = self._label_studio.handler(config)
        state_config = _thread_config(config)
        run = super().astream(input, merge_configs(config, {"callbacks": [handler]}), **kwargs)  # type: ignore[misc]
        try:
            async for chunk in run:
                yield chunk
        except BaseException as exc:
            await run.aclose()
            state = None
            if _wants_state(handler, state_config, exc):
                try:
                    state = (await self.aget_state(state_config)).values  # type: ignore[attr-defined]
                except Exception:  # no checkpointer, or it cannot be read: record what the run saw
                    state = None
            handler.settle(state, exc)
            raise


def capture(
    graph: G,
    project: ProjectLike = DEFAULT_GRAPH_PROJECT,
    *,
    user_header: str = "X-User-ID",
    settings: Settings | None = None,
    **settings_options: Any,
) -> G:
    """The same graph, with every run captured into ``project`` (chat mode: one task per thread).

    >>> graph = capture(builder.compile(), Project("Support chats", mode="chat"))

    The user of a run is the LangGraph Server's authenticated user, else the value of
    ``user_header`` when the deployment copies it into the run (``configurable_headers``),
    else the run's ``metadata.user_id``. ``settings_options`` are :class:`Settings` fields
    (``url``, ``api_key``, ``state_dir``, ``redact``...); by default they come from the
    environment.

    Raises:
        TypeError: an option that is not a :class:`Settings` field, or ``settings`` together
            with options.
    """
    target = as_project(project)
    pipeline = get_pipeline(Settings.resolve(settings, "capture", **settings_options))
    register_metrics()
    context = CaptureContext(project=target, route=f"graph:{_name(graph)}")
    if not _is_pregel(graph):  # not a compiled graph: one handler on every run
        return graph.with_config(callbacks=[GraphCaptureHandler(pipeline, context)])  # type: ignore[attr-defined,no-any-return]
    base = type(graph)
    if issubclass(base, _CapturedGraph):  # captured again: the new capture replaces the old one
        base = base.__mro__[2]
    captured = type(
        base.__name__,
        (_CapturedGraph, base),
        {"_label_studio": _GraphCapture(pipeline, context, user_header.lower()), "__module__": __name__},
    )
    attrs = {k: v for k, v in vars(graph).items() if k != "__orig_class__"}
    return captured(**attrs)  # type: ignore[no-any-return]


def _is_pregel(graph: Any) -> bool:
    try:
        from langgraph.pregel import Pregel
    except ImportError:
        return False
    return isinstance(graph, Pregel)


def _thread_config(config: RunnableConfig | None) -> RunnableConfig | None:
    """The config that reads the latest state of a run's thread; None for a subgraph's run."""
    configurable = (config or {}).get("configurable") or {}
    if configurable.get("thread_id") is None or configurable.get("checkpoint_ns"):
        return None
    state: dict[str, Any] = {"thread_id": configurable["thread_id"], "checkpoint_ns": ""}
    if configurable.get(_CHECKPOINTER_KEY) is not None:
        state[_CHECKPOINTER_KEY] = configurable[_CHECKPOINTER_KEY]
    return {"configurable": state}


def _wants_state(handler: GraphCaptureHandler, state_config: RunnableConfig | None, error: BaseException) -> bool:
    """Whether a failed run is recorded here and its thread's state can be read."""
    return bool(handler.failed) and state_config is not None and not _rolled_back(error) and not handler.defers()


def _rolled_back(error: BaseException) -> bool:
    """Whether LangGraph Server is rolling the run back (``multitask_strategy="rollback"``, cancel with rollback)."""
    return any(type(e).__name__ == "UserRollback" for e in (error, *error.args))


def _as_cancelled(error: BaseException) -> BaseException:
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        reason = " ".join(str(a) for a in error.args if str(a))
        return RunCancelled(reason or "the run was cancelled")
    return error


def _name(graph: Any) -> str:
    return str(getattr(graph, "name", None) or type(graph).__name__)
