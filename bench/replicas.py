"""Scaling out: the PostgreSQL outbox on 1 and 2 replicas beside the SQLite outbox on one, in one run.

    .venv/bin/python -m bench.replicas [--records 5000] [--seconds 10] [--concurrency 8]
                                       [--pg postgresql://postgres@127.0.0.1:5432]
                                       [--database sqlite|postgresql://...]

Delivery rate: the same backlog of prompt records drained into a fresh project by a plain
bulk import, by one process with the SQLite outbox, by one with the PostgreSQL outbox, and
by two processes sharing the PostgreSQL outbox.

Request overhead: the bench app (instant fake model) bare vs with the plugin, on one
replica (SQLite and PostgreSQL outboxes) and on two replicas (PostgreSQL outbox), each
replica loaded by its own ``wrk`` (or bench/load.py) with half the connections. Apps are
pinned to core 0, load and Label Studio to core 1, as in bench/overhead.py.

``--database`` is the local Label Studio's own database (``local up --database``): SQLite in
its data directory (the default) or PostgreSQL.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg

from bench.common import ROOT, bench_app
from bench.delivery import backlog
from bench.overhead import load_with_python, load_with_wrk, pinned
from langchain_label_studio import local
from langchain_label_studio.client import LabelStudioClient
from langchain_label_studio.label_config import PROMPT_CONFIG, parse_layout
from langchain_label_studio.outbox import open_outbox
from langchain_label_studio.pipeline import Pipeline
from langchain_label_studio.settings import Settings
from langchain_label_studio.task import build_task


@contextlib.contextmanager
def database(pg: str) -> Iterator[str]:
    name = f"lls_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{pg}/{name}"
    finally:
        with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drain(settings: Settings) -> None:
    """Deliver until the outbox is empty (run in each worker process)."""
    pipeline = Pipeline(settings)
    pipeline.start()
    assert pipeline.flush(3600), pipeline.health()
    pipeline.close()


def drain_rate(server: local.LocalServer, n: int, outbox: str | None, workers: int, title: str) -> float:
    settings = Settings(url=server.url, api_key=server.api_key, state_dir=tempfile.mkdtemp(), outbox=outbox)
    store = open_outbox(settings)
    store.put_many(backlog(title, n))
    store.close()
    env = {**os.environ, "LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": server.api_key}
    env.update(LABEL_STUDIO_STATE_DIR=str(settings.state_dir), LABEL_STUDIO_OUTBOX_URL=outbox or "")
    started = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-m", "bench.replicas", "--drain"], cwd=ROOT, env=env) for _ in range(workers)
    ]
    assert all(p.wait() == 0 for p in procs)
    return n / (time.perf_counter() - started)


def plain_rate(server: local.LocalServer, n: int, batch: int) -> float:
    client = LabelStudioClient(server.url, server.api_key, timeout=300)
    title = f"Bench plain {time.strftime('%H%M%S')}"
    records = backlog(title, n)
    project = client.create_project(title, PROMPT_CONFIG)
    layout = parse_layout(PROMPT_CONFIG)
    started = time.perf_counter()
    for i in range(0, n, batch):
        client.import_tasks(project["id"], [build_task(r, layout) for r in records[i : i + batch]])
    return n / (time.perf_counter() - started)


def overhead(env: dict[str, str], replicas: int, args: argparse.Namespace) -> dict:
    """Requests/s (summed) and p99 (worst) of ``replicas`` app processes loaded at once."""
    load = load_with_wrk if shutil.which("wrk") else load_with_python
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(bench_app(env, pinned(0)))[1] for _ in range(replicas)]
        per = max(1, args.concurrency // replicas)
        with ThreadPoolExecutor(replicas) as pool:
            list(pool.map(lambda u: load(u, per, 2), urls))  # warm-up
            results = list(pool.map(lambda u: load(u, per, args.seconds), urls))
    return {"rps": sum(r["rps"] for r in results), "p99_ms": max(r["p99_ms"] for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--label-studio-port", type=int, default=local.DEFAULT_PORT)
    parser.add_argument(
        "--database", default=None, metavar="URL", help="the local Label Studio's database: sqlite or postgresql://..."
    )
    parser.add_argument("--drain", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drain:
        drain(Settings())
        return

    server = local.up(args.label_studio_port, database=args.database)
    stamp = time.strftime("%H%M%S")
    print(
        f"{os.cpu_count()} CPUs; delivery of {args.records} prompt records into fresh projects of one Label Studio "
        f"on {server.database_label}"
    )
    plain = plain_rate(server, args.records, Settings().batch_size)
    print(f"  {'plain bulk import':38} {plain:7.0f} tasks/s  1.00x")
    rates = [("SQLite outbox, 1 process", None, 1), ("PostgreSQL outbox, 1 process", "pg", 1)]
    rates.append(("PostgreSQL outbox, 2 processes", "pg", 2))
    for name, kind, workers in rates:
        with contextlib.ExitStack() as stack:
            outbox = stack.enter_context(database(args.pg)) if kind else None
            rate = drain_rate(server, args.records, outbox, workers, f"Bench {name[:30]} {stamp}")
        print(f"  {name:38} {rate:7.0f} tasks/s  {rate / plain:.2f}x")

    print(f"\nrequest overhead, instant model, {args.concurrency} connections in all, {args.seconds:.0f} s")
    ls_env = {"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": server.api_key, "BENCH_PROJECT": "Bench scale"}
    for replicas, kind in ((1, None), (1, "pg"), (2, "pg")):
        with contextlib.ExitStack() as stack:
            outbox = stack.enter_context(database(args.pg)) if kind else ""
            state = tempfile.mkdtemp(prefix="bench-state-")
            plugin_env = {**ls_env, "BENCH_CAPTURE": "1", "LABEL_STUDIO_STATE_DIR": state}
            plugin_env["LABEL_STUDIO_OUTBOX_URL"] = outbox
            bare = overhead({}, replicas, args)
            plugin = overhead(plugin_env, replicas, args)
            shutil.rmtree(state, ignore_errors=True)
        label = f"{replicas} replica{'s' if replicas > 1 else ''}, {'PostgreSQL' if kind else 'SQLite'} outbox"
        print(
            f"  {label:38} bare {bare['rps']:6.0f} req/s, plugin {plugin['rps']:6.0f} "
            f"({plugin['rps'] / bare['rps']:.2f}x); p99 {bare['p99_ms']:.1f} -> {plugin['p99_ms']:.1f} ms "
            f"({plugin['p99_ms'] / bare['p99_ms']:.2f}x)"
        )


if __name__ == "__main__":
    main()
