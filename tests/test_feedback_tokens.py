"""Feedback tokens and the feedback endpoint, without a Label Studio: the records are caught
where the pipeline would queue them."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from langchain_core.runnables import RunnableLambda
from langserve import add_routes
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser, SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware

from langchain_label_studio import LabelStudioMiddleware, Project
from langchain_label_studio.capture import sampled
from langchain_label_studio.feedback import (
    FeedbackClaims,
    FeedbackError,
    FeedbackTokens,
    deployment_id,
    parse_feedback,
)
from langchain_label_studio.identity import session_ref
from langchain_label_studio.label_config import DEFAULT_CONFIGS
from langchain_label_studio.pipeline import get_pipeline
from langchain_label_studio.record import CaptureRecord
from langchain_label_studio.settings import Settings

SECRET = "unit-test-feedback-secret"
TOKEN_HEADER = "x-label-studio-feedback-token"
UNREACHABLE = "http://127.0.0.1:9"
CHAT = Project("Unit chats", mode="chat")
PROMPTS = Project("Unit prompts")


# -- tokens ---------------------------------------------------------------------------------
def tokens(ttl_s: float = 3600, secret: str = SECRET) -> FeedbackTokens:
    return FeedbackTokens(secret.encode(), ttl_s)


def issue(t: FeedbackTokens | None = None, **claims) -> str:
    args = {"request_id": uuid.uuid4().hex, "route": "/chat", "deployment": "dep", "user_id": "u", "session_id": "s"}
    return (t or tokens()).issue(**{**args, **claims})


def claims_of(token: str) -> list:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def with_claims(token: str, **changes) -> str:
    """The token with its payload changed and its signature kept (a forgery)."""
    version, _, signature = token.split(".")
    claims = dict(zip(["r", "route", "u", "s", "iat", "exp", "dep"], claims_of(token), strict=True))
    claims.update(changes)
    payload = base64.urlsafe_b64encode(json.dumps(list(claims.values())).encode()).rstrip(b"=").decode()
    return f"{version}.{payload}.{signature}"


def test_round_trip() -> None:
    t = tokens()
    token = t.issue(request_id="r1", route="/chat", deployment="d", user_id="alice", session_id="s1", now=1000)
    assert token.startswith("v2.")
    assert t.verify(token, now=1001) == FeedbackClaims("r1", "/chat", "alice", "s1", 1000, 4600, "d")
    prompt = t.verify(t.issue(request_id="r2", route="/joke", deployment="d"))
    assert (prompt.user_id, prompt.session_id) == (None, None)
    assert prompt.target_key() == "request:r2"
    assert t.verify(token, now=1001).target_key() == "session:alice\x1fs1"


def test_tampered_forged_and_expired_tokens() -> None:
    token = issue()
    for forged in (
        with_claims(token, r="someone-elses-request"),
        with_claims(token, u="mallory"),
        with_claims(token, exp=int(time.time()) + 10**6),
        issue(tokens(secret="another secret")),
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
    ):
        with pytest.raises(FeedbackError) as err:
            tokens().verify(forged)
        assert err.value.status == 403
    with pytest.raises(FeedbackError) as err:
        tokens(ttl_s=-10).verify(issue(tokens(ttl_s=-10)))
    assert err.value.status == 401


def test_v1_and_malformed_tokens_are_400() -> None:
    v1 = "v1." + base64.urlsafe_b64encode(b'{"p":{"mode":"prompt"},"r":"x","s":null,"e":9999999999}').decode()
    for bad in (v1 + ".abc", "abc", "", "v2..", "v2.e30", 12, None, ["v2"], "v2.e30." + "é" * 43, "v2.e30." + "A" * 44):
        with pytest.raises(FeedbackError) as err:
            tokens().verify(bad)
        assert err.value.status == 400, bad


def test_tokens_stay_short_with_long_ids() -> None:
    token = issue(user_id="u" * 256, session_id="s" * 256, route="/a-rather-long/route/prefix")
    assert len(token) < 1000
    assert tokens().verify(token).session_id == "s" * 256


def test_deployment_id_ignores_credentials_and_tells_deployments_apart() -> None:
    assert deployment_id("http://a:pw@ls:8080", "/chat", CHAT) == deployment_id("http://ls:8080", "/chat", CHAT)
    assert deployment_id("http://ls:8080", "/chat", CHAT) != deployment_id("http://other:8080", "/chat", CHAT)
    assert deployment_id("http://ls:8080", "/chat", CHAT) != deployment_id("http://ls:8080", "/talk", CHAT)
    assert deployment_id("http://ls:8080", "/chat", CHAT) != deployment_id(
        "http://ls:8080", "/chat", Project("Other chats", mode="chat")
    )


def test_parse_feedback_bounds() -> None:
    assert parse_feedback(b'{"token": "t", "score": true}').score == 1.0
    assert parse_feedback(b'{"token": "t", "score": 0}').score == 0.0
    assert parse_feedback(b'{"token": "t", "score": 0.25, "comment": "ok"}').comment == "ok"
    lone = parse_feedback(b'{"token": "t", "score": 1, "comment": "a \\ud800 b \\u0000c"}')
    assert lone.comment == "a \ufffd b c"
    lone.comment.encode("utf-8")  # valid UTF-8 now


# -- the endpoint, through the ASGI app -----------------------------------------------------
def echo(value: dict) -> str:
    return f"echo: {value['text']}"


class NamedUsers(AuthenticationBackend):
    """``Authorization: Bearer <name>`` authenticates ``name`` (late identity)."""

    async def authenticate(self, conn):
        auth = conn.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            return AuthCredentials(["authenticated"]), SimpleUser(auth.removeprefix("Bearer "))
        return None


@pytest.fixture
def unit_env(tmp_path, monkeypatch) -> Iterator[list[CaptureRecord]]:
    """A pipeline pointed at an unreachable Label Studio; yields the records it was handed."""
    monkeypatch.setenv("LABEL_STUDIO_URL", UNREACHABLE)
    monkeypatch.setenv("LABEL_STUDIO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("LABEL_STUDIO_DELIVERY", "off")
    monkeypatch.delenv("LABEL_STUDIO_FEEDBACK_SECRET", raising=False)
    records: list[CaptureRecord] = []
    pipeline = get_pipeline(Settings())
    monkeypatch.setattr(pipeline, "submit", lambda record: records.append(record) or True)
    yield records


def build(routes=None, **options) -> FastAPI:
    app = FastAPI()
    add_routes(app, RunnableLambda(echo), path="/echo")
    add_routes(app, RunnableLambda(echo), path="/chat")
    app.add_middleware(AuthenticationMiddleware, backend=NamedUsers())
    app.add_middleware(
        LabelStudioMiddleware,
        routes=routes if routes is not None else {"/echo": PROMPTS, "/chat": CHAT},
        **{"feedback_secret": SECRET, **options},
    )
    return app


@pytest.fixture
def client(unit_env) -> Iterator[TestClient]:
    with TestClient(build()) as c:
        yield c


def ask(client: TestClient, route: str = "/echo", text: str = "hi", **headers: str):
    headers = {k.replace("_", "-"): v.encode("utf-8") for k, v in headers.items()}
    return client.post(f"{route}/invoke", json={"input": {"text": text}}, headers=headers)


def post(client: TestClient, token: str, score=1, comment=None):
    return client.post("/label-studio/feedback", json={"token": token, "score": score, "comment": comment})


def feedback_records(records: list[CaptureRecord]) -> list[CaptureRecord]:
    return [r for r in records if r.kind == "feedback"]


def test_prompt_token_names_the_servers_request_only(client, unit_env) -> None:
    resp = ask(client, X_Request_ID="client-id-1", X_Session_ID="sess-1", X_User_ID="ann")
    assert resp.status_code == 200
    request_id = resp.headers["x-request-id"]
    assert request_id != "client-id-1" and len(request_id) == 32
    claims = tokens().verify(resp.headers[TOKEN_HEADER])
    assert (claims.request_id, claims.route, claims.user_id, claims.session_id) == (request_id, "/echo", "ann", None)

    assert post(client, resp.headers[TOKEN_HEADER], score=0.5, comment="fine").status_code == 202
    [capture] = [r for r in unit_env if r.kind == "capture"]
    assert capture.data["request_id"] == request_id and capture.data["client_request_id"] == "client-id-1"
    [record] = feedback_records(unit_env)
    assert record.target == {"request_id": request_id, "session": None}
    assert record.project == PROMPTS.to_dict()
    assert record.prompt == "" and (record.data["feedback"]["score"], record.data["feedback"]["comment"]) == (
        0.5,
        "fine",
    )


def test_a_repeated_identity_header_counts_once_by_its_first_value(client, unit_env) -> None:
    headers = [("X-User-ID", "alice"), ("X-User-ID", "mallory"), ("X-Session-ID", "S"), ("X-Session-ID", "T")]
    resp = client.post("/chat/invoke", json={"input": {"text": "hi"}}, headers=headers)
    claims = tokens().verify(resp.headers[TOKEN_HEADER])
    assert (claims.user_id, claims.session_id) == ("alice", "S")  # what the app reads (request.headers)
    [capture] = [r for r in unit_env if r.kind == "capture"]
    assert (capture.data["user_id"], capture.data["session_id"]) == ("alice", "S")


def test_chat_token_names_the_users_session(client, unit_env) -> None:
    resp = ask(client, "/chat", X_Session_ID="S", X_User_ID="alice")
    claims = tokens().verify(resp.headers[TOKEN_HEADER])
    assert (claims.user_id, claims.session_id) == ("alice", "S")
    assert post(client, resp.headers[TOKEN_HEADER]).status_code == 202
    [record] = feedback_records(unit_env)
    # the session as a digest of the ids, as the outbox keeps it: never the user and session ids
    assert record.target == {"request_id": resp.headers["x-request-id"], "session": session_ref("alice", "S")}
    assert record.project == CHAT.to_dict() and record.project["label_config"] is None


def test_authenticated_user_is_in_the_token(client) -> None:
    resp = ask(client, "/chat", X_Session_ID="S", X_User_ID="spoofed", Authorization="Bearer erin")
    assert tokens().verify(resp.headers[TOKEN_HEADER]).user_id == "erin"


def test_client_request_ids_are_never_keys(client, unit_env) -> None:
    resp = ask(client, X_Request_ID="client-id.1:a")
    assert resp.headers["x-request-id"] != "client-id.1:a" and len(resp.headers["x-request-id"]) == 32
    for sent in ("has space", "x" * 129, "a/b"):
        assert ask(client, X_Request_ID=sent).status_code == 200
    assert [r.data.get("client_request_id") for r in unit_env] == ["client-id.1:a", None, None, None]
    [middleware] = [m for m in client.app.user_middleware if m.cls is LabelStudioMiddleware]
    mw = LabelStudioMiddleware(client.app, **middleware.kwargs)
    for raw in (b"ok-id\n", b"ok-id\r\n", b"\nok-id"):  # a trailing newline is not a safe id
        context = mw._context({}, {b"x-request-id": raw}, "/echo", PROMPTS)
        assert "client_request_id" not in context.extra and len(context.request_id) == 32


def test_identity_headers_are_cleaned(client, unit_env) -> None:
    resp = ask(client, "/chat", X_User_ID="al\x1b[31mice\u202e", X_Session_ID="S\u200b1\x07")
    claims = tokens().verify(resp.headers[TOKEN_HEADER])
    assert (claims.user_id, claims.session_id) == ("al[31mice", "S1")
    [capture] = [r for r in unit_env if r.kind == "capture"]
    assert (capture.data["user_id"], capture.data["session_id"]) == ("al[31mice", "S1")


def test_no_token_for_a_refused_request(client) -> None:
    resp = client.post("/chat/invoke", json={"bogus": 1}, headers={"X-Session-ID": "victim", "X-User-ID": "alice"})
    assert resp.status_code == 422
    assert TOKEN_HEADER not in resp.headers and "x-request-id" in resp.headers


def test_no_token_for_an_opted_out_request(client) -> None:
    resp = ask(client, X_Label_Studio_Capture="off")
    assert resp.status_code == 200 and TOKEN_HEADER not in resp.headers


def test_no_token_for_a_sampled_out_request(unit_env) -> None:
    chat = Project("Sampled chats", mode="chat", sample_rate=0.5)
    sessions = [f"s{i}" for i in range(40)]
    inside = next(s for s in sessions if sampled(s, 0.5))
    outside = next(s for s in sessions if not sampled(s, 0.5))
    with TestClient(build({"/chat": chat, "/echo": PROMPTS}, sample_rate=0.0)) as c:
        assert TOKEN_HEADER not in ask(c, "/echo").headers
        assert TOKEN_HEADER not in ask(c, "/chat", X_Session_ID=outside).headers
        assert TOKEN_HEADER in ask(c, "/chat", X_Session_ID=inside).headers
    assert [r.data["session_id"] for r in unit_env if r.kind == "capture"] == [inside]


def test_no_token_when_no_run_is_recorded(unit_env) -> None:
    """A mapped route that runs no chain, or whose run opts out in its metadata, makes no task: no token."""
    app = build({"/echo": PROMPTS, "/chat": CHAT, "/quiet": PROMPTS})

    @app.post("/echo/plain")
    def plain() -> dict[str, str]:  # a mapped route, but no LangChain run
        return {"ok": "yes"}

    quiet = RunnableLambda(echo).with_config(metadata={"label_studio_capture": False})
    add_routes(app, quiet, path="/quiet")
    with TestClient(app) as c:
        assert TOKEN_HEADER not in c.post("/echo/plain").headers
        assert TOKEN_HEADER not in ask(c, "/quiet").headers
        assert TOKEN_HEADER in ask(c, "/echo").headers
        stream = c.post("/echo/stream", json={"input": {"text": "hi"}})  # its run starts after the response
        assert TOKEN_HEADER in stream.headers
    assert len([r for r in unit_env if r.kind == "capture"]) == 2


def test_no_feedback_without_a_secret(unit_env) -> None:
    with TestClient(build(feedback_secret=None)) as c:
        assert TOKEN_HEADER not in ask(c).headers
        assert post(c, issue()).status_code == 404


def test_lone_surrogates_in_a_comment_are_replaced(client, unit_env) -> None:
    token = ask(client).headers[TOKEN_HEADER]
    body = b'{"token": "%s", "score": 1, "comment": "odd \\udc80 one"}' % token.encode()
    resp = client.post("/label-studio/feedback", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 202
    [record] = feedback_records(unit_env)
    assert record.data["feedback"]["comment"] == "odd \ufffd one"


def _bodies(token: str) -> dict[str, tuple[bytes, int]]:
    t = token.encode()
    return {
        "non_ascii_signature": (json.dumps({"token": token[:-1] + "é", "score": 1}).encode(), 400),
        "garbage_signature": (json.dumps({"token": token[:-43] + "!" * 43, "score": 1}).encode(), 400),
        "deep_nesting": (b"[" * 8000, 400),
        "deep_nesting_in_object": (b'{"token": "' + t + b'", "score": ' + b"[" * 8000 + b"]" * 8000 + b"}", 400),
        "huge_int_score": (b'{"token": "' + t + b'", "score": 1' + b"0" * 400 + b"}", 422),
        "huger_int_score": (b'{"token": "' + t + b'", "score": 1' + b"0" * 5000 + b"}", 400),
        "nan_score": (b'{"token": "' + t + b'", "score": NaN}', 400),
        "infinity_score": (b'{"token": "' + t + b'", "score": Infinity}', 400),
        "overflowing_float_score": (b'{"token": "' + t + b'", "score": 1e400}', 422),
        "string_score": (b'{"token": "' + t + b'", "score": "1"}', 422),
        "missing_score": (b'{"token": "' + t + b'"}', 422),
        "list_comment": (b'{"token": "' + t + b'", "score": 1, "comment": ["x"]}', 422),
        "long_comment": (json.dumps({"token": token, "score": 1, "comment": "x" * 2001}).encode(), 422),
        "number_token": (b'{"token": 12, "score": 1}', 400),
        "no_token": (b'{"score": 1}', 400),
        "list_body": (b'["' + t + b'", 1]', 400),
        "string_body": (b'"' + t + b'"', 400),
        "number_body": (b"1", 400),
        "null_body": (b"null", 400),
        "invalid_utf8": (b'{"token": "' + t + b'", "score": 1, "comment": "\xff\xfe"}', 400),
        "empty": (b"", 400),
        "whitespace": (b"   ", 400),
        "not_json": (b"{nope", 400),
        "huge": (b'{"token": "' + t + b'", "comment": "' + b"x" * 20_000 + b'", "score": 1}', 413),
        "v1_token": (json.dumps({"token": "v1.e30." + "A" * 43, "score": 1}).encode(), 400),
    }


@pytest.mark.parametrize("case", sorted(_bodies("v2.x.y")))
def test_malformed_feedback_is_a_4xx(client, unit_env, case) -> None:
    token = ask(client).headers[TOKEN_HEADER]
    body, status = _bodies(token)[case]
    resp = client.post("/label-studio/feedback", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]
    assert feedback_records(unit_env) == []


def test_json_with_another_content_type_is_accepted(client) -> None:
    token = ask(client).headers[TOKEN_HEADER]
    body = json.dumps({"token": token, "score": 1}).encode()
    resp = client.post("/label-studio/feedback", content=body, headers={"content-type": "text/plain"})
    assert resp.status_code == 202


def test_a_token_of_another_deployment_is_refused(unit_env, monkeypatch) -> None:
    with TestClient(build()) as a:
        token = ask(a, "/chat", X_Session_ID="S").headers[TOKEN_HEADER]
        prompt_token = ask(a).headers[TOKEN_HEADER]
    other_project = build({"/echo": Project("Someone else's"), "/chat": Project("Other chats", mode="chat")})
    other_route = build({"/talk": CHAT})
    with TestClient(other_project) as b, TestClient(other_route) as c:
        assert post(b, token).status_code == 403
        assert post(b, prompt_token).status_code == 403
        assert post(c, token).status_code == 403
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:10")
    with TestClient(build()) as other_server:
        assert post(other_server, token).status_code == 403
    monkeypatch.setenv("LABEL_STUDIO_URL", UNREACHABLE)
    with TestClient(build()) as replica:  # the same deployment: another replica takes it
        assert post(replica, token).status_code == 202
    assert [r.project["title"] for r in feedback_records(unit_env)] == ["Unit chats"]


def test_rate_limit_per_client(unit_env) -> None:
    app = build(feedback_client_limit=3)
    with TestClient(app) as c, TestClient(app, client=("10.0.0.2", 1)) as other:
        fresh = [ask(c, text=str(i)).headers[TOKEN_HEADER] for i in range(5)]
        assert [post(c, t).status_code for t in fresh] == [202, 202, 202, 429, 429]
        assert post(other, fresh[4]).status_code == 202
        assert post(c, "junk").status_code == 429  # every post counts, and is refused first


def test_rate_limit_per_target(unit_env) -> None:
    with TestClient(build(feedback_target_limit=2)) as c:
        turns = [ask(c, "/chat", text=str(i), X_Session_ID="S", X_User_ID="u").headers[TOKEN_HEADER] for i in range(3)]
        assert [post(c, t).status_code for t in turns] == [202, 202, 429]
        # another user's session of the same name is another target
        assert post(c, ask(c, "/chat", X_Session_ID="S", X_User_ID="v").headers[TOKEN_HEADER]).status_code == 202


def test_rate_limit_per_token(client) -> None:
    token = ask(client).headers[TOKEN_HEADER]
    codes = [post(client, token).status_code for _ in range(7)]
    assert codes == [202] * 5 + [429] * 2


def test_default_limits_stop_a_flood_of_fresh_tokens(client) -> None:
    fresh = [ask(client, text=str(i)).headers[TOKEN_HEADER] for i in range(40)]
    codes = [post(client, fresh[i % 40]).status_code for i in range(120)]
    assert codes.count(202) == 30 and set(codes) == {202, 429}


def test_token_size_through_the_middleware(client) -> None:
    resp = ask(client, "/chat", X_User_ID="u" * 300, X_Session_ID="s" * 300)
    token = resp.headers[TOKEN_HEADER]
    assert len(token) < 1000
    claims = tokens().verify(token)
    assert (len(claims.user_id), len(claims.session_id)) == (256, 256)


def test_a_large_label_config_stays_out_of_the_token(unit_env) -> None:
    config = DEFAULT_CONFIGS["prompt"].replace("<Style>", "<Style>/* " + "padding " * 400 + "*/", 1)
    assert len(config) > 3000
    big = Project("Big config", label_config=config)
    with TestClient(build({"/echo": big})) as c:
        token = ask(c).headers[TOKEN_HEADER]
        assert len(token) < 300
        assert post(c, token).status_code == 202
    [record] = feedback_records(unit_env)
    assert record.project == big.to_dict()  # the server's own project, config and all


@pytest.mark.parametrize("route", ["/echo", "/chat"])
def test_feedback_for_default_routes(unit_env, route) -> None:
    app = FastAPI()
    add_routes(app, RunnableLambda(echo), path=route)
    app.add_middleware(LabelStudioMiddleware, default="Default project", feedback_secret=SECRET)
    with TestClient(app) as c:
        token = ask(c, route).headers[TOKEN_HEADER]
        assert tokens().verify(token).route == "*"
        assert post(c, token).status_code == 202
    [record] = feedback_records(unit_env)
    assert record.project["title"] == "Default project"


class DisplayNameOnly(BaseUser):
    """A Starlette user that names itself only by ``display_name`` (``identity`` raises)."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.name


