"""The health and metrics endpoints: off the event loop, shared between pollers, guarded on request,
and never showing credentials. No Label Studio needed."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from langchain_label_studio import LabelStudioMiddleware
from langchain_label_studio.pipeline import Pipeline, get_pipeline
from langchain_label_studio.prometheus import register as register_metrics
from langchain_label_studio.settings import Settings


@pytest.fixture
def unit_env(tmp_path, monkeypatch) -> Iterator[None]:
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("LABEL_STUDIO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("LABEL_STUDIO_DELIVERY", "off")
    yield


def build(**options) -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    app.add_middleware(LabelStudioMiddleware, routes={}, health=True, **options)
    return app


def run(app: FastAPI, scenario) -> object:
    """Run ``scenario(client)`` against the app on one event loop."""

    async def main() -> object:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await scenario(client)

    return asyncio.run(main())


class SlowHealth:
    """``pipeline.health`` held until :attr:`release` is set; :attr:`calls` are the threads it ran in."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()


@pytest.fixture
def slow_health(unit_env, monkeypatch) -> SlowHealth:
    register_metrics()  # registering the collector computes the health once, on this thread: not counted
    slow = SlowHealth()
    original = Pipeline.health

    def held(self: Pipeline) -> dict:
        slow.calls.append(threading.current_thread().name)
        slow.started.set()
        slow.release.wait(30)  # bounded: a health view on the event loop would hold the test, not hang it
        return original(self)

    monkeypatch.setattr(Pipeline, "health", held)
    return slow


class Clock:
    """The middleware's ``time``: ``monotonic`` moves only when told; ``time`` is the real one."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.time = time.time

    def monotonic(self) -> float:
        return self.now


async def _until(event: threading.Event, timeout: float = 30.0) -> None:
    """Wait (without blocking the event loop) until ``event`` is set."""
    deadline = time.monotonic() + timeout
    while not event.is_set():
        assert time.monotonic() < deadline, "the health view was never computed"
        await asyncio.sleep(0.01)


def test_a_slow_health_view_does_not_hold_other_requests(slow_health) -> None:
    async def scenario(client: httpx.AsyncClient) -> tuple[bool, list[int]]:
        polls = [asyncio.create_task(client.get("/label-studio/health")) for _ in range(8)]
        await _until(slow_health.started)  # the view is being computed, and held there
        pong = await client.get("/ping")
        held_meanwhile = not slow_health.release.is_set()
        assert pong.json() == {"pong": "yes"}
        slow_health.release.set()
        answers = await asyncio.gather(*polls)
        return held_meanwhile, [a.status_code for a in answers]

    held_meanwhile, codes = run(build(), scenario)
    assert held_meanwhile, "/ping waited for the health view"
    assert codes == [200] * 8
    # Eight pollers shared one computation, off the event loop.
    assert len(slow_health.calls) == 1 and slow_health.calls[0] != threading.main_thread().name


def test_pollers_share_a_recent_view(slow_health, monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr("langchain_label_studio.middleware.time", clock)
    slow_health.release.set()

    async def scenario(client: httpx.AsyncClient) -> list[int]:
        first = await client.get("/label-studio/health")
        again = await client.get("/label-studio/health")
        assert again.json() == first.json()
        clock.now += 1.1  # past HEALTH_CACHE_S
        later = await client.get("/label-studio/health")
        return [first.status_code, again.status_code, later.status_code]

    assert run(build(), scenario) == [200, 200, 200]
    assert len(slow_health.calls) == 2  # one per second at most


def test_a_capture_shows_at_once(unit_env) -> None:
    pipeline = get_pipeline(Settings())

    async def scenario(client: httpx.AsyncClient) -> tuple[int, int]:
        before = (await client.get("/label-studio/health")).json()["dropped"]
        pipeline.metrics.add("dropped")  # any counter that moves makes the next poll fresh
        after = (await client.get("/label-studio/health")).json()["dropped"]
        return before, after

    assert run(build(), scenario) == (0, 1)


def test_metrics_off_the_loop(unit_env) -> None:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get("/label-studio/metrics")

    resp = run(build(), scenario)
    assert resp.status_code == 200 and "langchain_label_studio_pending{" in resp.text


def test_a_failing_health_view_is_a_503(unit_env, monkeypatch) -> None:
    def broken(self: Pipeline) -> dict:
        raise RuntimeError("outbox on fire")

    monkeypatch.setattr(Pipeline, "health", broken)

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get("/label-studio/health")

    resp = run(build(), scenario)
    assert resp.status_code == 503 and "on fire" not in resp.text


def _statuses(app: FastAPI, headers_list: list[dict[str, str]]) -> list[tuple[int, int]]:
    async def scenario(client: httpx.AsyncClient) -> list[tuple[int, int]]:
        out = []
        for headers in headers_list:
            health = await client.get("/label-studio/health", headers=headers)
            metrics = await client.get("/label-studio/metrics", headers=headers)
            out.append((health.status_code, metrics.status_code))
        return out

    return run(app, scenario)


def test_token_guard(unit_env) -> None:
    app = build(health_guard="s3cret-health-token")
    assert _statuses(
        app,
        [
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearer s3cret-health-toke"},
            {"Authorization": "Basic s3cret-health-token"},
            {"Authorization": "Bearer s3cret-health-token"},
            {"Authorization": "bearer s3cret-health-token"},
        ],
    ) == [(401, 401), (401, 401), (401, 401), (401, 401), (200, 200), (200, 200)]


def test_callable_guards(unit_env) -> None:
    def from_inside(scope) -> bool:
        return (scope.get("client") or ("",))[0] == "127.0.0.1"

    async def with_header(scope) -> bool:
        return (b"x-ops", b"yes") in scope["headers"]

    def broken(scope) -> bool:
        raise RuntimeError("guard bug")

    assert _statuses(build(health_guard=from_inside), [{}]) == [(200, 200)]
    assert _statuses(build(health_guard=with_header), [{}, {"X-Ops": "yes"}]) == [(401, 401), (200, 200)]
    assert _statuses(build(health_guard=broken), [{}]) == [(401, 401)]
    with pytest.raises(ValueError):
        LabelStudioMiddleware(FastAPI(), health=True, health_guard="")


def test_health_shows_no_credentials(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://ops-user:hunter2-password@127.0.0.1:9/ls")
    monkeypatch.setenv("LABEL_STUDIO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("LABEL_STUDIO_DELIVERY", "off")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "api-key-never-shown")

    async def scenario(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        return await client.get("/label-studio/health"), await client.get("/label-studio/metrics")

    health, metrics = run(build(), scenario)
    assert health.status_code == 200 and health.json()["pending"] == 0
    for text in (health.text, metrics.text):
        assert "hunter2" not in text and "ops-user" not in text and "api-key-never-shown" not in text
    assert "127.0.0.1:9/ls" in health.json()["label_studio_url"]
