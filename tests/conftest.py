"""Shared fixtures: a real local Label Studio, started once per test run through the
package's own ``local.up`` (the same path as the demo and CI)."""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from faults import free_port

from langchain_label_studio import local
from langchain_label_studio.client import LabelStudioClient
from langchain_label_studio.pipeline import _registry

ROOT = Path(__file__).resolve().parent.parent
LS_PORT = int(os.environ.get("LS_TEST_PORT", "18089"))
FEEDBACK_SECRET = "test-feedback-secret-0123456789"
LS_DATA = Path(os.environ.get("LS_TEST_DATA_DIR", ROOT / ".state" / "label-studio-test"))
#: Scales the windows of the fault tests (traffic, outage, load before a kill). They run short by
#: default; ``LS_TEST_SOAK=20 pytest tests/test_delivery_faults.py tests/test_processes.py`` runs
#: them twenty times longer.
SOAK = float(os.environ.get("LS_TEST_SOAK", "1"))


#: Integration markers, set from the fixtures a test uses (directly, through other fixtures, or by
#: ``request.getfixturevalue("name")``): ``-m "not ls and not pg and not browser and not
#: langgraph_server and not network"`` selects the unit tier, which needs none of them.
MARKERS_BY_FIXTURE: dict[str, tuple[str, ...]] = {
    "label_studio": ("ls",),
    "label_studio_pg": ("ls", "pg"),
    "pg_url": ("pg",),
    "langgraph_server": ("langgraph_server",),
    "built": ("network",),  # test_wheel: `python -m build` and `pip install` reach the package index
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        source = _source(item)
        for fixture, markers in MARKERS_BY_FIXTURE.items():
            if fixture in used or ("getfixturevalue(" in source and f'"{fixture}"' in source):
                for marker in markers:
                    item.add_marker(marker)
        if "playwright" in source:  # no fixture says a test drives Chromium: its code imports playwright
            item.add_marker("browser")


def _source(item: pytest.Item) -> str:
    """The test function's source ("" when it has none)."""
    try:
        return inspect.getsource(item.obj)  # type: ignore[attr-defined]
    except (AttributeError, OSError, TypeError):
        return ""


@pytest.fixture(scope="session")
def label_studio() -> local.LocalServer:
    """The test Label Studio. It never skips: if it cannot start, the tests fail.

    A server this run started is stopped at the end; one already running is left running.
    """
    was_running = local.status(LS_PORT, LS_DATA) is not None
    try:
        server = local.up(LS_PORT, LS_DATA, timeout=600)
    except local.LocalError as exc:
        pytest.fail(f"Label Studio could not be started for the tests: {exc}")
    yield server
    if not was_running and not os.environ.get("LS_TEST_KEEP"):
        local.down(LS_PORT, LS_DATA)


PG = os.environ.get("LS_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


@pytest.fixture
def pg_url():
    """A PostgreSQL database of its own for one test (the local server), dropped afterwards."""
    import psycopg

    name = f"lls_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG}/{name}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


LS_PG_PORT = int(os.environ.get("LS_TEST_PG_PORT", "18090"))
LS_PG_DATA = Path(os.environ.get("LS_TEST_PG_DATA_DIR", ROOT / ".state" / "label-studio-test-pg"))
#: The database of the second test Label Studio, the one on PostgreSQL (created on first start).
LS_PG_DATABASE = os.environ.get("LS_TEST_PG_DATABASE", f"{PG}/lls_label_studio_test")


@pytest.fixture(scope="session")
def label_studio_pg() -> local.LocalServer:
    """A second test Label Studio, on PostgreSQL (as production runs it), started only for the
    tests that ask for it; stopped at the end as :func:`label_studio` is."""
    was_running = local.status(LS_PG_PORT, LS_PG_DATA) is not None
    if local.recorded(LS_PG_DATA) is None:  # a fresh data dir: the database of an earlier one goes
        import psycopg

        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{LS_PG_DATABASE.rsplit("/", 1)[1]}" WITH (FORCE)')
    try:
        server = local.up(LS_PG_PORT, LS_PG_DATA, timeout=600, database=LS_PG_DATABASE)
    except local.LocalError as exc:
        pytest.fail(f"Label Studio on PostgreSQL could not be started for the tests: {exc}")
    yield server
    if not was_running and not os.environ.get("LS_TEST_KEEP"):
        local.down(LS_PG_PORT, LS_PG_DATA)


@pytest.fixture
def admin(label_studio: local.LocalServer) -> LabelStudioClient:
    """A client with the admin's legacy token, for checking what landed."""
    client = LabelStudioClient(label_studio.url, label_studio.legacy_token)
    yield client
    client.close()


@pytest.fixture
def ls_env(label_studio: local.LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the plugin at the test server (with its PAT) and a fresh state dir."""
    state = tmp_path / "state"
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.api_key)
    monkeypatch.setenv("LABEL_STUDIO_STATE_DIR", str(state))
    monkeypatch.delenv("LABEL_STUDIO_PROJECT_ID", raising=False)
    return state


@pytest.fixture(autouse=True)
def _close_pipelines():
    yield
    for key, pipeline in list(_registry.items()):
        pipeline.close(timeout=0.5)
        del _registry[key]


@pytest.fixture
def project_name() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def project_tasks(admin: LabelStudioClient, title: str) -> tuple[dict, list[dict]]:
    """The project with this title and all its tasks."""
    project = admin.find_project(title)
    assert project is not None, f"no project {title!r} in Label Studio"
    tasks, page = [], 1
    while batch := admin.list_tasks(project["id"], page):
        tasks += batch
        page += 1
    return admin.get_project(project["id"]), sorted(tasks, key=lambda t: t["id"])


def prefilled(task: dict) -> str:
    """The pre-filled answer (the TextArea prediction) of a task."""
    [pred] = task["predictions"]
    [result] = pred["result"]
    assert result["type"] == "textarea"
    return "\n".join(result["value"]["text"])


def tasks_where(admin: LabelStudioClient, title: str, **data: object) -> list[dict]:
    """Tasks of a project whose ``data`` has all the given values."""
    project = admin.find_project(title)
    if project is None:
        return []
    tasks, page = [], 1
    while batch := admin.list_tasks(project["id"], page, where={k: v for k, v in data.items() if v is not None}):
        tasks += [t for t in batch if all(t["data"].get(k) == v for k, v in data.items())]
        page += 1
    return sorted(tasks, key=lambda t: t["id"])


def eventually(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll ``condition`` until it returns something true, and return that; fail naming ``what``
    after ``timeout`` seconds. For a state a test waits for (an error reported, records on disk)
    instead of a fixed wait that a slow machine could outlast."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        time.sleep(0.05)
    return found


def wait_healthy(base_url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Wait until an app answers ``/label-studio/health`` (failing if its process exits)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base_url.rstrip('/')}/label-studio/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "the app did not start"
        time.sleep(0.2)


@contextlib.contextmanager
def serve(target: str, label_studio: local.LocalServer, state_dir: Path, **env: str):
    """Serve an ASGI app (``module:attr``) with uvicorn on a free port; yields an httpx client."""
    port = free_port()
    full_env = {
        **os.environ,
        **label_studio.env(),
        "LABEL_STUDIO_STATE_DIR": str(state_dir),
        "LABEL_STUDIO_FEEDBACK_SECRET": FEEDBACK_SECRET,
        **env,
    }
    full_env.pop("OPENAI_API_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", target, "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=full_env,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    wait_healthy(str(client.base_url), proc)
    try:
        yield client
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@pytest.fixture
def example_app(label_studio: local.LocalServer, tmp_path: Path):
    """The example app served by uvicorn on a free port, capturing into the test Label Studio."""
    with serve("example_app.app:app", label_studio, tmp_path / "app-state") as client:
        yield client


def wait_delivered(app, timeout: float = 60.0) -> dict:
    """Wait until the app's outbox is empty; returns its health view."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = app.get("/label-studio/health").json()
        if health["pending"] == 0 and health["delivered"] + health["dead_lettered"] >= health["captured"]:
            return health
        time.sleep(0.2)
    raise AssertionError(f"not delivered in {timeout}s: {health}")
