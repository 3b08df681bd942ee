"""Delivery rate: a backlog of prompt captures drained by the plugin vs a plain bulk import.

    .venv/bin/python -m bench.delivery [--records 10000] [--label-studio-port 8080]
                                       [--database sqlite] [--database postgresql://postgres@127.0.0.1:5432/lls_bench]

Both write the same tasks (prompt, pre-filled answer, metadata) into fresh projects of the
same Label Studio, in one run: first the plain import (client.import_tasks in batches of
the plugin's batch size), then the plugin draining an outbox that holds the backlog.

``--database`` names the local Label Studio's database (``local up --database``): SQLite in
its data directory (the default) or PostgreSQL, as production runs it. Given several times,
each database gets a Label Studio of its own, on consecutive ports from
``--label-studio-port``, and the figures are printed side by side.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from langchain_label_studio import local
from langchain_label_studio.client import LabelStudioClient
from langchain_label_studio.label_config import PROMPT_CONFIG, parse_layout
from langchain_label_studio.pipeline import Pipeline
from langchain_label_studio.project import Project
from langchain_label_studio.record import CaptureRecord
from langchain_label_studio.settings import Settings
from langchain_label_studio.task import build_task

SQLITE = local.SQLITE


def backlog(title: str, n: int) -> list[CaptureRecord]:
    project = Project(title).to_dict()
    return [
        CaptureRecord(
            project=project,
            prompt=f"Tell me a joke about topic number {i}",
            response=f"Why did topic {i} cross the road? To get to the other side!",
            data={"user_id": f"user-{i % 50}", "session_id": None, "route": "/joke", "request_id": f"req-{i}"},
        )
        for i in range(n)
    ]


def measure(server: local.LocalServer, n: int) -> dict[str, float]:
    """Seconds for a plain bulk import of ``n`` tasks and for the plugin to drain ``n`` records
    into ``server``, each into a fresh project; and how many tasks landed from the outbox."""
    client = LabelStudioClient(server.url, server.api_key, timeout=300)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    settings = Settings(url=server.url, api_key=server.api_key, state_dir=tempfile.mkdtemp())

    plain_title = f"Bench plain import {stamp}"
    records = backlog(plain_title, n)
    project = client.create_project(plain_title, PROMPT_CONFIG)
    layout = parse_layout(PROMPT_CONFIG)
    started = time.perf_counter()
    for i in range(0, len(records), settings.batch_size):
        client.import_tasks(project["id"], [build_task(r, layout) for r in records[i : i + settings.batch_size]])
    plain_s = time.perf_counter() - started

    plugin_title = f"Bench plugin drain {stamp}"
    pipeline = Pipeline(settings)
    pipeline.outbox.put_many(backlog(plugin_title, n))
    started = time.perf_counter()
    pipeline.start()
    assert pipeline.flush(3600), pipeline.health()
    plugin_s = time.perf_counter() - started
    pipeline.close()

    landed = client.get_project(client.find_project(plugin_title)["id"])["task_number"]
    client.close()
    return {"plain_s": plain_s, "plugin_s": plugin_s, "landed": landed, "batch": settings.batch_size}


def report(name: str, n: int, m: dict[str, float]) -> None:
    print(f"Label Studio on {name}: {n} records, batches of {m['batch']}; {m['landed']} tasks landed from the outbox")
    print(f"  plain bulk import : {m['plain_s']:7.1f} s  {n / m['plain_s']:7.0f} tasks/s")
    print(f"  plugin drain      : {m['plugin_s']:7.1f} s  {n / m['plugin_s']:7.0f} tasks/s")
    print(f"  ratio             : {m['plain_s'] / m['plugin_s']:.2f}x the plain import rate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--label-studio-port", type=int, default=local.DEFAULT_PORT)
    parser.add_argument(
        "--database",
        action="append",
        metavar="URL",
        help=f"{SQLITE} (default) or a postgresql:// URL for the local Label Studio; repeat to compare",
    )
    args = parser.parse_args()
    for offset, database in enumerate(args.database or [SQLITE]):
        server = local.up(args.label_studio_port + offset, database=database)
        report(server.database_label, args.records, measure(server, args.records))


if __name__ == "__main__":
    main()
