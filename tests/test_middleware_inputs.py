"""The plugin never changes a response, and bad input never breaks a request."""

from __future__ import annotations

import re
import uuid

import pytest
from conftest import prefilled, project_tasks
from fastapi import FastAPI
from fastapi.testclient import TestClient
from langchain_core.runnables import RunnableLambda
from langserve import add_routes
from sse_starlette.sse import AppStatus

from langchain_label_studio import LabelStudioMiddleware, Project
from langchain_label_studio.pipeline import get_pipeline
from langchain_label_studio.settings import Settings

_IDS = re.compile(
    r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}|s-[0-9a-f]{8}"
)


def normalized(text: str) -> str:
    return _IDS.sub("<id>", text)


def compare(bare: TestClient, captured: TestClient, method: str, path: str, **kwargs) -> None:
    kw_bare, kw_cap = dict(kwargs), dict(kwargs)
    if "headers" in kwargs:
        sid = f"s-{uuid.uuid4().hex[:8]}"
        kw_bare["headers"] = {**kwargs["headers"], "X-Session-ID": sid}
        kw_cap["headers"] = {**kwargs["headers"], "X-Session-ID": f"s-{uuid.uuid4().hex[:8]}"}
    # sse-starlette keeps an exit event bound to the first event loop; each TestClient has its own.
    AppStatus.should_exit_event = None
    a = bare.request(method, path, **kw_bare)
    AppStatus.should_exit_event = None
    b = captured.request(method, path, **kw_cap)
    assert a.status_code == b.status_code, path
    ha = {k: v for k, v in a.headers.items() if k not in ("date",)}
    hb = {k: v for k, v in b.headers.items() if k not in ("date", "x-request-id", "x-label-studio-feedback-token")}
    assert ha == hb, path
    assert ("x-request-id" in b.headers) == (method == "POST" and path.startswith(("/joke/", "/chat/"))), path
    assert normalized(a.text) == normalized(b.text), path


def test_example_app_responses_are_unchanged(ls_env):
    from example_app.app import create_app

    with TestClient(create_app(capture=False)) as bare, TestClient(create_app(capture=True)) as captured:
        chat = {"input": {"messages": [{"type": "human", "content": "What is the weather in Rome?"}]}}
        headers = {"X-User-ID": "u1"}
        compare(bare, captured, "POST", "/joke/invoke", json={"input": {"topic": "cats"}})
        compare(bare, captured, "POST", "/joke/batch", json={"inputs": [{"topic": "a"}, {"topic": "b"}]})
        compare(bare, captured, "POST", "/joke/stream", json={"input": {"topic": "dogs"}})
        compare(bare, captured, "POST", "/joke/stream_log", json={"input": {"topic": "dogs"}})
        compare(bare, captured, "POST", "/chat/invoke", json=chat, headers=headers)
        compare(bare, captured, "POST", "/chat/stream", json=chat, headers=headers)
        compare(
            bare, captured, "POST", "/joke/invoke", content=b"not json", headers={"content-type": "application/json"}
        )
        compare(bare, captured, "POST", "/joke/invoke", json={"input": {"wrong": 1}})
        compare(bare, captured, "GET", "/joke/input_schema")
        compare(bare, captured, "POST", "/nowhere", json={})
        compare(bare, captured, "GET", "/docs")


def boom(_: dict) -> str:
    raise ValueError("boom")


def echo(value: dict) -> str:
    return f"echo: {value['text']}"


@pytest.fixture
def bad_input_app(ls_env, project_name):
    def build(capture: bool) -> FastAPI:
        app = FastAPI()
        add_routes(app, RunnableLambda(boom), path="/fails")
        add_routes(app, RunnableLambda(echo), path="/echo")
        if capture:
            app.add_middleware(
                LabelStudioMiddleware, routes={"/fails": project_name, "/echo": project_name}, max_chars=1000
            )
        return app

    with TestClient(build(False), raise_server_exceptions=False) as bare:
        with TestClient(build(True), raise_server_exceptions=False) as captured:
            yield bare, captured