class DisplayNames(AuthenticationBackend):
    async def authenticate(self, conn):
        auth = conn.headers.get("authorization", "")
        return (AuthCredentials(["authenticated"]), DisplayNameOnly(auth[7:])) if auth.startswith("Bearer ") else None


def test_a_user_named_only_by_display_name_is_captured_with_a_token(unit_env) -> None:
    app = FastAPI()
    add_routes(app, RunnableLambda(echo), path="/chat")
    app.add_middleware(AuthenticationMiddleware, backend=DisplayNames())
    app.add_middleware(LabelStudioMiddleware, routes={"/chat": CHAT}, feedback_secret=SECRET)
    with TestClient(app) as client:
        resp = ask(client, "/chat", X_Session_ID="S", Authorization="Bearer dora")
    assert resp.status_code == 200
    assert tokens().verify(resp.headers[TOKEN_HEADER]).user_id == "dora"
    [capture] = unit_env
    assert capture.data["user_id"] == "dora" and capture.session == session_ref("dora", "S")


def test_without_a_user_header_only_the_authenticated_user_is_named(unit_env) -> None:
    with TestClient(build(user_header=None)) as client:
        anonymous = ask(client, "/chat", X_Session_ID="S", X_User_ID="alice")
        signed_in = ask(client, "/chat", X_Session_ID="S", X_User_ID="alice", Authorization="Bearer erin")
    assert tokens().verify(anonymous.headers[TOKEN_HEADER]).user_id is None
    assert tokens().verify(signed_in.headers[TOKEN_HEADER]).user_id == "erin"
    assert [(r.data["user_id"], r.session) for r in unit_env] == [
        (None, session_ref(None, "S")),
        ("erin", session_ref("erin", "S")),
    ]


def test_one_huge_batch_makes_at_most_a_tenth_of_the_buffer_in_captures(unit_env) -> None:
    pipeline = get_pipeline(Settings())
    limit = pipeline.settings.max_buffer // 10
    with TestClient(build()) as client:
        batch = client.post("/echo/batch", json={"inputs": [{"text": str(i)} for i in range(limit + 5)]})
        assert batch.status_code == 200 and len(batch.json()["output"]) == limit + 5
        assert ask(client, text="after", X_User_ID="victim").status_code == 200
    assert len(unit_env) == limit + 1 and unit_env[-1].data["user_id"] == "victim"
    assert pipeline.metrics.skipped.get("request_limit") == 5
