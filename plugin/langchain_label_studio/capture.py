"""Turn the LangChain runs of one request (or one graph run) into capture records.

A :class:`CaptureHandler` is attached to every run made while a request is served. It
follows each top-level ("root") run and the runs nested in it, and when the root run
ends it submits one record:

- prompt mode: the rendered prompt of the run's LLM call and its answer (or the root
  run's input and output when it made no single LLM call);
- chat mode: the conversation (a LangGraph graph's final ``messages`` state, else the
  last chat model call's messages), the last assistant answer pre-filled, and the
  session (``session_id`` or LangGraph ``thread_id``) so all turns are one task.

A run that fails is recorded with its error.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.tracers.context import register_configure_hook

from . import challenger
from .identity import clean_id, session_ref
from .messages import last_answer, model_name, role_of, to_dialogue
from .pipeline import Pipeline
from .project import Project
from .record import STATE_TAIL_KEY, CaptureRecord
from .sanitize import DEFAULT_MAX_CHARS, Sanitizer, to_text
from .settings import OFF
from .trace_links import trace_of

logger = logging.getLogger("langchain_label_studio")

#: Run metadata (``config={"metadata": {OPT_OUT_KEY: False}}``) that keeps a run out.
OPT_OUT_KEY = "label_studio_capture"
#: Run metadata of LangGraph Server runs kept as their own task columns.
_RUN_KEYS = ("run_id", "assistant_id", "graph_id")
#: Metadata keys LangChain/LangGraph add to every run: not worth a column.
_INTERNAL_METADATA = ("langgraph_", "checkpoint_", "ls_", "__", "langserve_")


class RunCancelled(Exception):
    """Stands for the error of a run cut short by a disconnected client or a cancelled stream."""


@dataclass
class CaptureContext:
    """Who asked, in which session, on which route: the metadata of every record."""

    project: Project
    route: str = ""
    request_id: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Share of sessions to capture, decided by a stable hash of the session id.
    sample_rate: float = 1.0
    #: Called at capture time for identity known only late (an authenticated user, a
    #: user callable): returns ``{"user_id", "session_id"}`` overrides.
    identity: Callable[[], dict[str, Any]] | None = None


@dataclass
class _Root:
    inputs: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    name: str | None = None
    llm_calls: int = 0
    #: The last LLM call's prompt: its text, or (chat models) its messages in ``llm_messages``.
    llm_prompt: str | None = None
    llm_messages: list[BaseMessage] | None = None
    llm_answer: Any = None
    model: str | None = None
    #: The LangSmith trace of the run, when LangSmith tracing is on for it (task columns).
    trace: dict[str, str] | None = None


class CaptureHandler(BaseCallbackHandler):
    """Follows the runs of one request and submits a record per root run."""

    run_inline = True
    raise_error = False
    #: Events a capture never uses: LangChain does not dispatch them to this handler. (A model
    #: called inside a tool or retriever finds its root through the context, not their events.)
    ignore_agent = True
    ignore_retriever = True
    ignore_retry = True
    ignore_custom_event = True

    def __init__(
        self,
        pipeline: Pipeline,
        context: CaptureContext,
        max_chars: int | None = None,
        max_records: int | None = None,
    ) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.context = context
        self.max_chars = max_chars
        #: Records this handler may make (one request's: a huge ``/batch`` cannot fill the buffer).
        self.max_records = max_records
        self._records = 0
        self._roots: dict[UUID, _Root] = {}
        self._root_of: dict[UUID, UUID] = {}
        #: Root runs started that are recorded (their records are made when they end), and that opted out.
        self._recorded_roots = 0
        self._opted_out_roots = 0
        #: Challenger jobs of this request, started once its response has been sent (``finish``).
        self._challenges: list[challenger.Job] = []

    # -- run tree -------------------------------------------------------------------------
    def _enter(self, run_id: UUID, parent_run_id: UUID | None, kwargs: dict[str, Any]) -> _Root:
        root_id = None
        if parent_run_id is not None:
            # A parent this handler never heard of (a tool: LangChain sends tool events only to
            # handlers that take agent events) still runs inside its root's context.
            current = _current_root.get()
            root_id = self._root_of.get(parent_run_id) or (self._root_of.get(current) if current else None)
        if root_id is None:
            root = self._roots[run_id] = _Root(
                metadata=dict(kwargs.get("metadata") or {}), tags=list(kwargs.get("tags") or [])
            )
            if _opted_out(root.metadata):
                self._opted_out_roots += 1
            else:
                self._recorded_roots += 1
                try:
                    root.trace = trace_of(run_id)
                except Exception:  # a LangSmith problem never stops a capture: no link
                    root.trace = None
            self._root_of[run_id] = run_id
            _current_root.set(run_id)
            return root
        self._root_of[run_id] = root_id
        return self._roots[root_id]

    def _root(self, run_id: UUID) -> _Root | None:
        root_id = self._root_of.get(run_id)
        return self._roots.get(root_id) if root_id is not None else None

    def _leave(self, run_id: UUID) -> _Root | None:
        """Forget a run; returns its root record if the run was a root."""
        self._root_of.pop(run_id, None)
        return self._roots.pop(run_id, None)

    # -- chains ---------------------------------------------------------------------------
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        root = self._enter(run_id, parent_run_id, kwargs)
        if run_id in self._roots:
            root.inputs = inputs
            root.name = kwargs.get("name") or (serialized or {}).get("name")

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        root = self._leave(run_id)
        if root is not None:
            self._submit(root, outputs, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        root = self._leave(run_id)
        if root is not None:
            self._submit(root, None, error)

    # -- models ---------------------------------------------------------------------------
    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        root = self._enter(run_id, parent_run_id, kwargs)
        root.llm_calls += 1
        root.llm_prompt = prompts[0] if prompts else ""
        root.llm_messages = None
        root.model = model_name(serialized, kwargs) or root.model
        if run_id in self._roots:
            root.inputs = prompts

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        root = self._enter(run_id, parent_run_id, kwargs)
        root.llm_calls += 1
        root.llm_messages = list(messages[0]) if messages else []
        root.llm_prompt = None  # the messages become a dialogue only if a record needs it
        root.model = model_name(serialized, kwargs) or root.model
        if run_id in self._roots:
            root.inputs = root.llm_messages

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        root = self._root(run_id)
        if root is not None and response.generations and response.generations[0]:
            gen = response.generations[0][0]
            root.llm_answer = gen.message if isinstance(gen, ChatGeneration) else gen.text
        finished = self._leave(run_id)
        if finished is not None:
            self._submit(finished, root.llm_answer if root else None, None)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        finished = self._leave(run_id)
        if finished is not None:
            self._submit(finished, None, error)

    def _defer_to_request(self) -> bool:
        """Whether a request's own handler records this run (so a graph's handler stays quiet)."""
        return False

    def finish(self) -> None:
        """Record the runs still open when the request ends (client gone, stream cancelled)."""
        for run_id in list(self._roots):
            root = self._leave(run_id)
            if root is not None:
                self._submit(root, None, RunCancelled("the run did not finish: the request ended first"))
        self._root_of.clear()
        jobs, self._challenges = self._challenges, []
        for job in jobs:
            challenger.pool_for(job.project).offer(job)

    # -- records ----------------------------------------------------------------------------
    def _submit(self, root: _Root, outputs: Any, error: BaseException | None) -> None:
        if self._defer_to_request():
            return
        if self.max_records is not None and self._records >= self.max_records:
            self.pipeline.metrics.skip("request_limit")
            self.pipeline.metrics.warn(
                f"a request made more than {self.max_records} captures (a large batch?): the rest are not captured"
            )
            return
        try:
            record = self._record(root, outputs, error)
        except Exception as exc:  # never let a capture problem reach the user's run
            # Only the type: the message may quote captured content, which is never logged.
            logger.error("could not build a capture record: %s", type(exc).__name__)
            self.pipeline.metrics.skip("build_error")
            return
        if record is not None:
            self._records += 1
            self.pipeline.submit(record)
            if challenger.chosen(self.context.project) and error is None and record.response is not None:
                self._challenge(root, outputs, record)

    def _challenge(self, root: _Root, outputs: Any, record: CaptureRecord) -> None:
        """Queue the challenger on this run's input: after the response when serving a request."""
        try:
            if self.context.project.mode == "chat":
                messages = _messages_of(outputs) or list(root.llm_messages or _messages_of(root.inputs) or [])
                answers = [i for i, m in enumerate(messages) if role_of(m) == "assistant"]
                payload: Any = messages[: answers[-1]] if answers else messages
            else:
                payload = root.inputs
            job = challenger.Job(self.context.project, self.pipeline, record.to_json(), payload)
        except Exception as exc:  # never let a capture problem reach the user's run
            logger.error("could not queue the challenger: %s", type(exc).__name__)
            return
        if current_handler.get() is self:  # inside the request: start once its response has been sent
            self._challenges.append(job)
        else:
            challenger.pool_for(job.project).offer(job)

    def _record(self, root: _Root, outputs: Any, error: BaseException | None) -> CaptureRecord | None:
        """The record of a finished root run, or None when it is opted out or not in the sample."""
        ctx = self.context
        meta = _user_metadata(root.metadata)
        user, session = self._identity(root.metadata, meta)
        if not self._kept(meta, session):
            return None
        max_chars = self.max_chars or DEFAULT_MAX_CHARS
        clean = Sanitizer(max_chars)
        extra = self._columns(root, meta, error)
        if ctx.project.mode == "chat":
            prompt, response, state = self._chat(root, outputs)
            if state is not None:  # its messages are the dialogue and what follows it: kept once
                extra["state"] = {**state, "messages": None}
                extra[STATE_TAIL_KEY] = state["messages"][len(prompt) :]
            conversation = session_ref(user, session)
        else:
            prompt, response = self._prompt(root, outputs)
            conversation = None
        ids = {"user_id": user, "session_id": session, "route": ctx.route, "request_id": ctx.request_id}
        data: dict[str, Any] = {k: clean.text(str(v)) if v is not None else None for k, v in ids.items()}
        data.update(clean.value(extra))
        return CaptureRecord(
            project=_project_dict(ctx.project),
            prompt=clean.value(prompt),
            response=clean.text(response) if response is not None else None,
            data=data,
            session=conversation,
            model_version=root.model,
            max_chars=max_chars,
        )

    def _identity(self, metadata: dict[str, Any], meta: dict[str, Any]) -> tuple[str | None, str | None]:
        """Who asked and in which session: identity known late (an authenticated user), then the
        request's headers, then the run's metadata (LangGraph thread, LangGraph Server's user)."""
        ctx = self.context
        late = ctx.identity() if ctx.identity else None
        session = clean_id(
            (late and _str(late.get("session_id")))
            or ctx.session_id
            or _str(meta.get("session_id"))
            or _str(meta.get("thread_id"))
        )
        user = clean_id(
            (late and _str(late.get("user_id")))
            or ctx.user_id
            or _str(meta.get("user_id"))
            or _str(metadata.get("langgraph_auth_user_id"))
        )
        return user, session

    def records_runs(self, expected: bool = False) -> bool:
        """Whether this request's runs make a record: a recorded root run has started, or (with
        ``expected``, for a response that starts before its run does) none has opted out yet."""
        return self._recorded_roots > 0 or (expected and self._opted_out_roots == 0)

    def _kept(self, meta: dict[str, Any], session: str | None) -> bool:
        """False (and counted) for a run that opted out or a session outside the sample."""
        if _opted_out(meta):
            self.pipeline.metrics.skip("opted_out")
            return False
        if not sampled(session or self.context.request_id or "", self.context.sample_rate):
            self.pipeline.metrics.skip("sampled_out")
            return False
        return True

    def _columns(self, root: _Root, meta: dict[str, Any], error: BaseException | None) -> dict[str, Any]:
        """The task columns beside the ids: run keys, tags, metadata, model, run name, error."""
        extra: dict[str, Any] = dict(self.context.extra)
        for key in _RUN_KEYS:  # LangGraph Server runs: which run, assistant and graph
            if meta.get(key) is not None:
                extra[key] = str(meta[key])
        if root.tags:
            extra["tags"] = root.tags
        if meta:
            extra["metadata"] = meta
        if root.model:
            extra["model"] = root.model
        if root.name:
            extra["run_name"] = root.name
        if root.trace:
            extra.update(root.trace)
        if error is not None:
            extra["error"] = f"{type(error).__name__}: {error}"
        return extra

    @staticmethod
    def _prompt(root: _Root, outputs: Any) -> tuple[Any, str | None]:
        if root.llm_calls == 1 and (root.llm_prompt is not None or root.llm_messages is not None):
            prompt = root.llm_prompt if root.llm_messages is None else to_dialogue(root.llm_messages)
            answer = root.llm_answer if root.llm_answer is not None else outputs
            return prompt, None if answer is None else to_text(answer)
        return to_text(root.inputs), None if outputs is None else to_text(outputs)

    @staticmethod
    def _chat(root: _Root, outputs: Any) -> tuple[list[BaseMessage], str | None, Any]:
        """The dialogue before the last answer, the last answer, and the graph state."""
        messages = _messages_of(outputs)
        state = outputs if messages is not None and isinstance(outputs, dict) else None
        if messages is None:  # not a graph state: the last chat model call and its answer
            messages = list(root.llm_messages or _messages_of(root.inputs) or [])
            answer = root.llm_answer if root.llm_answer is not None else outputs
            if isinstance(answer, BaseMessage):
                messages.append(answer)
            elif answer is not None:
                return messages, to_text(answer), None
        response = last_answer(messages)
        if response is not None:
            cut = next(i for i in range(len(messages) - 1, -1, -1) if role_of(messages[i]) == "assistant")
            dialogue = messages[:cut]
        else:
            dialogue = messages
        return dialogue, response, state  # the messages become dialogue items in the record (Sanitizer)


