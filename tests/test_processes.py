"""Process life: SIGKILL under load, several workers (uvicorn --workers, gunicorn with and without --preload)."""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, SOAK, serve, tasks_where, wait_delivered, wait_healthy
from faults import free_port


def jokes_load(
    base_url: str, user: str, stop: threading.Event, done: list, threads: int = 4, reconnect: bool = False
) -> list[threading.Thread]:
    """Clients posting jokes until ``stop``; ``done`` collects (request_id, finished_at). With
    ``reconnect`` each request comes on a new connection (so that several workers share them)."""
    headers = {"X-User-ID": user, **({"Connection": "close"} if reconnect else {})}

    def client() -> None:
        with httpx.Client(base_url=base_url, timeout=10) as http:
            while not stop.is_set():
                try:
                    resp = http.post("/joke/invoke", json={"input": {"topic": uuid.uuid4().hex[:6]}}, headers=headers)
                except httpx.HTTPError:
                    return
                if resp.status_code == 200:
                    done.append((resp.headers["x-request-id"], time.monotonic()))

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    return workers


def wait_committed(base_url: str, timeout: float = 60.0) -> float:
    """Wait until the app's writer has committed every capture the app had made when this was
    called (its health's ``committed`` reaches that ``captured``); returns when it was called:
    every answer received before then is on disk once this returns."""
    asked_at = time.monotonic()
    captured = httpx.get(f"{base_url}/label-studio/health", timeout=30).json()["captured"]
    deadline = time.monotonic() + timeout
    while (health := httpx.get(f"{base_url}/label-studio/health", timeout=30).json())["committed"] < captured:
        assert time.monotonic() < deadline, f"the captures were not committed in {timeout}s: {health}"
        time.sleep(0.05)
    return asked_at


def outbox_request_ids(state: Path) -> set[str]:
    ids = set()
    for path in state.glob("outbox-*.db"):
        with sqlite3.connect(path) as db:
            for (payload,) in db.execute("SELECT payload FROM records"):
                ids.add(__import__("json").loads(payload)["data"]["request_id"])
    return ids


def test_sigkill_under_load_loses_nothing_committed(label_studio, admin, tmp_path):
    user = f"kill-{uuid.uuid4().hex[:6]}"
    state = tmp_path / "state"
    port = free_port()
    env = {**os.environ, **label_studio.env(), "LABEL_STUDIO_STATE_DIR": str(state)}
    cmd = [sys.executable, "-m", "uvicorn", "example_app.app:app", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, proc)

    stop, done = threading.Event(), []
    clients = jokes_load(base, user, stop, done)
    time.sleep(3 * SOAK)  # the load before the kill (the scenario)
    # A capture is submitted before its answer is sent: once the writer has committed what the app
    # had captured at `safe_before`, every answer received before then is on disk. The load goes on.
    safe_before = wait_committed(base)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stop.set()
    for c in clients:
        c.join()
    waiting = outbox_request_ids(state)

    with serve("example_app.app:app", label_studio, state) as app:
        wait_delivered(app, timeout=120 * SOAK)

    tasks = tasks_where(admin, "Jokes", user_id=user)
    counts = collections.Counter(t["data"]["request_id"] for t in tasks)
    assert not [k for k, v in counts.items() if v > 1], "a capture was delivered twice"
    assert waiting <= set(counts), "records on disk at the kill were not all delivered"
    # What was on disk at the kill is delivered; answers after `safe_before` may be lost with the
    # last commit window.
    committed = {rid for rid, at in done if at < safe_before}
    assert len(committed) > 50
    assert committed <= set(counts), f"{len(committed - set(counts))} committed captures lost"


@pytest.mark.parametrize(
    "server",
    ["uvicorn --workers 2", "gunicorn -w 2", "gunicorn -w 2 --preload"],
)
def test_several_workers_deliver_each_capture_once(label_studio, admin, tmp_path, server):
    user = f"w-{uuid.uuid4().hex[:6]}"
    port = free_port()
    env = {**os.environ, **label_studio.env(), "LABEL_STUDIO_STATE_DIR": str(tmp_path / "state")}
    if server.startswith("uvicorn"):
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "example_app.app:app",
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ]
    else:
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "example_app.app:app",
            "-k",
            "uvicorn.workers.UvicornWorker",
            "-b",
            f"127.0.0.1:{port}",
            *server.split()[1:],
            "--log-level",
            "warning",
        ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc)
        stop, done = threading.Event(), []
        clients = jokes_load(base, user, stop, done, threads=6, reconnect=True)
        # Which processes answer, asked on new connections while both share the load (an idle
        # server may hand every new connection to the same worker).
        pids = set()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            pids.add(httpx.get(f"{base}/label-studio/health", timeout=30).json()["pid"])
            time.sleep(0.05)
        stop.set()
        for c in clients:
            c.join()
        answered = {rid for rid, _ in done}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if {t["data"]["request_id"] for t in tasks_where(admin, "Jokes", user_id=user)} >= answered:
                break
            time.sleep(1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)

    tasks = tasks_where(admin, "Jokes", user_id=user)
    counts = collections.Counter(t["data"]["request_id"] for t in tasks)
    assert len(done) > 30
    assert not [k for k, v in counts.items() if v > 1], "a capture was delivered twice"
    assert set(counts) == {rid for rid, _ in done}
    assert len(pids) == 2, "both workers should answer (and capture)"


def test_an_app_with_delivery_off_leaves_it_to_a_deliver_process(label_studio, admin, tmp_path):
    user = f"side-{uuid.uuid4().hex[:6]}"
    state = tmp_path / "state"
    with serve("example_app.app:app", label_studio, state, LABEL_STUDIO_DELIVERY="off") as app:
        ids = [
            app.post("/joke/invoke", json={"input": {"topic": f"t{i}"}}, headers={"X-User-ID": user}).headers[
                "x-request-id"
            ]
            for i in range(20)
        ]
        health = app.get("/label-studio/health").json()
        assert health["delivery"] == "by another process"
        deadline = time.monotonic() + 30
        while health["committed"] < 20:  # in the outbox, where a delivering app would take them from
            assert time.monotonic() < deadline, health
            time.sleep(0.05)
            health = app.get("/label-studio/health").json()
        # Nothing happening is the point: more than a delivery interval (1 s) with the records on disk.
        time.sleep(2.5)
        health = app.get("/label-studio/health").json()
        assert health["pending"] == 20 and health["delivered"] == 0
        assert tasks_where(admin, "Jokes", user_id=user) == []

    env = {**os.environ, **label_studio.env(), "LABEL_STUDIO_STATE_DIR": str(state)}
    deliver = subprocess.Popen(
        [sys.executable, "-m", "langchain_label_studio.cli", "deliver", "--report-every", "1"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(tasks_where(admin, "Jokes", user_id=user)) < 20 and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        deliver.send_signal(signal.SIGTERM)
        _, err = deliver.communicate(timeout=30)
    assert deliver.returncode == 0, err
    assert "delivering" in err and "stopped: pending 0, delivered 20," in err
    tasks = tasks_where(admin, "Jokes", user_id=user)
    assert sorted(t["data"]["request_id"] for t in tasks) == sorted(ids)
