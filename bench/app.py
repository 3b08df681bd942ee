"""The benchmark app: a LangServe prompt route on a fake model, with or without the plugin.

Env: BENCH_CAPTURE=1 adds the middleware; BENCH_CAPTURE=noop instead attaches a LangChain
callback handler that does nothing to every run of a request (what LangChain itself costs any
callback-based capture); BENCH_DELAY_MS makes the model take that long. BENCH_CHALLENGER_MS (with
BENCH_CAPTURE=1) gives the route's project a challenger answering every request
(``challenger_rate=1.0``, the pool as shipped): the same chain on a fake model that takes that
long, called from the challenger's threads.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
from typing import Any

from fastapi import FastAPI
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tracers.context import register_configure_hook
from langserve import add_routes

from langchain_label_studio import LabelStudioMiddleware, Project

DELAY_S = float(os.environ.get("BENCH_DELAY_MS", "0")) / 1000
CHALLENGER_S = float(os.environ.get("BENCH_CHALLENGER_MS", "0")) / 1000


class FakeModel(BaseChatModel):
    """Answers ``<prefix> to <last message>`` after ``delay_s``: asleep on the event loop when served
    (LangServe calls the async side), blocking its thread when invoked synchronously (a challenger)."""

    delay_s: float = 0.0
    prefix: str = "answer"

    @property
    def _llm_type(self) -> str:
        return "bench-fake"

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


prompt = ChatPromptTemplate.from_template("Tell me about {topic}")
chain = prompt | FakeModel(delay_s=DELAY_S) | StrOutputParser()
app = FastAPI()
add_routes(app, chain, path="/ask")
if os.environ.get("BENCH_CAPTURE") == "1":
    project: str | Project = os.environ.get("BENCH_PROJECT", "Bench")
    if CHALLENGER_S:
        challenger = prompt | FakeModel(delay_s=CHALLENGER_S, prefix="second opinion") | StrOutputParser()
        project = Project(str(project), challenger=challenger, challenger_rate=1.0)
    app.add_middleware(LabelStudioMiddleware, routes={"/ask": project}, health=True)


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


if os.environ.get("BENCH_CAPTURE") == "noop":
    app.add_middleware(NoopCapture)
