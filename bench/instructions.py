"""CPU instructions per request, bare and with the plugin: a measure machine noise cannot move.

    .venv/bin/python -m bench.instructions [--requests 45]

Needs valgrind (``apt-get install valgrind``). Each variant serves the bench app's LangServe
route in one process, without HTTP, under ``callgrind``, which counts the instructions executed
while the requests are served (start-up excluded):

- ``bare``: the app alone;
- ``noop``: a LangChain callback handler that does nothing attached to every run, as the plugin
  attaches its own (what LangChain's callback dispatch costs any callback-based capture);
- ``capture``: the middleware, its records only handed over (the request path alone);
- ``plugin``: the middleware, with the writer's work (redaction, encoding, the outbox commit)
  done inline every 15 requests, as the writer thread does every 50 ms at 300 requests/s;
- ``delivery``: per record, delivering a backlog of 300 prompt records to a local Label Studio
  (started like the other benchmarks do).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from bench.common import ROOT

VARIANTS = ("bare", "noop", "capture", "plugin", "delivery")
BATCH = 15


def serve(variant: str, requests: int) -> None:
    """Serve ``requests`` requests in this process; only the measured part runs in ``functools.reduce``."""
    os.environ.setdefault("LABEL_STUDIO_STATE_DIR", tempfile.mkdtemp(prefix="bench-instructions-"))
    os.environ["LABEL_STUDIO_DELIVERY"] = "off"
    os.environ["BENCH_CAPTURE"] = {"bare": "0", "noop": "noop", "capture": "1", "plugin": "1"}[variant]
    from langchain_label_studio.pipeline import Pipeline, _registry

    Pipeline._ensure_started = lambda self: None  # no writer thread: its work runs inline below
    from bench.app import app

    pipeline: Pipeline | None = None
    writer = False
    body = json.dumps({"input": {"topic": "cats"}}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/ask/invoke",
        "raw_path": b"/ask/invoke",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"x-user-id", b"bench"), (b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }

    async def one() -> None:
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict:
            return messages.pop() if messages else {"type": "http.disconnect"}

        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        await app(dict(scope), receive, send)
        assert sent[0]["status"] == 200, sent[0]

    async def run(n: int) -> None:
        for i in range(n):
            await one()
            if writer and i % BATCH == BATCH - 1:
                pipeline._commit()
        if writer:
            pipeline._commit()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(run(1))  # the first request opens the pipeline
    pipeline = next(iter(_registry.values()), None)
    assert (pipeline is not None) == (variant in ("capture", "plugin"))
    writer = variant == "plugin"
    loop.run_until_complete(run(2 * BATCH))  # warm caches and the outbox
    functools.reduce(lambda _, n: loop.run_until_complete(run(n)), [0, requests])
    if writer:
        assert pipeline.outbox.stats().pending == 1 + 2 * BATCH + requests, pipeline.health()


def deliver(records: int) -> None:
    """Deliver a backlog of ``records`` prompt records; only the delivery is measured."""
    from bench.delivery import backlog
    from langchain_label_studio import Settings, local
    from langchain_label_studio.pipeline import Pipeline

    server = local.up()
    pipeline = Pipeline(Settings(url=server.url, api_key=server.api_key, state_dir=tempfile.mkdtemp(), deliver=False))
    title = f"Instructions {os.getpid()}"
    pipeline.outbox.put_many(backlog(title, 10))
    pipeline.delivery.step()  # creates the project
    pipeline.outbox.put_many(backlog(title, records))
    functools.reduce(lambda _, __: pipeline.delivery.step(), [0, 1])
    assert pipeline.outbox.stats().pending == 0


def callgrind(args: list[str]) -> int:
    """Instructions executed inside ``functools.reduce`` by ``python -m <args>`` (under callgrind)."""
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--collect-atstart=no",
        "--toggle-collect=functools_reduce",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        *args,
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or not found:
        raise SystemExit(f"{' '.join(args)}: valgrind failed\n{out.stderr[-2000:]}")
    return int(found.group(1))


def count(variant: str, n: int) -> int:
    return callgrind(["bench.instructions", "--inner", variant, "--requests", str(n)]) // n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=45)
    parser.add_argument("--inner", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner == "delivery":
        deliver(args.requests)
        return
    if args.inner:
        serve(args.inner, args.requests)
        return
    if not shutil.which("valgrind"):
        raise SystemExit("install valgrind first: apt-get install valgrind")
    sizes = {v: 300 if v == "delivery" else args.requests for v in VARIANTS}
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        counts = dict(zip(VARIANTS, pool.map(lambda v: count(v, sizes[v]), VARIANTS), strict=True))
    bare = counts["bare"]
    print(f"instructions per request ({args.requests} requests; delivery: per record of 300)")
    print(f"bare app                         {bare / 1e6:6.2f} M")
    rows = (
        ("no-op LangChain handler", "noop"),
        ("plugin, request path only", "capture"),
        ("plugin, capture and outbox", "plugin"),
    )
    for label, key in rows:
        print(f"{label:32} {counts[key] / 1e6:6.2f} M  (+{(counts[key] - bare) / bare:.1%} of bare)")
    print(f"{'delivery, per record':32} {counts['delivery'] / 1e6:6.2f} M  (+{counts['delivery'] / bare:.1%} of bare)")


if __name__ == "__main__":
    main()
