"""Who asked and in which session: authenticated users, headers, LangGraph threads, a callable."""

from __future__ import annotations

import concurrent.futures
import json
import uuid

import httpx
from conftest import prefilled, project_tasks, serve, tasks_where, wait_delivered
from fastapi import FastAPI
from fastapi.testclient import TestClient
from langchain_core.runnables import RunnableLambda
from langserve import add_routes
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware
from test_middleware import chat

from example_app.graph import build_graph
from langchain_label_studio import LabelStudioMiddleware, Project
from langchain_label_studio.pipeline import get_pipeline
from langchain_label_studio.settings import Settings


class BearerNames(AuthenticationBackend):
    async def authenticate(self, conn):
        auth = conn.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            return AuthCredentials(["authenticated"]), SimpleUser(auth.removeprefix("Bearer ").split(".")[0])
        return None


def echo(value: dict) -> str:
    return f"echo: {value['text']}"


def test_authenticated_user_wins_and_secrets_stay_out(admin, ls_env, project_name):
    app = FastAPI()
    add_routes(app, RunnableLambda(echo), path="/echo")
    app.add_middleware(AuthenticationMiddleware, backend=BearerNames())
    app.add_middleware(LabelStudioMiddleware, routes={"/echo": project_name})  # outermost: runs before auth
    with TestClient(app) as client:
        resp = client.post(
            "/echo/invoke",
            json={"input": {"text": "hi"}},
            headers={"Authorization": "Bearer erin.secret-token-123", "X-User-ID": "spoofed", "Cookie": "sid=s3cr3t"},
        )
        assert resp.status_code == 200
        client.post("/echo/invoke", json={"input": {"text": "anon"}}, headers={"X-User-ID": "frank"})
    assert get_pipeline(Settings()).flush(60)

    _, tasks = project_tasks(admin, project_name)
    assert [(t["data"]["prompt"], t["data"]["user_id"]) for t in tasks] == [("hi", "erin"), ("anon", "frank")]
    dumped = json.dumps(tasks)
    assert "secret-token-123" not in dumped and "s3cr3t" not in dumped


def test_identify_callable_overrides(admin, ls_env, project_name):
    app = FastAPI()
    add_routes(app, RunnableLambda(echo), path="/echo")

    def identify(scope):
        headers = dict(scope["headers"])
        return {"user_id": f"tenant-{headers[b'x-tenant'].decode()}", "session_id": "conv-7"}

    app.add_middleware(LabelStudioMiddleware, routes={"/echo": project_name}, identify=identify)
    with TestClient(app) as client:
        client.post("/echo/invoke", json={"input": {"text": "x"}}, headers={"X-Tenant": "acme", "X-User-ID": "u"})
    assert get_pipeline(Settings()).flush(60)
    _, [task] = project_tasks(admin, project_name)
    assert (task["data"]["user_id"], task["data"]["session_id"]) == ("tenant-acme", "conv-7")


def test_langgraph_thread_is_the_session_without_header(admin, ls_env, project_name):
    thread = f"t-{uuid.uuid4().hex[:8]}"

    def from_body(config, request):
        config.setdefault("configurable", {})["thread_id"] = thread
        return config

    from langgraph.checkpoint.memory import InMemorySaver

    app = FastAPI()
    add_routes(
        app, build_graph().compile(checkpointer=InMemorySaver()), path="/chat", per_req_config_modifier=from_body
    )
    app.add_middleware(LabelStudioMiddleware, routes={"/chat": Project(project_name, mode="chat")})
    with TestClient(app) as client:
        for text in ["one", "two"]:
            body = {"input": {"messages": [{"type": "human", "content": text}]}}
            assert client.post("/chat/invoke", json=body).status_code == 200
    assert get_pipeline(Settings()).flush(60)
    _, [task] = project_tasks(admin, project_name)
    assert task["data"]["session_id"] == thread
    assert [m["content"] for m in task["data"]["prompt"]] == ["one", "(turn 1) You said: one", "two"]


def test_every_langserve_endpoint_feeds_the_same_session_task(admin, example_app):
    session = f"s-{uuid.uuid4().hex[:8]}"
    headers = {"X-User-ID": "gina", "X-Session-ID": session}
    msg = lambda text: {"messages": [{"type": "human", "content": text}]}  # noqa: E731
    assert example_app.post("/chat/invoke", json={"input": msg("a")}, headers=headers).status_code == 200
    assert example_app.post("/chat/batch", json={"inputs": [msg("b")]}, headers=headers).status_code == 200
    assert example_app.post("/chat/stream", json={"input": msg("c")}, headers=headers).status_code == 200
    assert example_app.post("/chat/stream_log", json={"input": msg("d")}, headers=headers).status_code == 200
    events = example_app.post("/chat/stream_events", json={"input": msg("e")}, headers=headers)
    assert events.status_code == 200
    health = wait_delivered(example_app)
    assert health["captured"] >= 5

    [task] = tasks_where(admin, "Support chats", session_id=session)
    assert [m["content"] for m in task["data"]["prompt"] if m["role"] == "user"] == ["a", "b", "c", "d", "e"]
    assert prefilled(task) == "(turn 5) You said: e"


def test_concurrent_sessions_never_mix(admin, example_app):
    sessions = [f"c{i}-{uuid.uuid4().hex[:6]}" for i in range(8)]
    base = str(example_app.base_url)

    def converse(session: str) -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            for turn in range(3):
                chat(client, f"user-{session}", session, f"{session} turn {turn}")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(converse, sessions))
    wait_delivered(example_app)

    for session in sessions:
        [task] = tasks_where(admin, "Support chats", session_id=session)
        users = [m["content"] for m in task["data"]["prompt"] if m["role"] == "user"]
        assert users == [f"{session} turn {t}" for t in range(3)]
        assert task["data"]["user_id"] == f"user-{session}"


def test_client_disconnect_mid_stream_is_recorded(admin, label_studio, tmp_path, project_name):
    with serve(
        "apps.slow_stream:app", label_studio, tmp_path / "state", SLOW_PROJECT=project_name, PYTHONPATH="tests"
    ) as app:
        with app.stream("POST", "/slow/stream", json={"input": {"words": 50}}) as resp:
            assert resp.status_code == 200
            for line in resp.iter_lines():
                if line.startswith("data:"):
                    break  # one chunk, then the client goes away
        complete = app.post("/slow/invoke", json={"input": {"words": 3}})
        assert complete.json()["output"] == "word0 word1 word2 "
        health = wait_delivered(app)
        assert health["captured"] == 2

    _, tasks = project_tasks(admin, project_name)
    assert len(tasks) == 2
    cut = next(t for t in tasks if t["data"].get("error"))
    assert "did not finish" in cut["data"]["error"] or "Cancelled" in cut["data"]["error"]
    whole = next(t for t in tasks if not t["data"].get("error"))
    assert prefilled(whole) == "word0 word1 word2 "
