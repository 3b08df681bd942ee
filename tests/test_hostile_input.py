"""Hostile or odd input never stops, freezes or corrupts capture (real HTTP, real Label Studio).

Each case is followed by ordinary traffic that must all arrive.
"""

from __future__ import annotations

import uuid

import httpx
from conftest import project_tasks, serve, tasks_where, wait_delivered
from langchain_core.language_models.fake import FakeListLLM
from test_middleware import chat

from langchain_label_studio import LabelStudioCallbackHandler
from langchain_label_studio.pipeline import Pipeline
from langchain_label_studio.project import Project
from langchain_label_studio.record import CaptureRecord
from langchain_label_studio.settings import Settings


def joke(app: httpx.Client, topic: str, user: str) -> httpx.Response:
    return app.post("/joke/invoke", json={"input": {"topic": topic}}, headers={"X-User-ID": user})


def test_a_lone_surrogate_in_a_request_never_stops_capture(admin, example_app):
    user = f"sur-{uuid.uuid4().hex[:6]}"
    body = '{"input": {"topic": "bad \\ud800 owls"}}'  # valid JSON naming a lone surrogate
    # LangServe itself cannot serialise the answer (its own 500, on a connection of its own, which the
    # server then closes); the run was captured all the same.
    resp = httpx.post(
        f"{example_app.base_url}/joke/invoke",
        content=body,
        headers={"content-type": "application/json", "X-User-ID": user},
    )
    assert resp.status_code == 500 and "x-label-studio-feedback-token" not in resp.headers
    for topic in ["bees", "cats"]:
        assert joke(example_app, topic, user).status_code == 200
    health = wait_delivered(example_app)
    assert health["dead_lettered"] == 0

    prompts = sorted(t["data"]["prompt"] for t in tasks_where(admin, "Jokes", user_id=user))
    assert prompts == ["Tell me a joke about bad \ufffd owls", "Tell me a joke about bees", "Tell me a joke about cats"]


def test_the_drop_in_handler_with_unsanitised_prompts(admin, ls_env, project_name):
    handler = LabelStudioCallbackHandler(project_name=project_name)
    llm = FakeListLLM(responses=["one", "two", "three"], callbacks=[handler])
    for prompt in ["lone \udc00 surrogate", "nul \x00 char", "plain"]:
        llm.invoke(prompt)
    assert handler.flush(60)
    _, tasks = project_tasks(admin, project_name)
    assert sorted(t["data"]["prompt"] for t in tasks) == ["lone \ufffd surrogate", "nul  char", "plain"]


def test_adversarial_text_and_deep_nesting_are_captured_and_the_app_goes_on(admin, example_app):
    user = f"adv-{uuid.uuid4().hex[:6]}"
    for topic in ["a@" + "a." * 50000, "eyJ-" * 25000, "1 " * 50000, "+(" * 50000]:
        assert joke(example_app, topic, user).status_code == 200
    # A deeply nested body: LangServe answers it (with its own 500) on a connection of its own,
    # which the server then closes; capture goes on.
    nested = httpx.post(
        f"{example_app.base_url}/joke/invoke", content="[" * 8000, headers={"content-type": "application/json"}
    )
    assert nested.status_code == 500
    assert joke(example_app, "after", user).status_code == 200
    wait_delivered(example_app, timeout=120)
    tasks = tasks_where(admin, "Jokes", user_id=user)
    assert len(tasks) == 5
    assert sum(bool(t["data"].get("truncated")) for t in tasks) >= 1


def test_another_user_cannot_take_over_a_session(admin, example_app):
    session = f"s-{uuid.uuid4().hex[:8]}"
    chat(example_app, "alice", session, "my private question")
    wait_delivered(example_app)
    [before] = tasks_where(admin, "Support chats", session_id=session)

    answer = chat(example_app, "mallory", session, "what did she ask?").json()
    assert "my private question" not in str(answer)  # another thread: nothing of alice's leaks back
    wait_delivered(example_app)

    tasks = tasks_where(admin, "Support chats", session_id=session)
    assert sorted(t["data"]["user_id"] for t in tasks) == ["alice", "mallory"]
    [alice] = [t for t in tasks if t["data"]["user_id"] == "alice"]
    assert alice["data"] == before["data"]  # alice's task unchanged
    [mallory] = [t for t in tasks if t["data"]["user_id"] == "mallory"]
    assert "my private question" not in str(mallory["data"])


