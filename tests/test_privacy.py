"""Data protection: redaction everywhere, header allowlist, sampling by session, opt-out, file modes."""

from __future__ import annotations

import json
import logging
import os
import stat
import uuid

from conftest import eventually, project_tasks
from fastapi import FastAPI
from fastapi.testclient import TestClient
from faults import FaultProxy
from langchain_core.runnables import RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver
from langserve import add_routes

from example_app.graph import build_graph
from langchain_label_studio import LabelStudioMiddleware, Project
from langchain_label_studio.capture import sampled
from langchain_label_studio.pipeline import get_pipeline
from langchain_label_studio.settings import Settings

SECRETS = [
    "alice.smith@example.com",
    "bob_jones+billing@mail.example.org",
    "carla.gomez@sub.example.co.uk",
    "d.ng@example.net",
    "eve@corp.example.com",
    "frank.o'neil@example.io".replace("'", ""),
    "+1 415-555-0132",
    "(212) 555 0199",
    "+44 20 7946 0958",
    "+49 30 901820",
    "07700 900123",
    "555.867.5309",
    "+33 1 42 68 53 00",
    "+61 2 9374 4000",
    "4111 1111 1111 1111",
    "5500-0000-0000-0004",
    "340000000000009",
    "6011000000000004",
    "4012888888881881",
    "DE89 3704 0044 0532 0130 00",
    "GB29NWBK60161331926819",
    "FR1420041010050500013M02606",
    "NL91ABNA0417164300",
    "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c",
    "sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "AKIAIOSFODNN7EXAMPLE",
    "xoxb-1234567890-abcdefghijklmnop",
    "AIzaSyA1234567890abcdefghijklmnopqrstu",
    "hf_abcdefghijklmnopqrstuvwxyzABCDEF",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "Bearer abcdef1234567890abcdef",
    "password=Hunter2Secret!",
    "api_key: ZXCVBNMASDFGHJ",
    "glpat-abcdefghijklmnopqrst",
]
BENIGN = [
    "What is the capital of France?",
    "Meet me on 2026-11-25 at 10:30.",
    "Order 12345 shipped in 3 boxes.",
    "Version 1.23.2 fixed the bug.",
    "The token is expired, please log in again.",
    "Call me maybe.",
    "Use the key to open the door.",
    "Temperature was 21.5 degrees.",
    "Room 404 is on floor 4.",
    "The password policy requires 12 characters.",
    "My order number is 4821.",
    "Pi is about 3.14159.",
    "Send it to the support team.",
    "Year 1999 was a good one.",
    "The email will arrive tomorrow.",
]


def corpus() -> list[tuple[str, str]]:
    """(sensitive value, a line of conversation holding it): more than 50 lines."""
    lines = []
    for i, value in enumerate(SECRETS):
        lines.append((value, f"Hi, my details: {value} thanks"))
        if i % 2 == 0:
            lines.append((value, f"{value}"))
    return lines


def echo(value: dict) -> str:
    return f"I noted: {value['text']}"


