"""What a SIGKILL loses: answers the clients received whose captures never reached the outbox.

    .venv/bin/python -m bench.kill_window [--kills 10] [--seconds 3] [--clients 6]

Each round serves the bench app (``/ask``, instant model, the plugin with delivery off, so every
record the writer commits stays in the outbox) on core 0, posts to it from ``--clients`` threads on
core 1 for ``--seconds``, then kills the app with SIGKILL while the load goes on. Afterwards it
reads the outbox and compares it with the answers the clients had received (each answer carries the
capture's request id in ``X-Request-ID``): a lost capture is an answer received with no record on
disk. For each lost one, the time between its answer and the kill says how long an answer can
stay only in memory: the commit window. One more round stops the app with SIGTERM instead (a clean
shutdown commits what is buffered): it must lose nothing.

Printed per round: answers received, captures lost, the oldest lost answer's age at the kill.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.common import bench_app
from bench.overhead import pinned


def load(url: str, stop: threading.Event, answers: list[tuple[str, float]], clients: int) -> list[threading.Thread]:
    """Clients posting until ``stop``; ``answers`` gets (request id, monotonic time received)."""

    def client(n: int) -> None:
        with httpx.Client(timeout=10) as http:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    resp = http.post(url, json={"input": {"topic": f"kill {n} {i}"}}, headers={"X-User-ID": "bench"})
                except httpx.HTTPError:
                    return  # the app is gone
                if resp.status_code == 200:
                    answers.append((resp.headers["x-request-id"], time.monotonic()))

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    return threads


def stored_request_ids(state: Path) -> set[str]:
    ids = set()
    for path in state.glob("outbox*.db"):
        with sqlite3.connect(path) as db:
            for (payload,) in db.execute("SELECT payload FROM records"):
                ids.add(json.loads(payload)["data"]["request_id"])
    return ids


def one_round(sig: signal.Signals, seconds: float, clients: int) -> dict[str, float]:
    state = Path(tempfile.mkdtemp(prefix="bench-kill-"))
    env = {
        "BENCH_CAPTURE": "1",
        "LABEL_STUDIO_DELIVERY": "off",
        "LABEL_STUDIO_STATE_DIR": str(state),
        "LABEL_STUDIO_URL": "http://127.0.0.1:9",
    }
    stop, answers = threading.Event(), []
    with bench_app(env, pinned(0)) as (server, url):
        os.sched_setaffinity(0, {1} if pinned(1) else os.sched_getaffinity(0))
        threads = load(url, stop, answers, clients)
        time.sleep(seconds)
        killed_at = time.monotonic()
        server.send_signal(sig)
        server.wait(60)
        stop.set()
        for t in threads:
            t.join(15)
    stored = stored_request_ids(state)
    received = [(rid, at) for rid, at in answers if at <= killed_at]
    lost = [killed_at - at for rid, at in received if rid not in stored]
    return {"answers": len(received), "lost": len(lost), "oldest_lost_ms": max(lost, default=0.0) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=6)
    args = parser.parse_args()
    print(f"{'signal':8} {'answers':>8} {'lost':>5} {'oldest lost answer':>19}")
    rounds = []
    for sig in [signal.SIGKILL] * args.kills + [signal.SIGTERM]:
        r = one_round(sig, args.seconds, args.clients)
        print(f"{sig.name:8} {r['answers']:8d} {r['lost']:5d} {r['oldest_lost_ms']:16.1f} ms", flush=True)
        if sig == signal.SIGKILL:
            rounds.append(r)
    lost = [r["lost"] for r in rounds]
    window = [r["oldest_lost_ms"] for r in rounds]
    rate = statistics.mean(r["answers"] for r in rounds) / args.seconds
    print(
        f"SIGKILL, {len(rounds)} kills at ~{rate:.0f} answers/s: lost per kill median {statistics.median(lost):.0f}, "
        f"max {max(lost)}; oldest lost answer median {statistics.median(window):.1f} ms, max {max(window):.1f} ms"
    )


if __name__ == "__main__":
    main()