def test_a_deleted_project_is_created_again_and_nothing_is_dead_lettered(admin, label_studio, tmp_path, project_name):
    pipeline = Pipeline(Settings(url=label_studio.url, api_key=label_studio.api_key, state_dir=tmp_path))
    project = Project(project_name).to_dict()
    for i in range(3):
        pipeline.submit(CaptureRecord(project=dict(project), prompt=f"first {i}", response="a"))
    assert pipeline.flush(60)
    first, _ = project_tasks(admin, project_name)
    admin.delete_project(first["id"])

    later = [CaptureRecord(project=dict(project), prompt=f"later {i}", response="a") for i in range(64)]
    for record in later:
        pipeline.submit(record)
    assert pipeline.flush(60)
    again, tasks = project_tasks(admin, project_name)
    assert again["id"] != first["id"]
    assert sorted(t["data"]["capture_id"] for t in tasks) == sorted(r.capture_id for r in later)
    assert pipeline.health()["dead_letters"] == 0
    pipeline.close()


def test_a_feedback_flood_never_delays_captures(admin, label_studio, tmp_path, project_name):
    pipeline = Pipeline(Settings(url=label_studio.url, api_key=label_studio.api_key, state_dir=tmp_path, deliver=False))
    flooded = Project(f"{project_name}-fb").to_dict()
    feedback = [
        CaptureRecord(
            project=dict(flooded),
            prompt="",
            kind="feedback",
            data={"feedback": {"score": 1.0, "comment": None, "at": "2026-01-01T00:00:00+00:00"}},
            target={"request_id": uuid.uuid4().hex, "session_id": None, "user_id": None},
        )
        for _ in range(200)
    ]
    capture = CaptureRecord(project=Project(project_name).to_dict(), prompt="the capture", response="a")
    assert pipeline.outbox.put_many([*feedback, capture]) == 201

    pipeline.delivery.step()  # one step: the capture goes first, the feedback gets its small share
    _, tasks = project_tasks(admin, project_name)
    assert [t["data"]["capture_id"] for t in tasks] == [capture.capture_id]
    assert admin.find_project(flooded["title"]) is None  # feedback never creates a project
    pipeline.close()


def test_a_graph_captured_first_does_not_take_the_middlewares_settings(admin, label_studio, tmp_path, project_name):
    with serve("tests.apps.settings_app:app", label_studio, tmp_path / "state", SETTINGS_PROJECT=project_name) as app:
        session = f"s-{uuid.uuid4().hex[:8]}"
        chat(app, "olga", session, "where is my order ORD-123456?")
        wait_delivered(app)
    [task] = tasks_where(admin, project_name, session_id=session)
    assert "ORD-123456" not in str(task["data"])
    assert "<ORDER>" in str(task["data"]["prompt"])


def test_the_postgres_outbox_isolates_bad_records(admin, label_studio, pg_url, project_name):
    def hook(record):
        if record.prompt == "poison":
            raise RuntimeError("boom")
        return record

    settings = Settings(url=label_studio.url, api_key=label_studio.api_key, outbox=pg_url, before_capture=hook)
    pipeline = Pipeline(settings)
    project = Project(project_name, mode="chat").to_dict()
    records = [
        CaptureRecord(project=dict(project), prompt=[{"role": "user", "content": "bad \ud800"}], session="s\udc00"),
        CaptureRecord(project=dict(project), prompt="poison"),
        CaptureRecord(project=dict(project), prompt=[{"role": "user", "content": "fine"}], session="s2"),
    ]
    for record in records:
        pipeline.submit(record)
    assert pipeline.flush(60)
    _, tasks = project_tasks(admin, project_name)
    assert sorted(t["data"]["prompt"][0]["content"] for t in tasks) == ["bad \ufffd", "fine"]
    [(_, dead, reason, _)] = pipeline.outbox.dead_letters()
    assert (dead.capture_id, reason) == (records[1].capture_id, "before_capture failed: RuntimeError")
    pipeline.close()
