"""The example's model: a deterministic fake by default, OpenAI when OPENAI_API_KEY is set."""

from __future__ import annotations

import os
import re
import uuid
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult


class DeterministicChatModel(BaseChatModel):
    """Answers without a network: jokes on request, the weather tool when asked about weather."""

    @property
    def _llm_type(self) -> str:
        return "deterministic-fake"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": "deterministic-fake"}

    def bind_tools(self, tools: Any, **kwargs: Any) -> DeterministicChatModel:
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._answer(messages))])

    @staticmethod
    def _answer(messages: list[BaseMessage]) -> AIMessage:
        last = messages[-1] if messages else HumanMessage("")
        if isinstance(last, ToolMessage):
            return AIMessage(f"Here is what I found: {last.content}")
        text = str(last.content)
        weather = re.search(r"weather in ([^?!]+)", text, re.IGNORECASE)
        if weather:
            city = weather.group(1).strip().rstrip("?. ")
            call = {
                "name": "get_weather",
                "args": {"city": city},
                "id": f"call_{uuid.uuid5(uuid.NAMESPACE_URL, text).hex[:12]}",
            }
            return AIMessage("", tool_calls=[call])
        topic = re.search(r"joke about (.+)", text, re.IGNORECASE)
        if topic:
            subject = topic.group(1).strip().rstrip("?.!")
            return AIMessage(f"Why did the {subject} cross the road? To get to the other side!")
        turn = sum(1 for m in messages if isinstance(m, HumanMessage))
        return AIMessage(f"(turn {turn}) You said: {text}")


def chat_model() -> BaseChatModel:
    """OpenAI's chat model when ``OPENAI_API_KEY`` is set, else the deterministic fake."""
    if os.environ.get("OPENAI_API_KEY"):
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), temperature=0)
    return DeterministicChatModel()


class ChallengerChatModel(DeterministicChatModel):
    """A second fake model with answers of its own, standing in for a model you might switch to."""

    @property
    def _llm_type(self) -> str:
        return "deterministic-challenger"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": "deterministic-challenger"}

    @staticmethod
    def _answer(messages: list[BaseMessage]) -> AIMessage:
        last = messages[-1] if messages else HumanMessage("")
        text = str(last.content)
        topic = re.search(r"joke about (.+)", text, re.IGNORECASE)
        if topic:
            subject = topic.group(1).strip().rstrip("?.!")
            return AIMessage(f"What do {subject} read at breakfast? The {subject} times.")
        if isinstance(last, ToolMessage):
            return AIMessage(f"According to the weather service: {last.content}")
        return AIMessage(f"Sure! About “{text}”: here is a short, direct answer.")


def challenger_model() -> BaseChatModel:
    """The challenger: OpenAI's ``OPENAI_CHALLENGER_MODEL`` (default gpt-4o) with a key, else a second fake."""
    if os.environ.get("OPENAI_API_KEY"):
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(model=os.environ.get("OPENAI_CHALLENGER_MODEL", "gpt-4o"), temperature=0)
    return ChallengerChatModel()
