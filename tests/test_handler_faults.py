"""The handler never gets in the way: Label Studio down, hanging, or refusing the token."""

from __future__ import annotations

import logging
import time

import pytest
from conftest import eventually, prefilled, project_tasks
from faults import FaultProxy, free_port
from langchain_core.language_models.fake import FakeListLLM

from langchain_label_studio import LabelStudioCallbackHandler
from langchain_label_studio.settings import DEFAULT_URL


def test_invalid_project_config_fails_at_construction_without_network(ls_env, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ValueError, match="no <TextArea> tag"):
        LabelStudioCallbackHandler(project_config='<View><Text name="prompt" value="$prompt"/></View>')
    with pytest.raises(ValueError, match="not valid XML"):
        LabelStudioCallbackHandler(project_config="<View><Text")
    with pytest.raises(ValueError, match="toName"):
        LabelStudioCallbackHandler(project_config='<View><TextArea name="r" toName="nowhere"/></View>')


def test_url_unset_uses_default(ls_env, monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_URL")
    handler = LabelStudioCallbackHandler()
    assert handler.url == DEFAULT_URL == "http://localhost:8080"


def test_down_at_construction_and_during_calls_then_delivered(label_studio, admin, ls_env, project_name, monkeypatch):
    proxy = FaultProxy(label_studio.port)  # not started: the port refuses connections
    monkeypatch.setenv("LABEL_STUDIO_URL", proxy.url)
    try:
        handler = LabelStudioCallbackHandler(project_name=project_name)
        llm = FakeListLLM(responses=[f"answer {i}" for i in range(5)], callbacks=[handler])
        for i in range(5):
            assert llm.invoke(f"prompt {i}") == f"answer {i}"
        last_error = eventually(lambda: handler.pipeline.health()["last_error"], "a failed delivery attempt")
        assert "cannot reach Label Studio" in last_error
        assert not handler.flush(0.5)
        assert handler.pipeline.health()["pending"] == 5

        proxy.start()
        assert handler.flush(90), handler.pipeline.health()
    finally:
        proxy.close()
    _, tasks = project_tasks(admin, project_name)
    assert sorted(t["data"]["prompt"] for t in tasks) == [f"prompt {i}" for i in range(5)]
    assert sorted(prefilled(t) for t in tasks) == [f"answer {i}" for i in range(5)]


def test_hanging_label_studio_does_not_slow_calls(label_studio, ls_env, project_name, monkeypatch):
    proxy = FaultProxy(label_studio.port).start()
    proxy.mode = "hang"
    monkeypatch.setenv("LABEL_STUDIO_URL", proxy.url)
    try:
        handler = LabelStudioCallbackHandler(project_name=project_name)
        llm = FakeListLLM(responses=["ok"] * 200, callbacks=[handler])
        bare = FakeListLLM(responses=["ok"] * 200)
        llm.invoke("first")
        # The delivery worker is stuck in a request that never answers.
        eventually(lambda: proxy.faults >= 1, "a delivery request reaching Label Studio")
        started = time.perf_counter()
        for _ in range(100):
            bare.invoke("hello")
        bare_s = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(100):
            llm.invoke("hello")
        captured_s = time.perf_counter() - started
        assert captured_s < bare_s * 5 + 0.5, (captured_s, bare_s)
        assert handler.pipeline.health()["captured"] == 101
    finally:
        proxy.close()


def test_wrong_token_one_clear_error_then_delivered(label_studio, admin, ls_env, project_name, monkeypatch, caplog):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "not-a-valid-token")
    caplog.set_level(logging.ERROR, logger="langchain_label_studio")
    handler = LabelStudioCallbackHandler(project_name=project_name)
    llm = FakeListLLM(responses=["r"] * 20, callbacks=[handler])
    for i in range(20):
        llm.invoke(f"p{i}")

    def attempts() -> bool:  # several delivery attempts, skipping the backoff
        handler.pipeline.retry_now()
        return handler.pipeline.metrics.retried >= 40

    eventually(attempts, "two delivery attempts")
    assert not handler.flush(0.5)
    errors = [r for r in caplog.records if r.name == "langchain_label_studio"]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "refused the API key" in errors[0].getMessage()
    assert "not-a-valid-token" not in caplog.text
    assert handler.pipeline.health()["pending"] == 20

    fixed = LabelStudioCallbackHandler(project_name=project_name, api_key=label_studio.api_key)
    assert fixed.pipeline is handler.pipeline
    assert fixed.flush(60), fixed.pipeline.health()
    _, tasks = project_tasks(admin, project_name)
    assert sorted(t["data"]["prompt"] for t in tasks) == sorted(f"p{i}" for i in range(20))
