"""The middleware's setup: routes, headers, feedback. No server: the pipeline's outbox is a SQLite
file in a temporary directory and delivery is off."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from langchain_label_studio import LabelStudioMiddleware, Project
from langchain_label_studio.feedback import DEFAULT_ROUTE, deployment_id
from langchain_label_studio.middleware import _recorded_headers, _route, _routes, _sample_rate

URL = "http://label-studio.test"


async def app(scope, receive, send) -> None:  # never called: only the setup is tested
    raise AssertionError


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_URL", URL)
    monkeypatch.setenv("LABEL_STUDIO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("LABEL_STUDIO_DELIVERY", "off")
    monkeypatch.delenv("LABEL_STUDIO_FEEDBACK_SECRET", raising=False)


def test_routes_longest_prefix_first_without_trailing_slashes() -> None:
    routes = _routes({"/": "All", "/chat/": Project("Chats", mode="chat"), "/chat/v2": "V2", "/joke": 7}, URL)
    assert [r.key for r in routes] == ["/chat/v2", "/chat", "/joke", "/"]
    chat = routes[1]
    assert chat.project.mode == "chat" and chat.deployment == deployment_id(URL, "/chat", chat.project)
    assert routes[2].project.id == 7
    assert _routes({}, URL) == []


def test_the_deployment_id_depends_on_server_route_and_project() -> None:
    one = _route("/joke", "Jokes", URL)
    assert one == _route("/joke", "Jokes", URL)
    assert one.deployment != _route("/joke", "Jokes", "http://other.test").deployment
    assert one.deployment != _route("/jokes", "Jokes", URL).deployment
    assert one.deployment != _route("/joke", "Other", URL).deployment


def test_recorded_headers_never_include_credentials() -> None:
    names = ["X-Tenant", "Authorization", "Cookie", "X-API-Key", "X-Session-Token", "Accept-Language"]
    assert _recorded_headers(names) == [b"x-tenant", b"accept-language"]


def test_sample_rate_is_a_share() -> None:
    assert _sample_rate(0.0) == 0.0 and _sample_rate(1.0) == 1.0
    for wrong in (-0.1, 1.5):
        with pytest.raises(ValueError, match="sample_rate"):
            _sample_rate(wrong)


def test_setup_without_a_feedback_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="langchain_label_studio")
    mw = LabelStudioMiddleware(app, routes={"/joke/": "Jokes"}, user_header="X-Who")
    assert [r.key for r in mw.routes] == ["/joke"] and mw.default is None and mw._default_route is None
    assert mw.feedback is None and mw._feedback_endpoint is None
    assert "feedback is disabled" in caplog.text
    assert (mw.user_header, mw.session_header, mw.request_id_header) == (b"x-who", b"x-session-id", b"x-request-id")
    assert mw.opt_out_header == b"x-label-studio-capture" and mw.prefix == "/label-studio"


def test_setup_with_a_feedback_secret_covers_every_route(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="langchain_label_studio")
    mw = LabelStudioMiddleware(
        app,
        routes={"/joke": "Jokes"},
        default="Other",
        feedback_secret="s" * 32,
        feedback_header="X-Feedback",
        feedback_token_limit=None,
        prefix="/ls/",
    )
    assert "feedback is disabled" not in caplog.text
    assert mw.feedback is not None and mw.feedback_header == b"x-feedback"
    endpoint = mw._feedback_endpoint
    assert endpoint is not None and set(endpoint.routes) == {"/joke", DEFAULT_ROUTE}
    assert endpoint.per_token is None and endpoint.per_client is not None
    assert mw.default is not None and mw.default.title() == "Other" and mw._default_route.project is mw.default
    assert mw.prefix == "/ls"


def test_a_wrong_sample_rate_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        LabelStudioMiddleware(app, routes={}, sample_rate=2)
