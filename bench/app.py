"""The benchmark app: a LangServe prompt route (``/ask``) and a LangGraph chat route (``/chat``) on a
fake model, with or without the plugin.

``/chat`` is a ``MessagesState`` graph with a ``MemorySaver`` checkpointer, its thread the request's
``X-User-ID`` and ``X-Session-ID`` headers (a new thread without the session header); input
``{"messages": [{"type": "human", "content": "..."}]}``.

Env: BENCH_CAPTURE=1 adds the middleware (``/ask`` to the project BENCH_PROJECT, default "Bench";
``/chat`` to BENCH_PROJECT + " chats" in chat mode); BENCH_CAPTURE=noop instead attaches a LangChain
callback handler that does nothing to every run of a request (what LangChain itself costs any
callback-based capture); BENCH_CAPTURE=langfuse attaches a Langfuse ``CallbackHandler`` to every
request's runs through LangServe's ``per_req_config_modifier`` (its keys and host from the
``LANGFUSE_*`` env); BENCH_CAPTURE=langsmith needs no code: LangSmith tracing is LangChain's own,
turned on by ``LANGSMITH_TRACING=true`` (with ``LANGSMITH_ENDPOINT`` and ``LANGSMITH_API_KEY``) in the
env. BENCH_DELAY_MS makes the model take that long. BENCH_CHALLENGER_MS (with BENCH_CAPTURE=1)
gives the ``/ask`` project a challenger answering every request (``challenger_rate=1.0``, the pool
as shipped): the same chain on a fake model that takes that long, called from the challenger's
threads.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tracers.context import register_configure_hook
from langgraph.checkpoint.memory import MemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langserve import add_routes

from langchain_label_studio import LabelStudioMiddleware, Project

DELAY_S = float(os.environ.get("BENCH_DELAY_MS", "0")) / 1000
CHALLENGER_S = float(os.environ.get("BENCH_CHALLENGER_MS", "0")) / 1000


class FakeModel(BaseChatModel):
    """Answers ``<prefix> to <last message>`` after ``delay_s``: asleep on the event loop when served
    (LangServe calls the async side), blocking its thread when invoked synchronously (a challenger)."""

    delay_s: float = 0.0
    prefix: str = "answer"
    model_name: str = "bench-fake"

    @property
    def _llm_type(self) -> str:
        return "bench-fake"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(f"{self.prefix} to {messages[-1].content}"))])

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any):
        if self.delay_s:
            time.sleep(self.delay_s)
        return self._answer(messages)

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any):
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return self._answer(messages)


CAPTURE = os.environ.get("BENCH_CAPTURE", "")
if CAPTURE == "langfuse":
    from langfuse.langchain import CallbackHandler as LangfuseHandler

prompt = ChatPromptTemplate.from_template("Tell me about {topic}")
chain = prompt | FakeModel(delay_s=DELAY_S) | StrOutputParser()
chat_model = FakeModel(delay_s=DELAY_S)


async def respond(state: MessagesState) -> dict[str, Any]:
    return {"messages": [await chat_model.ainvoke(state["messages"])]}


builder = StateGraph(MessagesState)
builder.add_node("respond", respond)
builder.add_edge(START, "respond")
graph = builder.compile(checkpointer=MemorySaver())


def langfuse_config(config: dict[str, Any], request: Request) -> dict[str, Any]:
    """A Langfuse handler on every run of the request, given its user and session as Langfuse reads them."""
    config["callbacks"] = [*(config.get("callbacks") or []), LangfuseHandler()]
    metadata = config.setdefault("metadata", {})
    metadata["langfuse_user_id"] = request.headers.get("x-user-id") or "anonymous"
    if session := request.headers.get("x-session-id"):
        metadata["langfuse_session_id"] = session
    return config


def chat_config(config: dict[str, Any], request: Request) -> dict[str, Any]:
    """The request's LangGraph thread: its user's X-Session-ID session (a new one without the header)."""
    user = request.headers.get("x-user-id") or "anonymous"
    session = request.headers.get("x-session-id") or uuid.uuid4().hex
    config.setdefault("configurable", {})["thread_id"] = f"{user}:{session}"
    return langfuse_config(config, request) if CAPTURE == "langfuse" else config


app = FastAPI()
add_routes(app, chain, path="/ask", per_req_config_modifier=langfuse_config if CAPTURE == "langfuse" else None)
add_routes(app, graph, path="/chat", per_req_config_modifier=chat_config)
if CAPTURE == "1":
    name = os.environ.get("BENCH_PROJECT", "Bench")
    project: str | Project = name
    if CHALLENGER_S:
        challenger = prompt | FakeModel(delay_s=CHALLENGER_S, prefix="second opinion") | StrOutputParser()
        project = Project(name, challenger=challenger, challenger_rate=1.0)
    routes = {"/ask": project, "/chat": Project(f"{name} chats", mode="chat")}
    app.add_middleware(LabelStudioMiddleware, routes=routes, health=True)


class NoopHandler(BaseCallbackHandler):
    """Sees every event of every run and does nothing with it."""

    run_inline = True

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        pass


noop_handler: contextvars.ContextVar[NoopHandler | None] = contextvars.ContextVar("bench_noop", default=None)
register_configure_hook(noop_handler, inheritable=True)


class NoopCapture:
    """An ASGI middleware giving each request a handler, the way the plugin attaches its own."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        token = noop_handler.set(NoopHandler() if scope["type"] == "http" else None)
        try:
            await self.app(scope, receive, send)
        finally:
            noop_handler.reset(token)


if CAPTURE == "noop":
    app.add_middleware(NoopCapture)
