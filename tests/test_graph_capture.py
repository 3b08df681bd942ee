"""``capture(graph)``: a graph's threads as dialogue tasks, invoked directly or behind LangServe."""

from __future__ import annotations

import uuid

from conftest import prefilled, project_tasks
from fastapi import FastAPI
from fastapi.testclient import TestClient
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel
from langserve import add_routes

from example_app.graph import build_graph
from langchain_label_studio import LabelStudioMiddleware, Project
from langchain_label_studio.graph import capture
from langchain_label_studio.pipeline import get_pipeline
from langchain_label_studio.settings import Settings


def test_threads_of_a_directly_invoked_graph(admin, ls_env, project_name):
    graph = capture(build_graph().compile(checkpointer=InMemorySaver()), Project(project_name, mode="chat"))
    assert isinstance(graph, Pregel)  # still a graph
    threads = {f"t-{uuid.uuid4().hex[:6]}": ["hi", "weather in Lima?"], f"u-{uuid.uuid4().hex[:6]}": ["one", "two"]}
    for thread, turns in threads.items():
        config = {"configurable": {"thread_id": thread}, "metadata": {"user_id": "zoe"}}
        graph.invoke({"messages": [HumanMessage(turns[0])]}, config)
        list(graph.stream({"messages": [HumanMessage(turns[1])]}, config, stream_mode="values"))
    state = graph.get_state({"configurable": {"thread_id": next(iter(threads))}})
    assert len(state.values["messages"]) == 6
    assert get_pipeline(Settings()).flush(60)

    _, tasks = project_tasks(admin, project_name)
    by_thread = {t["data"]["session_id"]: t for t in tasks}
    assert set(by_thread) == set(threads) and len(tasks) == 2
    first = by_thread[next(iter(threads))]
    assert [m["role"] for m in first["data"]["prompt"]] == ["user", "assistant", "user", "assistant", "tool"]
    assert prefilled(first) == "Here is what I found: Sunny and 21°C in Lima."
    assert first["data"]["user_id"] == "zoe" and first["data"]["route"].startswith("graph:")


def test_behind_langserve_the_middleware_records_each_turn_once(admin, ls_env, project_name):
    graph = capture(build_graph().compile(checkpointer=InMemorySaver()), Project(f"{project_name}-graph", mode="chat"))
    app = FastAPI()
    add_routes(
        app,
        graph,
        path="/chat",
        per_req_config_modifier=lambda config, request: {
            **config,
            "configurable": {"thread_id": request.headers["x-session-id"]},
        },
    )
    app.add_middleware(LabelStudioMiddleware, routes={"/chat": Project(project_name, mode="chat")})
    with TestClient(app) as client:
        for text in ["a", "b"]:
            body = {"input": {"messages": [{"type": "human", "content": text}]}}
            assert client.post("/chat/invoke", json=body, headers={"X-Session-ID": "same"}).status_code == 200
        assert get_pipeline(Settings()).flush(60)
    _, [task] = project_tasks(admin, project_name)
    assert [m["content"] for m in task["data"]["prompt"]] == ["a", "(turn 1) You said: a", "b"]
    assert admin.find_project(f"{project_name}-graph") is None
    assert get_pipeline(Settings()).health()["captured"] == 2
