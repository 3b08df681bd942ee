"""The benchmark app: a LangServe prompt route on a fake model, with or without the plugin.

Env: BENCH_CAPTURE=1 adds the middleware; BENCH_DELAY_MS makes the model take that long.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import FastAPI
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langserve import add_routes

from langchain_label_studio import LabelStudioMiddleware

DELAY_S = float(os.environ.get("BENCH_DELAY_MS", "0")) / 1000


class FakeModel(BaseChatModel):
    @property
    def _llm_type(self) -> str:
        return "bench-fake"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any):
        return ChatResult(generations=[ChatGeneration(message=AIMessage(f"answer to {messages[-1].content}"))])

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any):
        if DELAY_S:
            await asyncio.sleep(DELAY_S)
        return self._generate(messages)


chain = ChatPromptTemplate.from_template("Tell me about {topic}") | FakeModel() | StrOutputParser()
app = FastAPI()
add_routes(app, chain, path="/ask")
if os.environ.get("BENCH_CAPTURE") == "1":
    app.add_middleware(LabelStudioMiddleware, routes={"/ask": os.environ.get("BENCH_PROJECT", "Bench")}, health=True)
