"""Peak memory of ``export`` against project size: it should not grow with the number of tasks.

    .venv/bin/python -m bench.export_memory [--sizes 1000 10000] [--format sft] [--keep]

For each size N, a project gets N annotated chat tasks (bulk-imported in batches of 1000,
each with its prediction and an annotation), then the export runs in a fresh subprocess
that reports its RSS once the imports are done, its peak RSS while exporting (``VmHWM``,
reset before the export) and its peak RSS overall (``ru_maxrss``, imports included).
Label Studio is ``$LABEL_STUDIO_URL``/``$LABEL_STUDIO_API_KEY`` when set, else a local one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from langchain_label_studio import local
from langchain_label_studio.client import LabelStudioClient
from langchain_label_studio.label_config import CHAT_CONFIG

ROOT = Path(__file__).resolve().parent.parent
BATCH = 1000

CHILD = """
import json, resource, sys, time
from langchain_label_studio.export import export

def status_kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0

imports_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
before = status_kb("VmRSS")
try:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    reset = True
except OSError:
    reset = False
start = time.perf_counter()
rows = export(int(sys.argv[1]), sys.argv[2], sys.argv[3], progress=False)
print(json.dumps({
    "rows": rows,
    "seconds": time.perf_counter() - start,
    "imports_kb": imports_kb,
    "before_kb": before,
    "export_peak_kb": status_kb("VmHWM") if reset else None,
    "peak_kb": max(imports_kb, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
}))
"""


def chat_task(i: int) -> dict[str, Any]:
    """A chat task of a realistic size (~3 KB): a few turns with a tool call, the graph state, an annotation."""
    call = {"id": f"call_{i}", "name": "get_weather", "args": {"city": "Paris"}}
    dialogue = [
        {"role": "system", "content": "You are a helpful support assistant. " * 4},
        {"role": "user", "content": f"Request {i}: my order has not arrived yet, can you check it? " * 3},
        {"role": "assistant", "content": "Sure, let me look that up for you. " * 4},
        {"role": "user", "content": "And what is the weather in Paris, where it should be delivered?"},
        {"role": "assistant", "content": '→ get_weather({"city": "Paris"})', "tool_calls": [call]},
        {"role": "tool", "content": "[get_weather] Sunny and 21°C in Paris.", "tool_call_id": call["id"]},
    ]
    answer = f"Your order {i} is on its way and it is sunny in Paris. " * 3
    textarea = {"from_name": "response", "to_name": "dialogue", "type": "textarea"}
    return {
        "data": {
            "prompt": dialogue,
            "capture_id": uuid.uuid4().hex,
            "captured_at": "2025-01-01T00:00:00+00:00",
            "user_id": f"user-{i % 50}",
            "session_id": f"session-{i}",
            "route": "/chat",
            "request_id": uuid.uuid4().hex,
            "model": "bench-model",
            "state": {"messages": [*dialogue, {"role": "assistant", "content": answer}]},
        },
        "predictions": [{"model_version": "bench-model", "result": [{**textarea, "value": {"text": [answer]}}]}],
        "annotations": [
            {
                "result": [
                    {**textarea, "value": {"text": [answer.replace("sunny", "bright")]}},
                    {"from_name": "rating", "to_name": "dialogue", "type": "rating", "value": {"rating": 1 + i % 5}},
                ]
            }
        ],
    }


def mb(kb: int | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.1f} MB"


def fill(client: LabelStudioClient, n: int) -> int:
    project = client.create_project(f"bench-export-{n}-{uuid.uuid4().hex[:6]}", CHAT_CONFIG)
    for start in range(0, n, BATCH):
        client.import_tasks(project["id"], [chat_task(i) for i in range(start, min(n, start + BATCH))])
    return int(project["id"])


def measure(env: dict[str, str], project_id: int, fmt: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.jsonl")
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(project_id), fmt, out],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["out_mb"] = os.path.getsize(out) / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--format", choices=["sft", "preference", "rating"], default="sft")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark projects")
    parser.add_argument("--label-studio-port", type=int, default=local.DEFAULT_PORT)
    parser.add_argument("--label-studio-data-dir", default=None)
    args = parser.parse_args()

    if os.environ.get("LABEL_STUDIO_URL") and os.environ.get("LABEL_STUDIO_API_KEY"):
        url, key = os.environ["LABEL_STUDIO_URL"], os.environ["LABEL_STUDIO_API_KEY"]
    else:
        server = local.up(args.label_studio_port, args.label_studio_data_dir)
        url, key = server.url, server.api_key
    env = {**os.environ, "LABEL_STUDIO_URL": url, "LABEL_STUDIO_API_KEY": key}
    client = LabelStudioClient(url, key, timeout=600)

    print(
        f"{'tasks':>7} {'rows':>7} {'import s':>9} {'export s':>9} {'out MB':>7} "
        f"{'RSS imports':>12} {'export peak':>12} {'peak RSS':>9}"
    )
    try:
        for n in args.sizes:
            start = time.perf_counter()
            project_id = fill(client, n)
            filled = time.perf_counter() - start
            try:
                r = measure(env, project_id, args.format)
            finally:
                if not args.keep:
                    client.delete_project(project_id)
            print(
                f"{n:>7} {r['rows']:>7} {filled:>9.1f} {r['seconds']:>9.1f} {r['out_mb']:>7.1f} "
                f"{r['before_kb'] / 1024:>9.1f} MB {mb(r['export_peak_kb']):>12} {r['peak_kb'] / 1024:>6.1f} MB",
                flush=True,
            )
            if r["rows"] != n:
                print(f"  note: {n - r['rows']} task(s) came out without their annotation from Label Studio's import")
    finally:
        client.close()


if __name__ == "__main__":
    main()
