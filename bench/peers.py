"""Request overhead of the plugin beside its peers, LangSmith tracing and the Langfuse handler, in one run.

    .venv/bin/python -m bench.peers [--seconds 10] [--concurrency 8] [--rounds 2] [--only /chat]

Needs the peers: ``.venv/bin/pip install -c tests/constraints.txt --group bench``.

The bench app (``bench/app.py``, instant fake model: the worst case) on each route, ``/ask`` (a
LangServe prompt chain) then ``/chat`` (a LangGraph ``MessagesState`` graph with a ``MemorySaver``
checkpointer, each connection one long session: its own ``X-Session-ID`` for the whole run), served:
bare; with the plugin (Label Studio up, through a pass-through proxy, as in ``bench.overhead``); with
a LangChain callback handler that does nothing (what LangChain's dispatch of callback events costs
any callback-based capture); with LangSmith tracing on as its users turn it on
(``LANGSMITH_TRACING=true``); with the Langfuse LangChain ``CallbackHandler`` on every run of a
request. LangSmith and Langfuse send to ``bench.sink``, a local server on core 1 that answers 200
at once, so their cost is the client side's alone, as the plugin's is with Label Studio on core 1.
Each round runs the five in that order, each run a fresh app process on core 0; load from ``wrk``
(else ``bench/load.py``) on core 1, as in ``bench.overhead``.

One table per route, averages of the rounds: req/s, its ratio to bare, the p99 latency's ratio to
bare, the app's CPU per request and bare's CPU per request divided by it (1.0: no cost; 0.5: each
request takes twice the CPU). ``sink`` is what the peer sent in its runs: requests to the sink and
their KB as sent (compressed where the client compresses). For the plugin, what Label Studio got:
records delivered and tasks updated, of those captured. On ``/chat``, ``turns`` is how long each
session had grown by the end of a run: a request's cost grows with its session, so a mode that serves
more requests serves them on longer sessions (compare its CPU per request with that in mind).
``--only`` takes a route or a mode name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import FaultProxy, free_port
from bench.overhead import label_studio_beside, load_arguments, measure, pinned
from bench.sink import Sink

ROUTES = ["/ask", "/chat"]
MODES = ["bare", "plugin", "noop", "langsmith", "langfuse"]
NAMES = {
    "bare": "bare",
    "plugin": "plugin (Label Studio up)",
    "noop": "no-op LangChain handler",
    "langsmith": "LangSmith tracing",
    "langfuse": "Langfuse handler",
}


def mode_env(mode: str, sink: Sink, label_studio: dict[str, str]) -> dict[str, str]:
    """The env of the bench app for ``mode`` (on top of the run's base env)."""
    if mode == "plugin":
        return {"BENCH_CAPTURE": "1", **label_studio}
    if mode == "langsmith":
        return {
            "BENCH_CAPTURE": "langsmith",
            "LANGSMITH_TRACING": "true",
            "LANGSMITH_ENDPOINT": sink.url,
            "LANGSMITH_API_KEY": "lsv2_pt_bench",
            "LANGSMITH_PROJECT": "bench",
        }
    if mode == "langfuse":
        return {
            "BENCH_CAPTURE": "langfuse",
            "LANGFUSE_HOST": sink.url,
            "LANGFUSE_BASE_URL": sink.url,
            "LANGFUSE_PUBLIC_KEY": "pk-lf-bench",
            "LANGFUSE_SECRET_KEY": "sk-lf-bench",
        }
    return {"BENCH_CAPTURE": mode} if mode == "noop" else {}


def sent(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """Requests and bytes the sink received between two of its counts."""
    requests = sum(n for n, _ in after.values()) - sum(n for n, _ in before.values())
    return requests, sum(b for _, b in after.values()) - sum(b for _, b in before.values())


def avg(runs: list[dict], key: str) -> float:
    return sum(r[key] for r in runs) / len(runs)


def report(
    route: str, results: dict[str, list[dict]], traffic: dict[str, list[tuple[int, int]]], connections: int
) -> None:
    """The route's table: one row per mode, averages of its rounds."""
    turns = f" {'turns':>6}" if route == "/chat" else ""
    print(
        f"\n{route}\n{'':26} {'req/s':>7} {'vs bare':>8} {'p99 vs bare':>12} {'CPU ms/req':>11} {'bare/CPU':>9}"
        f"{turns}  sink",
        flush=True,
    )
    bare = results["bare"]
    rps, p99, cpu = avg(bare, "rps"), avg(bare, "p99_ms"), avg(bare, "cpu_ms_per_request")
    for mode, runs in results.items():
        row_cpu = avg(runs, "cpu_ms_per_request")
        row = (
            f"{NAMES[mode]:26} {avg(runs, 'rps'):7.0f} {avg(runs, 'rps') / rps:8.3f} "
            f"{avg(runs, 'p99_ms') / p99:12.3f} {row_cpu:11.2f} {cpu / row_cpu:9.3f}"
        )
        if route == "/chat":  # each session's length at the end of a run
            row += f" {(avg(runs, 'warm_requests') + avg(runs, 'requests')) / connections:6.0f}"
        if mode in ("langsmith", "langfuse"):
            requests, size = sum(n for n, _ in traffic[mode]), sum(b for _, b in traffic[mode])
            row += f"  {requests} requests, {size / 1024:.0f} KB" + ("  (NOTHING SENT)" if not requests else "")
        elif mode == "plugin":
            health = [r["health"] for r in runs]
            captured, delivered, updated = (sum(h[k] for h in health) for k in ("captured", "delivered", "updated"))
            row += f"  Label Studio: {delivered} delivered, {updated} updated of {captured} captured"
        errors = sum(r["errors"] for r in runs)
        print(row + (f"  ({errors} errors)" if errors else ""), flush=True)


def main() -> None:
    args = load_arguments(__doc__, rounds=2)
    for name in [n for n in os.environ if n.startswith(("LANGSMITH_", "LANGCHAIN_", "LANGFUSE_"))]:
        del os.environ[name]  # tracing set up in this shell would trace every mode

    server = label_studio_beside(args.label_studio_port, args.label_studio_data_dir)
    proxy = FaultProxy(server.port).start()
    proxy.set_mode("pass")
    sink = Sink(free_port(), pinned(1))
    state = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    only = args.only or ""
    routes = [r for r in ROUTES if only not in ROUTES or only == r]
    modes = [m for m in MODES if m == "bare" or only in ROUTES or only in m]
    loader = "wrk" if shutil.which("wrk") else "bench/load.py"
    print(
        f"{os.cpu_count()} CPUs, load from {loader}, {args.concurrency} connections, {args.seconds:.0f} s per run, "
        f"{args.rounds} rounds of {', '.join(modes)}; instant model; sink at {sink.url}"
    )
    runs = 0
    try:
        for route in routes:
            base_env = {"BENCH_DELAY_MS": "0", "BENCH_PROJECT": f"Bench peers {time.strftime('%Y%m%d-%H%M%S')}"}
            results: dict[str, list[dict]] = {m: [] for m in modes}
            traffic: dict[str, list[tuple[int, int]]] = {m: [] for m in modes}
            for _ in range(args.rounds):
                for mode in modes:
                    runs += 1
                    label_studio = {
                        "LABEL_STUDIO_URL": proxy.url,
                        "LABEL_STUDIO_API_KEY": server.api_key,
                        "LABEL_STUDIO_STATE_DIR": str(state / str(runs)),
                    }
                    before = sink.counts()
                    env = {**base_env, **mode_env(mode, sink, label_studio)}
                    result = measure(env, args, health=mode == "plugin", path=route)
                    expected = "answer to cats" if route == "/chat" else "answer to Tell me about cats"
                    assert result.get("answer", expected) == expected, f"the response changed: {result['answer']!r}"
                    results[mode].append(result)
                    traffic[mode].append(sent(before, sink.counts()))
            report(route, results, traffic, args.concurrency)
    finally:
        sink.close()
        proxy.close()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
