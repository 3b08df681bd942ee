"""A captured graph served by a real LangGraph Server (``langgraph dev``), driven by the official client."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
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


@pytest.fixture
def langgraph_server(label_studio, tmp_path: Path, request):
    """``langgraph dev`` on a free port, serving the langgraph.json in ``request.param`` (a folder)."""
    folder = getattr(request, "param", ROOT / "example_app")
    port = free_port()
    env = {
        **os.environ,
        **label_studio.env(),
        "LABEL_STUDIO_STATE_DIR": str(tmp_path / "state"),
        "INTERRUPT_PROJECT": f"approvals-{tmp_path.name[-20:]}",
        "PYTHONPATH": f"{ROOT / 'plugin'}{os.pathsep}{ROOT}",  # this checkout's plugin, not an installed one
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
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "langgraph dev did not start"
        time.sleep(0.3)
    yield url, env
    os.killpg(proc.pid, signal.SIGTERM)  # lifespan shutdown drains the outbox
    proc.wait(60)


def test_one_task_per_thread_with_run_ids(admin, langgraph_server):
    client = get_sync_client(url=langgraph_server[0])
    threads = {}
    for turns in (["hello server", "weather in Oslo?", "thanks"], ["one", "two", "three"]):
        thread_id = client.threads.create()["thread_id"]
        runs = []
        for i, text in enumerate(turns):
            body = {"messages": [{"role": "user", "content": text}]}
            if i < 2:
                client.runs.wait(thread_id, "chat", input=body)
            else:
                list(client.runs.stream(thread_id, "chat", input=body, stream_mode="values"))
            runs.append(client.runs.list(thread_id)[0]["run_id"])
        threads[thread_id] = (turns, runs)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = {t: tasks_where(admin, "Support chats", session_id=t) for t in threads}
        if all(len(v) == 1 and v[0]["data"].get("run_id") == threads[t][1][-1] for t, v in found.items()):
            break
        time.sleep(1)
    for thread_id, (turns, runs) in threads.items():
        [task] = tasks_where(admin, "Support chats", session_id=thread_id)
        data = task["data"]
        assert [m["content"] for m in data["prompt"] if m["role"] == "user"] == turns
        assert data["run_id"] == runs[-1] and data["graph_id"] == "chat" and data["assistant_id"]
        assert prefilled(task) == f"(turn 3) You said: {turns[-1]}"
    oslo = next(
        tasks_where(admin, "Support chats", session_id=t)[0]
        for t, (turns, _) in threads.items()
        if "weather in Oslo?" in turns
    )
    assert [m["role"] for m in oslo["data"]["prompt"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]


@pytest.mark.parametrize("langgraph_server", [ROOT / "tests" / "apps"], indirect=True)
def test_interrupted_then_resumed_thread_is_one_task(admin, langgraph_server):
    from langgraph_sdk.schema import Command

    url, env = langgraph_server
    project = env["INTERRUPT_PROJECT"]
    client = get_sync_client(url=url)
    thread_id = client.threads.create()["thread_id"]
    client.runs.wait(thread_id, "approvals", input={"messages": [{"role": "user", "content": "refund order 7"}]})
    assert client.threads.get(thread_id)["status"] == "interrupted"
    client.runs.wait(thread_id, "approvals", command=Command(resume="yes"))
    assert client.threads.get(thread_id)["status"] == "idle"

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tasks = tasks_where(admin, project, session_id=thread_id)
        if tasks and tasks[0]["predictions"]:
            break
        time.sleep(1)
    [task] = tasks_where(admin, project, session_id=thread_id)
    assert [(m["role"], m["content"]) for m in task["data"]["prompt"]] == [("user", "refund order 7")]
    assert prefilled(task) == "Approved answer (yes) to: refund order 7"