#: Project dicts of projects whose title has no date codes: the same for every record.
_fixed_projects: dict[Project, dict[str, Any]] = {}


def _project_dict(project: Project) -> dict[str, Any]:
    """``project.to_dict()``, without formatting a fixed title again for every record."""
    if "%" in project.name:
        return project.to_dict()
    fixed = _fixed_projects.get(project)
    if fixed is None:
        fixed = _fixed_projects[project] = project.to_dict()
    return dict(fixed)


def sampled(key: str, rate: float) -> bool:
    """Whether a session is in the sample: the same answer for the same key, every time."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.sha256(key.encode("utf-8", "replace")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def _messages_of(value: Any) -> list[BaseMessage] | None:
    if isinstance(value, dict):
        value = value.get("messages")
    if isinstance(value, list) and value and all(isinstance(m, BaseMessage) for m in value):
        return value
    return None


def _opted_out(metadata: dict[str, Any]) -> bool:
    """Whether run metadata keeps the run out (``{OPT_OUT_KEY: False}``)."""
    value = metadata.get(OPT_OUT_KEY)
    return value is not None and str(value).lower() in OFF


def _user_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Run metadata without the keys LangChain and LangGraph add to every run."""
    return {k: v for k, v in metadata.items() if not k.startswith(_INTERNAL_METADATA)} if metadata else {}


def _str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


#: The innermost root run (of any handler) the code running now belongs to. Set in the root's own
#: context when it starts, so every run nested in it (LangChain copies the context into child
#: runs) can find it.
_current_root: contextvars.ContextVar[UUID | None] = contextvars.ContextVar("langchain_label_studio_root", default=None)

#: The handler of the request being served; LangChain adds it to every run made in it.
current_handler: contextvars.ContextVar[CaptureHandler | None] = contextvars.ContextVar(
    "langchain_label_studio_capture", default=None
)
register_configure_hook(current_handler, inheritable=True)