def test_bad_input_behaves_as_without_plugin_and_is_recorded(admin, ls_env, project_name, bad_input_app):
    bare, captured = bad_input_app
    big = "x" * (50 * 1024 * 1024)
    requests = [
        ("POST", "/fails/invoke", {"json": {"input": {"text": "hi"}}}),
        ("POST", "/echo/invoke", {"content": b"\xff\xfe not json", "headers": {"content-type": "application/json"}}),
        ("POST", "/echo/invoke", {"json": {"input": {"text": big}}}),
        (
            "POST",
            "/echo/invoke",
            {
                "content": b'{"input": {"text": "nul\\u0000 and \\ud800 lone"}}',
                "headers": {"content-type": "application/json"},
            },
        ),
        ("POST", "/unknown/invoke", {"json": {}}),
    ]
    for method, path, kwargs in requests:
        a = bare.request(method, path, **kwargs)
        b = captured.request(method, path, **kwargs)
        assert a.status_code == b.status_code, path
        assert normalized(a.text) == normalized(b.text), path
    pipeline = get_pipeline(Settings())
    assert pipeline.flush(60), pipeline.health()

    _, tasks = project_tasks(admin, project_name)
    assert len(tasks) == 3  # the failed run, the 50 MB message, the NUL/invalid UTF-8 one
    failed = next(t for t in tasks if t["data"].get("error"))
    assert failed["data"]["error"] == "ValueError: boom"
    assert failed["predictions"] == []
    large = next(t for t in tasks if t["data"].get("truncated"))
    assert len(large["data"]["prompt"]) < 1100
    assert large["data"]["prompt"].endswith("chars]")
    assert len(prefilled(large)) < 1100
    odd = next(t for t in tasks if "lone" in t["data"]["prompt"])
    assert odd["data"]["prompt"] == "nul and \ufffd lone"
    assert prefilled(odd) == "echo: nul and \ufffd lone"


def test_unmapped_and_default_routes(admin, ls_env, project_name):
    app = FastAPI()
    add_routes(app, RunnableLambda(echo), path="/echo")
    add_routes(app, RunnableLambda(echo), path="/other")
    app.add_middleware(LabelStudioMiddleware, routes={"/echo": Project(project_name)})
    with TestClient(app) as client:
        assert client.post("/other/invoke", json={"input": {"text": "not captured"}}).status_code == 200
        assert client.post("/echo/invoke", json={"input": {"text": "captured"}}).status_code == 200
    pipeline = get_pipeline(Settings())
    assert pipeline.flush(60)
    _, tasks = project_tasks(admin, project_name)
    assert [prefilled(t) for t in tasks] == ["echo: captured"]

    default_name = f"{project_name}-default"
    app = FastAPI()
    add_routes(app, RunnableLambda(echo), path="/other")
    app.add_middleware(LabelStudioMiddleware, default=default_name)
    with TestClient(app) as client:
        client.post("/other/invoke", json={"input": {"text": "by default"}})
    assert get_pipeline(Settings()).flush(60)
    _, [task] = project_tasks(admin, default_name)
    assert task["data"]["route"] == "/other/invoke"
    assert prefilled(task) == "echo: by default"


def test_request_ids_are_made_by_the_server(admin, ls_env, project_name):
    app = FastAPI()
    add_routes(app, RunnableLambda(echo), path="/echo")
    app.add_middleware(LabelStudioMiddleware, routes={"/echo": project_name}, record_headers=["X-Client-Version"])
    sent = {
        "kept": [(b"x-request-id", b"support-42.a:b")],
        "newline": [(b"x-request-id", b"support-43\n")],
        "too long": [(b"x-request-id", b"x" * 129)],
        "space": [(b"x-request-id", b"has space")],
        "controls": [
            (b"x-request-id", b"evil\x1bid"),
            (b"x-user-id", "al\x1b[2Jice\u202e\u200b".encode()),
            (b"x-session-id", b"s\x07-1"),
            (b"x-client-version", b"1.0\x1b[31m"),
        ],
    }
    answers = {}
    with TestClient(app) as client:
        for text, headers in sent.items():
            resp = client.post("/echo/invoke", json={"input": {"text": text}}, headers=headers)
            assert resp.status_code == 200
            answers[text] = resp.headers["x-request-id"]
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in answers.values())
    assert len(set(answers.values())) == len(sent)
    assert get_pipeline(Settings()).flush(60)

    _, tasks = project_tasks(admin, project_name)
    by_text = {t["data"]["prompt"]: t["data"] for t in tasks}
    assert {text: data["request_id"] for text, data in by_text.items()} == answers
    assert {text: data.get("client_request_id") for text, data in by_text.items()} == {
        "kept": "support-42.a:b",
        "newline": None,
        "too long": None,
        "space": None,
        "controls": None,
    }
    controls = by_text["controls"]
    assert (controls["user_id"], controls["session_id"]) == ("al[2Jice", "s-1")
    assert controls["headers"] == {"x-client-version": "1.0[31m"}
