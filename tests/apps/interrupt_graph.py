"""A graph that stops for a human's approval (``interrupt``) before it answers."""

import os

from langchain_core.messages import AIMessage
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import interrupt

from langchain_label_studio import Project, capture
from tests.apps.capture_env import settings


def approve(state: MessagesState) -> dict:
    decision = interrupt({"question": f"Answer '{state['messages'][-1].content}'?"})
    return {"messages": [AIMessage(f"Approved answer ({decision}) to: {state['messages'][-1].content}")]}


builder = StateGraph(MessagesState)
builder.add_node("approve", approve)
builder.add_edge(START, "approve")
graph = capture(
    builder.compile(), Project(os.environ.get("INTERRUPT_PROJECT", "Approvals"), mode="chat"), settings=settings()
)
