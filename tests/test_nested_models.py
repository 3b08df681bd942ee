"""A model called inside a tool belongs to the request's run: one task, never one of its own."""

from __future__ import annotations

from conftest import prefilled, project_tasks
from fastapi import FastAPI
from fastapi.testclient import TestClient
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langserve import add_routes

from langchain_label_studio import LabelStudioMiddleware, Project
from langchain_label_studio.graph import capture
from langchain_label_studio.pipeline import get_pipeline
from langchain_label_studio.settings import Settings

summarizer = FakeListChatModel(responses=["owls hunt at night"])


@tool
def look_up(topic: str) -> str:
    """Notes on a topic, summarised by a model."""
    return str(summarizer.invoke(f"Summarise what you know about {topic}").content)


def research_chain():
    """Notes from the tool, then the answer from a second model."""
    answer = FakeListChatModel(responses=["Owls are nocturnal hunters."])
    notes = RunnableLambda(lambda x: {"topic": x["topic"], "notes": look_up.invoke(x["topic"])})
    return notes | ChatPromptTemplate.from_template("Notes: {notes}. Tell me about {topic}") | answer


def research_graph():
    """An assistant node that calls the tool, then answers."""

    async def assistant(state: MessagesState) -> dict:
        notes = await look_up.ainvoke(str(state["messages"][-1].content))
        return {"messages": [AIMessage(f"From my notes: {notes}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("assistant", assistant)
    builder.add_edge(START, "assistant")
    return builder.compile()


def test_model_inside_a_tool_is_part_of_the_request(admin, ls_env, project_name):
    app = FastAPI()
    add_routes(app, research_chain(), path="/research")
    add_routes(app, research_graph(), path="/chat")
    app.add_middleware(
        LabelStudioMiddleware,
        routes={"/research": project_name, "/chat": Project(f"{project_name}-chat", mode="chat")},
    )
    with TestClient(app) as client:
        assert client.post("/research/invoke", json={"input": {"topic": "owls"}}).status_code == 200
        body = {"input": {"messages": [{"type": "human", "content": "owls"}]}}
        assert client.post("/chat/invoke", json=body, headers={"X-Session-ID": "s-owls"}).status_code == 200
        assert get_pipeline(Settings()).flush(60)

    _, [task] = project_tasks(admin, project_name)  # the request, not the summariser's call
    assert task["data"]["prompt"] == "owls"  # two model calls: the request's input
    assert prefilled(task) == "Owls are nocturnal hunters."

    _, [chat] = project_tasks(admin, f"{project_name}-chat")
    assert [(m["role"], m["content"]) for m in chat["data"]["prompt"]] == [("user", "owls")]
    assert prefilled(chat) == "From my notes: owls hunt at night"
    assert chat["data"]["session_id"] == "s-owls"


def test_model_inside_a_tool_of_a_captured_subgraph(admin, ls_env, project_name):
    inner = capture(research_graph(), Project(f"{project_name}-inner", mode="chat"))

    async def delegate(state: MessagesState) -> dict:
        return {"messages": (await inner.ainvoke(state))["messages"][len(state["messages"]) :]}

    builder = StateGraph(MessagesState)
    builder.add_node("delegate", delegate)
    builder.add_edge(START, "delegate")
    app = FastAPI()
    add_routes(app, builder.compile(), path="/ask")
    app.add_middleware(LabelStudioMiddleware, routes={"/ask": project_name})
    with TestClient(app) as client:
        body = {"input": {"messages": [{"type": "human", "content": "owls"}]}}
        assert client.post("/ask/invoke", json=body).status_code == 200
        assert get_pipeline(Settings()).flush(60)

    # One task for the request: its one model call (the summariser's, two graphs and a tool deep).
    _, [task] = project_tasks(admin, project_name)
    assert task["data"]["prompt"] == "Summarise what you know about owls"
    assert prefilled(task) == "owls hunt at night"
    assert admin.find_project(f"{project_name}-inner") is None  # the request's capture records it
