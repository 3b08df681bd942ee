"""End-user feedback through the example app's endpoint, onto the right Label Studio task."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from conftest import FEEDBACK_SECRET, project_tasks, serve, tasks_where, wait_delivered
from faults import FaultProxy
from test_middleware import CHATS, chat

from langchain_label_studio.feedback import FeedbackTokens

TOKEN_HEADER = "x-label-studio-feedback-token"


def joke(app, user: str, topic: str, session: str | None = None):
    headers = {"X-User-ID": user, **({"X-Session-ID": session} if session else {})}
    resp = app.post("/joke/invoke", json={"input": {"topic": topic}}, headers=headers)
    assert resp.status_code == 200
    return resp


def feedback(app, token, score=1, comment=None):
    return app.post("/label-studio/feedback", json={"token": token, "score": score, "comment": comment})


def test_feedback_lands_on_the_right_prompt_task(admin, example_app):
    user = f"fb-{uuid.uuid4().hex[:6]}"
    first = joke(example_app, user, "owls")
    joke(example_app, user, "bees")
    resp = feedback(example_app, first.headers[TOKEN_HEADER], score=0, comment="not funny")
    assert resp.status_code == 202, resp.text
    wait_delivered(example_app)

    tasks = {t["data"]["prompt"]: t for t in tasks_where(admin, "Jokes", user_id=user)}
    owls, bees = tasks["Tell me a joke about owls"], tasks["Tell me a joke about bees"]
    [entry] = owls["data"]["feedback"]
    assert (entry["score"], entry["comment"]) == (0.0, "not funny")
    assert owls["data"]["feedback_score"] == 0.0 and owls["data"]["feedback_count"] == 1
    assert owls["data"]["feedback_mean"] == 0.0
    assert "feedback" not in bees["data"]


def test_feedback_on_a_chat_session_keeps_every_entry(admin, example_app):
    session = f"s-{uuid.uuid4().hex[:8]}"
    t1 = chat(example_app, "hana", session, "hello").headers[TOKEN_HEADER]
    t2 = chat(example_app, "hana", session, "and again").headers[TOKEN_HEADER]
    assert feedback(example_app, t1, score=True).status_code == 202
    wait_delivered(example_app)
    assert feedback(example_app, t2, score=0.5, comment="meh").status_code == 202
    chat(example_app, "hana", session, "third turn")  # a later turn keeps the feedback
    wait_delivered(example_app)

    [task] = tasks_where(admin, "Support chats", session_id=session)
    assert [(e["score"], e["comment"]) for e in task["data"]["feedback"]] == [(1.0, None), (0.5, "meh")]
    assert task["data"]["feedback_count"] == 2 and task["data"]["feedback_mean"] == 0.75
    assert [m["content"] for m in task["data"]["prompt"] if m["role"] == "user"] == ["hello", "and again", "third turn"]


def test_a_session_id_is_no_key_to_another_users_task(admin, example_app):
    session = f"s-{uuid.uuid4().hex[:8]}"
    alice_token = chat(example_app, "alice", session, "my own question").headers[TOKEN_HEADER]
    wait_delivered(example_app)
    [alice_before] = tasks_where(admin, CHATS, session_id=session, user_id="alice")

    refused = example_app.post(
        "/chat/invoke", json={"bogus": 1}, headers={"X-User-ID": "alice", "X-Session-ID": session}
    )
    assert refused.status_code == 422 and TOKEN_HEADER not in refused.headers

    mallory = chat(example_app, "mallory", session, "hello?")
    assert feedback(example_app, mallory.headers[TOKEN_HEADER], score=0, comment="vandalism").status_code == 202
    wait_delivered(example_app)
    [alice_after] = tasks_where(admin, CHATS, session_id=session, user_id="alice")
    [mallory_task] = tasks_where(admin, CHATS, session_id=session, user_id="mallory")
    assert alice_after["id"] == alice_before["id"] != mallory_task["id"]
    assert alice_after["data"] == alice_before["data"]
    assert [(e["score"], e["comment"]) for e in mallory_task["data"]["feedback"]] == [(0.0, "vandalism")]
    assert [m["content"] for m in mallory_task["data"]["prompt"] if m["role"] == "user"] == ["hello?"]

    assert feedback(example_app, alice_token, score=1, comment="helpful").status_code == 202
    wait_delivered(example_app)
    [alice_task] = tasks_where(admin, CHATS, session_id=session, user_id="alice")
    assert [(e["score"], e["comment"]) for e in alice_task["data"]["feedback"]] == [(1.0, "helpful")]


def test_prompt_feedback_lands_on_its_request_even_in_a_session(admin, example_app):
    user, session = f"ps-{uuid.uuid4().hex[:6]}", f"s-{uuid.uuid4().hex[:8]}"
    first = joke(example_app, user, "owls", session=session)
    joke(example_app, user, "bees", session=session)
    assert feedback(example_app, first.headers[TOKEN_HEADER], score=1, comment="owls!").status_code == 202
    wait_delivered(example_app)

    tasks = {t["data"]["prompt"]: t for t in tasks_where(admin, "Jokes", user_id=user)}
    owls, bees = tasks["Tell me a joke about owls"], tasks["Tell me a joke about bees"]
    assert owls["data"]["session_id"] == bees["data"]["session_id"] == session
    assert [(e["score"], e["comment"]) for e in owls["data"]["feedback"]] == [(1.0, "owls!")]
    assert "feedback" not in bees["data"]


def test_a_flood_of_fresh_tokens_is_held_by_the_client_limit(admin, example_app):
    user = f"flood-{uuid.uuid4().hex[:6]}"
    fresh = [joke(example_app, user, f"topic {i}").headers[TOKEN_HEADER] for i in range(40)]
    codes = [feedback(example_app, fresh[i % len(fresh)], score=1).status_code for i in range(400)]
    assert set(codes) == {202, 429}
    assert codes.count(202) <= 30 and codes[:30] == [202] * 30
    wait_delivered(example_app)
    tasks = tasks_where(admin, "Jokes", user_id=user)
    assert sum(t["data"].get("feedback_count", 0) for t in tasks) == codes.count(202)


def test_a_token_of_another_deployment_is_refused(label_studio, admin, example_app, tmp_path):
    user = f"dep-{uuid.uuid4().hex[:6]}"
    token = joke(example_app, user, "otters").headers[TOKEN_HEADER]
    wait_delivered(example_app)
    proxy = FaultProxy(label_studio.port).start()  # the same Label Studio under another URL: another deployment
    try:
        with serve("example_app.app:app", label_studio, tmp_path / "other", LABEL_STUDIO_URL=proxy.url) as other:
            resp = feedback(other, token, score=0)
            assert resp.status_code == 403, resp.text
            wait_delivered(other)
    finally:
        proxy.close()
    [task] = tasks_where(admin, "Jokes", user_id=user)
    assert "feedback" not in task["data"]

    with serve("example_app.app:app", label_studio, tmp_path / "replica") as replica:  # same deployment
        assert feedback(replica, token, score=1).status_code == 202
        wait_delivered(replica)
    [task] = tasks_where(admin, "Jokes", user_id=user)
    assert task["data"]["feedback_count"] == 1


def test_feedback_while_label_studio_is_down(label_studio, admin, tmp_path):
    proxy = FaultProxy(label_studio.port).start()
    user = f"down-{uuid.uuid4().hex[:6]}"
    with serve("example_app.app:app", label_studio, tmp_path / "state", LABEL_STUDIO_URL=proxy.url) as app:
        token = joke(app, user, "volcanoes").headers[TOKEN_HEADER]
        wait_delivered(app)
        proxy.stop()
        assert feedback(app, token, score=1, comment="great").status_code == 202
        assert app.get("/label-studio/health").json()["pending"] == 1
        proxy.start()
        wait_delivered(app, timeout=120)
    proxy.close()
    [task] = tasks_where(admin, "Jokes", user_id=user)
    assert [(e["score"], e["comment"]) for e in task["data"]["feedback"]] == [(1.0, "great")]


def _claims(token: str) -> list:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _tamper(token: str, **changes) -> str:
    """The token with claims changed and its signature kept."""
    _, _, signature = token.split(".")
    names = ["r", "route", "u", "s", "iat", "exp", "dep"]
    claims = dict(zip(names, _claims(token), strict=True))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(list(claims.values())).encode()).rstrip(b"=").decode()
    return f"v2.{forged}.{signature}"


@pytest.mark.parametrize(
    "case,status",
    [
        ("forged", 403),
        ("tampered", 403),
        ("other_capture", 403),
        ("expired", 401),
        ("v1", 400),
        ("malformed", 400),
        ("not_json", 400),
        ("bad_score", 422),
        ("long_comment", 422),
    ],
)
def test_bad_feedback_is_refused_and_changes_nothing(admin, example_app, case, status):
    user = f"bad-{uuid.uuid4().hex[:6]}"
    mine = joke(example_app, user, "cats").headers[TOKEN_HEADER]
    other = joke(example_app, user, "dogs")
    wait_delivered(example_app)
    before = {t["id"]: t["data"] for t in tasks_where(admin, "Jokes", user_id=user)}

    deployment = _claims(mine)[6]
    other_id = other.headers["x-request-id"]
    expired = FeedbackTokens(FEEDBACK_SECRET.encode(), ttl_s=-10)
    bodies = {
        "forged": {
            "token": FeedbackTokens(b"wrong secret").issue(request_id=other_id, route="/joke", deployment=deployment),
            "score": 1,
        },
        "tampered": {"token": _tamper(mine, u="someone-else"), "score": 1},
        "other_capture": {"token": _tamper(mine, r=other_id), "score": 1},
        "expired": {"token": expired.issue(request_id=other_id, route="/joke", deployment=deployment), "score": 1},
        "v1": {"token": "v1." + mine.split(".", 1)[1], "score": 1},
        "malformed": {"token": "abc", "score": 1},
        "bad_score": {"token": mine, "score": 7},
        "long_comment": {"token": mine, "score": 1, "comment": "x" * 2001},
    }
    if case == "not_json":
        resp = example_app.post(
            "/label-studio/feedback", content=b"{nope", headers={"content-type": "application/json"}
        )
    else:
        resp = example_app.post("/label-studio/feedback", json=bodies[case])
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]
    wait_delivered(example_app)
    after = {t["id"]: t["data"] for t in tasks_where(admin, "Jokes", user_id=user)}
    assert after == before


def test_feedback_is_rate_limited_per_token(example_app):
    token = joke(example_app, "rate", "limits").headers[TOKEN_HEADER]
    codes = [feedback(example_app, token, score=1).status_code for _ in range(7)]
    assert codes[:5] == [202] * 5 and codes[5:] == [429, 429]


def test_token_where_langserve_puts_its_feedback_tokens(admin, ls_env, project_name, monkeypatch):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from langchain_core.runnables import RunnableLambda
    from langserve import add_routes

    from langchain_label_studio import LabelStudioMiddleware
    from langchain_label_studio.pipeline import get_pipeline
    from langchain_label_studio.settings import Settings

    app = FastAPI()
    add_routes(app, RunnableLambda(lambda x: f"echo {x['text']}"), path="/echo")
    app.add_middleware(
        LabelStudioMiddleware, routes={"/echo": project_name}, feedback_secret=FEEDBACK_SECRET, feedback_in_body=True
    )
    with TestClient(app) as client:
        resp = client.post("/echo/invoke", json={"input": {"text": "hi"}})
        assert resp.status_code == 200 and resp.json()["output"] == "echo hi"
        [entry] = resp.json()["metadata"]["feedback_tokens"]
        assert entry["key"] == "label_studio" and entry["token"] == resp.headers[TOKEN_HEADER]
        assert int(resp.headers["content-length"]) == len(resp.content)
        batch = client.post("/echo/batch", json={"inputs": [{"text": "a"}]})
        [per_input] = batch.json()["metadata"]["responses"]
        assert per_input["feedback_tokens"][0]["token"] == batch.headers[TOKEN_HEADER]
        assert client.post("/label-studio/feedback", json={"token": entry["token"], "score": 1}).status_code == 202
    assert get_pipeline(Settings()).flush(60)
    _, tasks = project_tasks(admin, project_name)
    hi = next(t for t in tasks if t["data"]["prompt"] == "hi")
    assert hi["data"]["feedback_count"] == 1
