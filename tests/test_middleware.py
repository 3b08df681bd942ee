"""The example LangServe app over real HTTP, capturing into a real Label Studio."""

from __future__ import annotations

import json
import uuid

from conftest import prefilled, tasks_where, wait_delivered

CHATS = "Support chats"


def chat(app, user: str, session: str, text: str, endpoint: str = "invoke"):
    body = {"input": {"messages": [{"type": "human", "content": text}]}}
    resp = app.post(f"/chat/{endpoint}", json=body, headers={"X-User-ID": user, "X-Session-ID": session})
    assert resp.status_code == 200, resp.text
    return resp


def test_three_turn_chat_invoke_is_one_task(admin, example_app):
    session = f"s-{uuid.uuid4().hex[:8]}"
    ids = []
    for text in ["Hi, I need help", "What is the weather in Paris?", "Thanks!"]:
        ids.append(chat(example_app, "alice", session, text).headers["x-request-id"])
    wait_delivered(example_app)

    [task] = tasks_where(admin, CHATS, session_id=session)
    data = task["data"]
    assert data["prompt"] == [
        {"role": "user", "content": "Hi, I need help"},
        {"role": "assistant", "content": "(turn 1) You said: Hi, I need help"},
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": '→ get_weather({"city": "Paris"})',
            "tool_calls": [
                {"id": data["prompt"][3]["tool_calls"][0]["id"], "name": "get_weather", "args": {"city": "Paris"}}
            ],
        },
        {
            "role": "tool",
            "content": "[get_weather] Sunny and 21°C in Paris.",
            "tool_call_id": data["prompt"][3]["tool_calls"][0]["id"],
            "name": "get_weather",
        },
        {"role": "assistant", "content": "Here is what I found: Sunny and 21°C in Paris."},
        {"role": "user", "content": "Thanks!"},
    ]
    assert prefilled(task) == "(turn 3) You said: Thanks!"
    assert (data["user_id"], data["session_id"], data["route"]) == ("alice", session, "/chat")
    assert data["request_id"] == ids[-1]
    assert data["model"] == "deterministic-fake"
    assert [m["role"] for m in data["state"]["messages"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
    ]
    assert data["captured_at"].endswith("+00:00")


def test_three_turn_chat_stream_is_one_task(admin, example_app):
    session = f"s-{uuid.uuid4().hex[:8]}"
    for text in ["one", "two", "three"]:
        resp = chat(example_app, "bob", session, text, endpoint="stream")
        assert "event: end" in resp.text
    wait_delivered(example_app)

    [task] = tasks_where(admin, CHATS, session_id=session)
    assert [(m["role"], m["content"]) for m in task["data"]["prompt"]] == [
        ("user", "one"),
        ("assistant", "(turn 1) You said: one"),
        ("user", "two"),
        ("assistant", "(turn 2) You said: two"),
        ("user", "three"),
    ]
    assert prefilled(task) == "(turn 3) You said: three"
    assert task["data"]["user_id"] == "bob"


def test_interleaved_sessions_of_two_users_stay_apart(admin, example_app):
    a, b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    for i in range(3):
        chat(example_app, "alice", a, f"alice {i}")
        chat(example_app, "bob", b, f"bob {i}")
    wait_delivered(example_app)

    [ta] = tasks_where(admin, CHATS, session_id=a)
    [tb] = tasks_where(admin, CHATS, session_id=b)
    assert [m["content"] for m in ta["data"]["prompt"] if m["role"] == "user"] == ["alice 0", "alice 1", "alice 2"]
    assert [m["content"] for m in tb["data"]["prompt"] if m["role"] == "user"] == ["bob 0", "bob 1", "bob 2"]
    assert (ta["data"]["user_id"], tb["data"]["user_id"]) == ("alice", "bob")
    assert prefilled(ta) == "(turn 3) You said: alice 2"


def test_prompt_route_one_task_per_request(admin, example_app):
    user = f"u-{uuid.uuid4().hex[:8]}"
    resp = example_app.post("/joke/invoke", json={"input": {"topic": "owls"}}, headers={"X-User-ID": user})
    assert resp.status_code == 200
    request_id = resp.headers["x-request-id"]
    resp = example_app.post(
        "/joke/batch", json={"inputs": [{"topic": "bees"}, {"topic": "ants"}]}, headers={"X-User-ID": user}
    )
    assert resp.status_code == 200
    example_app.get("/joke/input_schema")
    example_app.get("/joke/playground/")
    wait_delivered(example_app)

    tasks = tasks_where(admin, "Jokes", user_id=user)
    assert sorted(t["data"]["prompt"] for t in tasks) == [
        "Tell me a joke about ants",
        "Tell me a joke about bees",
        "Tell me a joke about owls",
    ]
    by_prompt = {t["data"]["prompt"]: t for t in tasks}
    owls = by_prompt["Tell me a joke about owls"]
    assert prefilled(owls) == "Why did the owls cross the road? To get to the other side!"
    assert owls["data"]["request_id"] == request_id
    assert owls["data"]["route"] == "/joke" and owls["data"]["session_id"] is None
    assert tasks_where(admin, CHATS, user_id=user) == []


def test_annotated_session_continues_in_a_new_task(admin, example_app):
    session = f"s-{uuid.uuid4().hex[:8]}"
    chat(example_app, "carol", session, "first")
    wait_delivered(example_app)
    [task] = tasks_where(admin, CHATS, session_id=session)
    resp = admin._call(
        "POST",
        f"/api/tasks/{task['id']}/annotations/",
        "annotating",
        json={
            "result": [
                {
                    "from_name": "response",
                    "to_name": "dialogue",
                    "type": "textarea",
                    "value": {"text": ["A better first answer"]},
                }
            ]
        },
    )
    assert resp.status_code == 201
    chat(example_app, "carol", session, "second")
    wait_delivered(example_app)

    first, second = tasks_where(admin, CHATS, session_id=session)
    assert first["id"] == task["id"]
    assert [m["content"] for m in first["data"]["prompt"]] == ["first"]
    assert first["annotations"][0]["result"][0]["value"]["text"] == ["A better first answer"]
    assert [m["content"] for m in second["data"]["prompt"]] == ["first", "(turn 1) You said: first", "second"]
    assert prefilled(second) == "(turn 2) You said: second"


def test_health_endpoint_counts(example_app):
    health = example_app.get("/label-studio/health").json()
    assert {"pending", "delivered", "dead_letters", "last_error", "oldest_pending_s"} <= set(health)
    json.dumps(health)


def test_prometheus_metrics(example_app):
    chat(example_app, "ivy", f"s-{uuid.uuid4().hex[:8]}", "count me")
    wait_delivered(example_app)
    resp = example_app.get("/label-studio/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    delivered = [line for line in resp.text.splitlines() if line.startswith("langchain_label_studio_delivered_total{")]
    assert delivered and float(delivered[0].rsplit(" ", 1)[1]) >= 1
    assert "langchain_label_studio_pending{" in resp.text