def test_redaction_corpus_never_reaches_outbox_logs_or_label_studio(
    label_studio, admin, ls_env, project_name, monkeypatch, caplog
):
    caplog.set_level(logging.DEBUG)
    proxy = FaultProxy(label_studio.port)  # down first: captures wait in the outbox file
    monkeypatch.setenv("LABEL_STUDIO_URL", proxy.url)
    lines = corpus()
    assert len(lines) >= 50
    chat_project = f"{project_name}-chat"
    app = FastAPI()
    add_routes(app, RunnableLambda(echo), path="/echo")
    add_routes(
        app,
        build_graph().compile(checkpointer=InMemorySaver()),
        path="/chat",
        per_req_config_modifier=lambda config, request: {
            **config,
            "configurable": {"thread_id": request.headers["x-session-id"]},
        },
    )
    app.add_middleware(
        LabelStudioMiddleware,
        routes={"/echo": project_name, "/chat": Project(chat_project, mode="chat")},
        record_headers=["X-Customer-Note", "Authorization", "Cookie", "X-Api-Key"],
    )
    auth_tokens = []
    with TestClient(app) as client:
        for _, line in lines:
            auth_tokens.append(uuid.uuid4().hex)
            headers = {"X-Customer-Note": line, "Authorization": f"Bearer {auth_tokens[-1]}", "Cookie": "sid=abc"}
            assert client.post("/echo/invoke", json={"input": {"text": line}}, headers=headers).status_code == 200
        for benign in BENIGN:
            assert client.post("/echo/invoke", json={"input": {"text": benign}}).status_code == 200
        # a tool call whose arguments and result carry personal data, and graph state
        body = {
            "input": {"messages": [{"type": "human", "content": "What is the weather in alice.smith@example.com?"}]}
        }
        assert client.post("/chat/invoke", json=body, headers={"X-Session-ID": "pii-session"}).status_code == 200
    pipeline = get_pipeline(Settings())
    eventually(lambda: (h := pipeline.health())["committed"] >= h["captured"], "the captures on disk")
    assert not pipeline.flush(0.5)  # Label Studio is down

    raw = b""
    for path in pipeline.outbox.path.parent.glob("outbox-*"):
        raw += path.read_bytes()
    assert raw.count(b"I noted") >= len(lines)  # the records are there...
    for value, _ in lines:
        assert value.encode() not in raw, f"{value!r} reached the outbox file"  # ...without the values

    proxy.start()
    pipeline.retry_now()
    assert pipeline.flush(60), json.dumps(pipeline.health())
    proxy.close()
    _, tasks = project_tasks(admin, project_name)
    _, [chat_task] = project_tasks(admin, chat_project)
    dumped = json.dumps(tasks + [chat_task], ensure_ascii=False)
    for value, _ in lines:
        assert value not in dumped, f"{value!r} reached Label Studio"
    assert not any(t in dumped for t in auth_tokens) and "sid=abc" not in dumped
    assert all(set(t["data"].get("headers", {})) <= {"x-customer-note"} for t in tasks)
    for value, _ in lines:
        assert value not in caplog.text
    assert not any(t in caplog.text for t in auth_tokens)
    prompts = {t["data"]["prompt"] for t in tasks}
    assert set(BENIGN) <= prompts, "non-sensitive text must stay unchanged"
    assert "Hi, my details: <EMAIL> thanks" in prompts
    assert "Hi, my details: <CREDIT_CARD> thanks" in prompts
    assert "Hi, my details: <IBAN> thanks" in prompts
    assert "Hi, my details: <PHONE> thanks" in prompts
    assert "Hi, my details: <SECRET> thanks" in prompts
    tool_call = chat_task["data"]["prompt"][1]["tool_calls"][0]
    assert tool_call["args"] == {"city": "<EMAIL>"}
    assert chat_task["data"]["prompt"][2]["content"] == "[get_weather] Sunny and 21°C in <EMAIL>."
    health = pipeline.health()
    assert health["redactions"]["EMAIL"] >= 12 and health["redactions"]["CREDIT_CARD"] >= 5


def test_sampling_captures_whole_sessions(admin, ls_env, project_name):
    assert 70 <= sum(sampled(f"session-{i}", 0.1) for i in range(1000)) <= 130
    assert all(sampled(f"s{i}", 0.1) == sampled(f"s{i}", 0.1) for i in range(100))

    app = FastAPI()
    add_routes(app, RunnableLambda(echo), path="/echo")
    app.add_middleware(LabelStudioMiddleware, routes={"/echo": Project(project_name, mode="chat")}, sample_rate=0.1)
    last_request: dict[str, str] = {}
    with TestClient(app) as client:
        for turn in range(2):
            for i in range(1000):
                session = f"{project_name}-{i}"
                resp = client.post(
                    "/echo/invoke", json={"input": {"text": f"turn {turn}"}}, headers={"X-Session-ID": session}
                )
                last_request[session] = resp.headers["x-request-id"]
    pipeline = get_pipeline(Settings())
    assert pipeline.flush(120), pipeline.health()
    chosen = {s for s in last_request if sampled(s, 0.1)}
    health = pipeline.health()
    assert 70 <= len(chosen) <= 130
    assert health["captured"] == 2 * len(chosen)
    assert health["skipped"]["sampled_out"] == 2 * (1000 - len(chosen))

    _, tasks = project_tasks(admin, project_name)
    assert {t["data"]["session_id"] for t in tasks} == chosen
    assert all(t["data"]["request_id"] == last_request[t["data"]["session_id"]] for t in tasks)  # both turns in


def test_opt_out_by_header_and_by_metadata(admin, ls_env, project_name):
    app = FastAPI()
    add_routes(app, RunnableLambda(echo), path="/echo")
    add_routes(
        app,
        RunnableLambda(echo).with_config(metadata={"label_studio_capture": False}),
        path="/private",
    )
    app.add_middleware(LabelStudioMiddleware, routes={"/echo": project_name, "/private": project_name})
    with TestClient(app) as client:
        client.post("/echo/invoke", json={"input": {"text": "keep"}})
        client.post("/echo/invoke", json={"input": {"text": "skip"}}, headers={"X-Label-Studio-Capture": "off"})
        client.post("/private/invoke", json={"input": {"text": "skip too"}})
    pipeline = get_pipeline(Settings())
    assert pipeline.flush(60)
    _, tasks = project_tasks(admin, project_name)
    assert [t["data"]["prompt"] for t in tasks] == ["keep"]
    assert pipeline.health()["skipped"]["opted_out"] == 2


def test_outbox_is_owner_only(ls_env):
    pipeline = get_pipeline(Settings())
    assert stat.S_IMODE(os.stat(pipeline.outbox.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(pipeline.outbox.path.parent).st_mode) == 0o700
