"""What the benchmarks share: serving the bench app, and reading a process's memory."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from faults import FaultProxy, free_port  # noqa: E402, F401  (re-exported for the benchmarks)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def bench_app(env: dict[str, str], prefix: list[str] | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """Serve ``bench.app`` with uvicorn (one process); yields the process and its invoke URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "bench.app:app", "--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen([*(prefix or []), *cmd, "--no-access-log"], cwd=ROOT, env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}/ask/invoke"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.post(url, json={"input": {"topic": "warm"}}, timeout=5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and server.poll() is None, "bench app did not start"
                time.sleep(0.2)
        yield server, url
    finally:
        server.terminate()
        server.wait(60)
