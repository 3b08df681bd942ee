"""The example's chat graph: an assistant with one tool and a checkpointer (session = thread)."""

from __future__ import annotations

from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from .models import chat_model


@tool
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    return f"Sunny and 21°C in {city}."


TOOLS = [get_weather]


def build_graph() -> StateGraph:
    model = chat_model().bind_tools(TOOLS)

    def assistant(state: MessagesState) -> dict:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("assistant", assistant)
    builder.add_node("tools", ToolNode(TOOLS))
    builder.add_edge(START, "assistant")
    builder.add_conditional_edges("assistant", tools_condition)
    builder.add_edge("tools", "assistant")
    return builder


graph = build_graph().compile(checkpointer=InMemorySaver())
