"""With LangSmith tracing on, each task links to the LangSmith trace of the run it captured.

LangSmith itself is not available here: a stand-in server takes the traces the app sends
and answers the project look-up the way LangSmith's API does. The app, its tracing and the
Label Studio the tasks land in are the real ones.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from conftest import eventually, serve, tasks_where, wait_delivered
from test_middleware import chat

TENANT = "2c5e9a3f-8d1b-4e6a-9f20-1a2b3c4d5e6f"


class FakeLangSmith:
    """Takes traces (any POST), answers ``GET /sessions?name=...`` with one project per name."""

    def __init__(self, fail_lookups: bool = False) -> None:
        self.projects: dict[str, str] = {}
        self.bodies: list[bytes] = []
        self.lookups: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path.endswith("/sessions"):
                    [name] = parse_qs(url.query)["name"]
                    fake.lookups.append(name)
                    if fail_lookups:
                        self._answer(503, {"detail": "unavailable"})
                        return
                    pid = fake.projects.setdefault(name, str(uuid.uuid4()))
                    self._answer(200, [{"id": pid, "name": name, "tenant_id": TENANT, "reference_dataset_id": None}])
                else:
                    self._answer(200, {})

            def do_POST(self) -> None:
                fake.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self._answer(202, {})

            do_PATCH = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def traced(self, run_id: str) -> bool:
        return any(run_id.encode() in body for body in self.bodies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def tracing_env(fake: FakeLangSmith, project: str) -> dict[str, str]:
    """LangSmith tracing as its users turn it on, sending to the stand-in."""
    return {
        "LANGSMITH_TRACING": "true",
        "LANGSMITH_ENDPOINT": fake.url,
        "LANGSMITH_API_KEY": "lsv2_pt_0123456789abcdef0123456789abcdef_0123456789",
        "LANGSMITH_PROJECT": project,
        "LANGSMITH_DISABLE_RUN_COMPRESSION": "true",
    }


@pytest.fixture
def langsmith():
    fake = FakeLangSmith()
    yield fake
    fake.close()


def test_prompt_and_chat_tasks_link_to_their_langsmith_traces(admin, label_studio, tmp_path, langsmith):
    jokes, chats = f"jokes-{uuid.uuid4().hex[:8]}", f"chats-{uuid.uuid4().hex[:8]}"
    env = {**tracing_env(langsmith, "support-bot"), "EXAMPLE_JOKES_PROJECT": jokes, "EXAMPLE_CHATS_PROJECT": chats}
    session = f"s-{uuid.uuid4().hex[:8]}"
    with serve("example_app.app:app", label_studio, tmp_path / "state", **env) as app:
        user = f"u-{uuid.uuid4().hex[:6]}"
        joke = app.post("/joke/invoke", json={"input": {"topic": "owls"}}, headers={"X-User-ID": user})
        assert joke.status_code == 200
        chat(app, "alice", session, "hello")
        chat(app, "alice", session, "and again")
        wait_delivered(app)
    [joke] = tasks_where(admin, jokes, user_id=user)
    [conversation] = tasks_where(admin, chats, session_id=session)
    pid = langsmith.projects["support-bot"]
    assert langsmith.lookups == ["support-bot"]  # one look-up per LangSmith project, then remembered
    for task in (joke, conversation):
        data = task["data"]
        run_id = data["langsmith_run_id"]
        assert str(uuid.UUID(run_id)) == run_id and data["langsmith_trace_id"] == run_id  # a root run: its own trace
        assert data["langsmith_project"] == "support-bot"
        assert data["langsmith_url"] == (
            f"http://localhost/o/{TENANT}/projects/p/{pid}/r/{run_id}?trace_id={run_id}&poll=true"
        )
        eventually(lambda run_id=run_id: langsmith.traced(run_id), f"LangSmith got no trace of run {run_id}", 30)
    # The session's task shows its latest turn, and so links to that turn's trace.
    assert conversation["data"]["turns"] == 2


def test_without_tracing_no_link_and_with_langsmith_down_the_ids_still_land(admin, label_studio, tmp_path):
    jokes = f"jokes-{uuid.uuid4().hex[:8]}"
    user = f"u-{uuid.uuid4().hex[:6]}"
    with serve("example_app.app:app", label_studio, tmp_path / "off", EXAMPLE_JOKES_PROJECT=jokes) as app:
        app.post("/joke/invoke", json={"input": {"topic": "owls"}}, headers={"X-User-ID": user})
        wait_delivered(app)
    [task] = tasks_where(admin, jokes, user_id=user)
    assert not [k for k in task["data"] if k.startswith("langsmith_")]

    down = FakeLangSmith(fail_lookups=True)
    try:
        env = {**tracing_env(down, "support-bot"), "EXAMPLE_JOKES_PROJECT": jokes}
        with serve("example_app.app:app", label_studio, tmp_path / "down", **env) as app:
            for topic in ("cats", "dogs"):
                r = app.post("/joke/invoke", json={"input": {"topic": topic}}, headers={"X-User-ID": user})
                assert r.status_code == 200
            health = wait_delivered(app)
        assert health["delivered"] == 2 and health["dead_lettered"] == 0
    finally:
        down.close()
    tasks = [t for t in tasks_where(admin, jokes, user_id=user) if "langsmith_run_id" in t["data"]]
    assert len(tasks) == 2
    for task in tasks:
        assert "langsmith_url" not in task["data"]  # LangSmith could not say where: the ids remain
        assert task["data"]["langsmith_trace_id"] == task["data"]["langsmith_run_id"]
    assert 1 <= len(down.lookups) <= 4  # asked again later, not once per task and retry storm
