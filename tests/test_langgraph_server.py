"""A captured graph served by a real LangGraph Server (``langgraph dev``), driven by the official client."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, prefilled, tasks_where
from faults import free_port
from langgraph_sdk import get_sync_client

REQUIREMENTS = ROOT / "tests" / "langgraph-server-requirements.txt"


def langgraph_cli() -> Path:
    """``langgraph`` from a cached virtualenv of its own (its pins clash with langserve's)."""
    from langchain_label_studio.local import _file_lock, cache_dir

    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = cache_dir() / f"langgraph-server-{digest}"
    exe = venv / "bin" / "langgraph"
    with _file_lock(cache_dir() / f"langgraph-server-{digest}.lock"):
        if not (venv / ".installed").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
                check=True,
            )
            (venv / ".installed").touch()
    return exe


@dataclass
class LangGraphServer:
    """A running ``langgraph dev``: its URL, the environment it was started with, its process."""

    url: str
    env: dict[str, str]
    proc: subprocess.Popen

    def client(self, headers: dict[str, str] | None = None):
        return get_sync_client(url=self.url, headers=headers)

    def stop(self) -> None:
        """SIGTERM, as a deployment stops it; the lifespan shutdown runs."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(60)


@pytest.fixture
def langgraph_server(label_studio, tmp_path: Path, request):
    """``langgraph dev`` on a free port, serving the langgraph.json of ``request.param``: a folder,
    or ``(folder, extra environment)``."""
    param = getattr(request, "param", ROOT / "example_app")
    folder, extra = param if isinstance(param, tuple) else (param, {})
    port = free_port()
    suffix = tmp_path.name[-20:]
    env = {
        **os.environ,
        **label_studio.env(),
        "LABEL_STUDIO_STATE_DIR": str(tmp_path / "state"),
        "INTERRUPT_PROJECT": f"approvals-{suffix}",
        "RUNS_PROJECT": f"runs-{suffix}",
        "PYTHONPATH": f"{ROOT / 'plugin'}{os.pathsep}{ROOT}",  # this checkout's plugin, not an installed one
        **extra,
    }
    langgraph = langgraph_cli()
    proc = subprocess.Popen(
        [str(langgraph), "dev", "--no-browser", "--no-reload", "--port", str(port), "--config", "langgraph.json"],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = LangGraphServer(f"http://127.0.0.1:{port}", env, proc)
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{server.url}/ok", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "langgraph dev did not start"
        time.sleep(0.3)
    yield server
    server.stop()


APPS = ROOT / "tests" / "apps"


def say(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}


def wait_task(admin, project: str, thread_id: str, done, timeout: float = 60) -> list[dict]:
    """The tasks of a thread, once there is one and ``done(task)`` holds (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = tasks_where(admin, project, session_id=thread_id)
        if (len(tasks) == 1 and done(tasks[0])) or time.monotonic() > deadline:
            return tasks
        time.sleep(0.5)


def shown(task: dict) -> list[tuple[str, str]]:
    """The dialogue a task shows: its messages, then the pre-filled answer (if there is one)."""
    messages = [(m["role"], m["content"]) for m in task["data"]["prompt"]]
    answer = prefilled(task) if task["predictions"] else ""
    return messages + [("assistant", answer)] if answer else messages


def thread_dialogue(client, thread_id: str) -> list[tuple[str, str]]:
    """The dialogue the thread's state holds."""
    roles = {"human": "user", "ai": "assistant"}
    messages = client.threads.get_state(thread_id)["values"]["messages"]
    return [(roles[m["type"]], m["content"]) for m in messages]


def start_slow(client, thread_id: str, text: str) -> dict:
    """Start a run that answers after a minute; returns once its question is in the thread's state."""
    run = client.runs.create(thread_id, "runs", input=say(text))
    deadline = time.monotonic() + 30
    while thread_dialogue(client, thread_id)[-1] != ("user", text):
        assert time.monotonic() < deadline, "the slow run did not start"
        time.sleep(0.1)
    return run


def test_one_task_per_thread_with_run_ids(admin, langgraph_server):
    threads = {}
    for n, turns in enumerate((["hello server", "weather in Oslo?", "thanks"], ["one", "two", "three"])):
        client = langgraph_server.client({"X-User-ID": f"user-{n}"})  # copied into the run: configurable_headers
        thread_id = client.threads.create()["thread_id"]
        runs = []
        for i, text in enumerate(turns):
            if i < 2:
                client.runs.wait(thread_id, "chat", input=say(text))
            else:
                list(client.runs.stream(thread_id, "chat", input=say(text), stream_mode="values"))
            runs.append(client.runs.list(thread_id)[0]["run_id"])
        threads[thread_id] = (turns, runs, f"user-{n}")

    for thread_id, (turns, runs, user) in threads.items():
        answer = ("assistant", f"(turn 3) You said: {turns[-1]}")  # written after the task's data
        [task] = wait_task(admin, "Support chats", thread_id, lambda t, a=answer: shown(t)[-1] == a)
        data = task["data"]
        assert [m["content"] for m in data["prompt"] if m["role"] == "user"] == turns
        assert data["run_id"] == runs[-1] and data["graph_id"] == "chat" and data["assistant_id"]
        assert data["user_id"] == user
        assert prefilled(task) == f"(turn 3) You said: {turns[-1]}"
    oslo = next(
        tasks_where(admin, "Support chats", session_id=t)[0]
        for t, (turns, *_) in threads.items()
        if "weather in Oslo?" in turns
    )
    roles = ["user", "assistant", "user", "assistant", "tool", "assistant", "user"]
    assert [m["role"] for m in oslo["data"]["prompt"]] == roles


@pytest.mark.parametrize("langgraph_server", [APPS / "auth"], indirect=True)
def test_the_authenticated_user_is_the_user(admin, langgraph_server):
    project = langgraph_server.env["RUNS_PROJECT"]
    with pytest.raises(httpx.HTTPStatusError) as refused:
        langgraph_server.client().threads.create()
    assert refused.value.response.status_code == 401
    threads = {}
    for user, headers in [
        ("alice", {"Authorization": "Bearer token-alice", "X-User-ID": "mallory"}),  # the header does not win
        ("bob", {"Authorization": "Bearer token-bob"}),
    ]:
        client = langgraph_server.client(headers)
        thread_id = client.threads.create()["thread_id"]
        client.runs.wait(thread_id, "runs", input=say(f"hi, I am {user}"))
        threads[thread_id] = user
    for thread_id, user in threads.items():
        expected = [("user", f"hi, I am {user}"), ("assistant", f"Answer to: hi, I am {user}")]
        [task] = wait_task(admin, project, thread_id, lambda t, e=expected: shown(t) == e)
        assert shown(task) == expected
        assert task["data"]["user_id"] == user


@pytest.mark.parametrize("langgraph_server", [APPS], indirect=True)
def test_a_failed_run_shows_where_its_thread_stopped(admin, langgraph_server):
    project = langgraph_server.env["RUNS_PROJECT"]
    client = langgraph_server.client({"X-User-ID": "dana"})
    thread_id = client.threads.create()["thread_id"]
    client.runs.wait(thread_id, "runs", input=say("hello"))
    with pytest.raises(Exception, match="cannot answer"):
        client.runs.wait(thread_id, "runs", input=say("fail now"))
    assert client.threads.get(thread_id)["status"] == "error"
    failed_run = client.runs.list(thread_id)[0]["run_id"]
    stopped = thread_dialogue(client, thread_id)
    assert stopped == [("user", "hello"), ("assistant", "Answer to: hello"), ("user", "fail now")]

    [task] = wait_task(admin, project, thread_id, lambda t: "error" in t["data"] and shown(t) == stopped)
    assert shown(task) == stopped
    assert prefilled(task) == ""  # the question went unanswered: the earlier answer is not offered for it
    assert task["data"]["error"] == "ValueError: cannot answer 'fail now'"
    assert task["data"]["run_id"] == failed_run and task["data"]["user_id"] == "dana"


@pytest.mark.parametrize("langgraph_server", [APPS], indirect=True)
def test_a_cancelled_run_shows_where_its_thread_stopped(admin, langgraph_server):
    project = langgraph_server.env["RUNS_PROJECT"]
    client = langgraph_server.client()
    thread_id = client.threads.create()["thread_id"]
    client.runs.wait(thread_id, "runs", input=say("hello"))
    run = start_slow(client, thread_id, "slow question")
    client.runs.cancel(thread_id, run["run_id"], wait=True)
    assert client.runs.get(thread_id, run["run_id"])["status"] == "interrupted"
    stopped = thread_dialogue(client, thread_id)
    assert stopped == [("user", "hello"), ("assistant", "Answer to: hello"), ("user", "slow question")]

    [task] = wait_task(admin, project, thread_id, lambda t: "error" in t["data"] and shown(t) == stopped)
    assert shown(task) == stopped
    assert task["data"]["error"].startswith("RunCancelled: ")
    assert task["data"]["run_id"] == run["run_id"]


@pytest.mark.parametrize("langgraph_server", [APPS], indirect=True)
def test_nothing_of_a_rolled_back_run_stays(admin, langgraph_server):
    project = langgraph_server.env["RUNS_PROJECT"]
    client = langgraph_server.client()
    cancelled, replaced = client.threads.create()["thread_id"], client.threads.create()["thread_id"]
    first_turn = [("user", "hello"), ("assistant", "Answer to: hello")]
    for thread_id in (cancelled, replaced):
        client.runs.wait(thread_id, "runs", input=say("hello"))
        wait_task(admin, project, thread_id, lambda t: shown(t) == first_turn)
    # cancelled with rollback: the thread is back where it was, and so is its task
    run = start_slow(client, cancelled, "slow doomed")
    client.runs.cancel(cancelled, run["run_id"], wait=True, action="rollback")
    # replaced by a run with multitask_strategy="rollback"
    start_slow(client, replaced, "slow replaced")
    client.runs.wait(replaced, "runs", input=say("after rollback"), multitask_strategy="rollback")
    latest = client.runs.list(replaced)[0]["run_id"]
    final = thread_dialogue(client, replaced)
    assert final == [*first_turn, ("user", "after rollback"), ("assistant", "Answer to: after rollback")]

    [task] = wait_task(admin, project, replaced, lambda t: t["data"]["run_id"] == latest and shown(t) == final)
    assert shown(task) == final and "error" not in task["data"]
    # delivered after the cancelled run's end: a record of it would have been delivered too
    assert thread_dialogue(client, cancelled) == first_turn
    [task] = tasks_where(admin, project, session_id=cancelled)
    assert shown(task) == first_turn and "error" not in task["data"]


@pytest.mark.parametrize("langgraph_server", [APPS], indirect=True)
def test_a_run_interrupted_by_the_next_one_keeps_its_question(admin, langgraph_server):
    project = langgraph_server.env["RUNS_PROJECT"]
    client = langgraph_server.client()
    thread_id = client.threads.create()["thread_id"]
    client.runs.wait(thread_id, "runs", input=say("hello"))
    start_slow(client, thread_id, "slow first")
    client.runs.wait(thread_id, "runs", input=say("after interrupt"), multitask_strategy="interrupt")
    latest = client.runs.list(thread_id)[0]["run_id"]
    final = thread_dialogue(client, thread_id)
    assert final == [
        ("user", "hello"),
        ("assistant", "Answer to: hello"),
        ("user", "slow first"),
        ("user", "after interrupt"),
        ("assistant", "Answer to: after interrupt"),
    ]

    [task] = wait_task(admin, project, thread_id, lambda t: t["data"]["run_id"] == latest and shown(t) == final)
    assert shown(task) == final and "error" not in task["data"]


#: Delivery only when asked: what the server captured reaches Label Studio only if its shutdown drains it.
NO_BACKGROUND_DELIVERY = {"CAPTURE_DELIVERY_INTERVAL_S": "3600", "CAPTURE_EXIT_TIMEOUT_S": "0"}


@pytest.mark.parametrize("langgraph_server", [(APPS, NO_BACKGROUND_DELIVERY)], indirect=True)
def test_what_was_captured_before_sigterm_is_delivered(admin, langgraph_server):
    from langchain_label_studio import Project, Settings
    from langchain_label_studio.outbox import open_outbox
    from langchain_label_studio.record import CaptureRecord

    project = langgraph_server.env["RUNS_PROJECT"]
    client = langgraph_server.client()
    # The server's delivery worker starts with its first capture, takes what the outbox holds, then
    # sleeps for an hour. A record put there before shows when that first pass is over: it is gone.
    env = langgraph_server.env
    outbox = open_outbox(Settings(url=env["LABEL_STUDIO_URL"], state_dir=env["LABEL_STUDIO_STATE_DIR"]))
    seed = CaptureRecord(project=Project(f"{project}-seed").to_dict(), prompt="seed", response="seed")
    outbox.put_many([seed])
    client.runs.wait(client.threads.create()["thread_id"], "runs", input=say("warm up"))
    deadline = time.monotonic() + 60
    while outbox.stats().by_project.get(seed.queue_key):
        assert time.monotonic() < deadline, "the delivery worker's first pass did not deliver the seed record"
        time.sleep(0.1)
    outbox.close()
    threads = []
    for i in range(3):
        thread_id = client.threads.create()["thread_id"]
        client.runs.wait(thread_id, "runs", input=say(f"last words {i}"))
        threads.append(thread_id)
    assert all(tasks_where(admin, project, session_id=t) == [] for t in threads)

    langgraph_server.stop()
    for i, thread_id in enumerate(threads):
        [task] = tasks_where(admin, project, session_id=thread_id)
        assert shown(task) == [("user", f"last words {i}"), ("assistant", f"Answer to: last words {i}")]


@pytest.mark.parametrize("langgraph_server", [APPS], indirect=True)
def test_interrupted_then_resumed_thread_is_one_task(admin, langgraph_server):
    from langgraph_sdk.schema import Command

    project = langgraph_server.env["INTERRUPT_PROJECT"]
    client = langgraph_server.client()
    thread_id = client.threads.create()["thread_id"]
    client.runs.wait(thread_id, "approvals", input=say("refund order 7"))
    assert client.threads.get(thread_id)["status"] == "interrupted"
    client.runs.wait(thread_id, "approvals", command=Command(resume="yes"))
    assert client.threads.get(thread_id)["status"] == "idle"

    [task] = wait_task(admin, project, thread_id, lambda t: bool(t["predictions"]))
    assert [(m["role"], m["content"]) for m in task["data"]["prompt"]] == [("user", "refund order 7")]
    assert prefilled(task) == "Approved answer (yes) to: refund order 7"
