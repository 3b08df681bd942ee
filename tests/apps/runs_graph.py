"""A chat graph whose answer can fail or take its time: for failed, cancelled and concurrent runs.

A message starting with ``fail`` makes the node raise; one starting with ``slow`` makes it wait
a minute first (long enough to cancel the run or send another one).
"""

import asyncio
import os

from langchain_core.messages import AIMessage
from langgraph.graph import START, MessagesState, StateGraph

from langchain_label_studio import Project, capture
from tests.apps.capture_env import settings


async def answer(state: MessagesState) -> dict:
    text = state["messages"][-1].content
    if text.startswith("fail"):
        raise ValueError(f"cannot answer {text!r}")
    if text.startswith("slow"):
        await asyncio.sleep(60)
    return {"messages": [AIMessage(f"Answer to: {text}")]}


builder = StateGraph(MessagesState)
builder.add_node("answer", answer)
builder.add_edge(START, "answer")
graph = capture(builder.compile(), Project(os.environ.get("RUNS_PROJECT", "Runs"), mode="chat"), settings=settings())
