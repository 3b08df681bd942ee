"""The demo: a local Label Studio, the example app with capture on, a few requests, what landed.

    python -m example_app.demo [--port 8000] [--label-studio-port 8080]

The example app's own output (LangServe's banner, uvicorn's log) goes to a log file, whose path
the demo prints. Label Studio keeps running afterwards so you can open the tasks; stop it with
``langchain-label-studio local down``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from langchain_label_studio import local
from langchain_label_studio.client import LabelStudioClient
from langchain_label_studio.state_dir import open_private, private_dir

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".state" / "demo"
PROJECTS = ("Jokes", "Support chats")


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"error: {what} did not happen within {timeout:.0f}s")


def send_samples(app: httpx.Client) -> int:
    """A few jokes and two multi-turn chats of two users; returns the number of requests."""
    requests = 0
    for topic in ("cats", "databases"):
        resp = app.post("/joke/invoke", json={"input": {"topic": topic}}, headers={"X-User-ID": "alice"})
        resp.raise_for_status()
        requests += 1
    # the end user liked the last joke: their thumbs-up lands on its task
    token = resp.headers["x-label-studio-feedback-token"]
    app.post("/label-studio/feedback", json={"token": token, "score": 1, "comment": "Ha!"}).raise_for_status()
    run = uuid.uuid4().hex[:6]
    chats = {
        ("alice", f"demo-alice-{run}"): ["Hi, I need help with my order.", "What is the weather in Paris?", "Thanks!"],
        ("bob", f"demo-bob-{run}"): ["Tell me a joke about penguins", "Another one, please"],
    }
    for (user, session), turns in chats.items():
        for text in turns:
            body = {"input": {"messages": [{"type": "human", "content": text}]}}
            headers = {"X-User-ID": user, "X-Session-ID": session}
            app.post("/chat/invoke", json=body, headers=headers).raise_for_status()
            requests += 1
    return requests


def start_app(port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    """The example app under uvicorn, its output (banner, log lines) written to ``log`` (0600)."""
    fd = open_private(log, os.O_WRONLY | os.O_TRUNC)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "example_app.app:app", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
        )
    finally:
        os.close(fd)


def wait_started(app: httpx.Client, proc: subprocess.Popen, log: Path) -> None:
    """Wait until the app answers its health check; exit with the log's path if it does not start."""

    def healthy() -> bool:
        if proc.poll() is not None:
            raise SystemExit(f"error: the example app exited with {proc.returncode}; see {log}")
        return app.get("/label-studio/health").status_code == 200

    wait_until(healthy, 60, f"the example app starting (see {log})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8000, help="port of the example app")
    parser.add_argument("--label-studio-port", type=int, default=local.DEFAULT_PORT)
    args = parser.parse_args()

    print(f"Starting a local Label Studio on port {args.label_studio_port} (first run installs it)...", flush=True)
    server = local.up(args.label_studio_port)
    password = local.password_file(server)
    print(f"Label Studio is up at {server.url} (log in as {server.username}, password in {password})")

    log = private_dir(STATE) / "example-app.log"
    env = {
        **os.environ,
        **server.env(),
        "LABEL_STUDIO_STATE_DIR": str(STATE),
        "LABEL_STUDIO_FEEDBACK_SECRET": os.environ.get("LABEL_STUDIO_FEEDBACK_SECRET") or secrets.token_hex(16),
    }
    model = (
        "OpenAI" if os.environ.get("OPENAI_API_KEY") else "a deterministic fake model (set OPENAI_API_KEY for OpenAI)"
    )
    print(f"Starting the example app on port {args.port} with {model}; its output goes to {log}", flush=True)
    proc = start_app(args.port, env, log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=60) as app:
            wait_started(app, proc, log)
            sent = send_samples(app)
            print(f"Sent {sent} requests; waiting for delivery to Label Studio...", flush=True)
            wait_until(lambda: app.get("/label-studio/health").json()["pending"] == 0, 120, "delivery")
            health = app.get("/label-studio/health").json()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)

    if health.get("last_error"):
        print(f"last delivery error: {health['last_error']}")
    client = LabelStudioClient(server.url, server.api_key)
    print()
    for title in PROJECTS:
        project = client.find_project(title)
        if project is None:
            print(f"{title}: no project (nothing landed)")
            continue
        count = client.get_project(project["id"]).get("task_number", 0)
        print(f"{title}: {count} task(s) -> {server.url}/projects/{project['id']}/data")
    client.close()
    print(f"\nOpen the links above and log in as {server.username} with the password in {password}.")
    cli = Path(sys.executable).parent / "langchain-label-studio"
    cli_name = os.path.relpath(cli) if cli.is_relative_to(Path.cwd()) else str(cli)
    print(f"Stop Label Studio with: {cli_name} local down --port {args.label_studio_port}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
