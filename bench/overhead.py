"""Request overhead of the plugin, side by side with the bare app, in one run.

    .venv/bin/python -m bench.overhead [--seconds 10] [--concurrency 8] [--rounds 2]

Scenarios: an instant fake model (the worst case) and a 200 ms one, each with Label Studio
up, down, and answering 2 s slow; the instant model with delivery beside the app (the app
run with ``LABEL_STUDIO_DELIVERY=off``, ``langchain-label-studio deliver`` on the other core);
and, for reference, the instant model with a LangChain callback handler that does nothing in
place of the plugin (the part of the cost that is LangChain's dispatch of callback events).
Load comes from ``wrk`` when it is installed (``apt-get install wrk``), else from
``bench/load.py`` (a Python client, itself a bottleneck near 600 req/s on this machine).
The app is pinned to core 0; the load generator and Label Studio to core 1, Label Studio
at the lowest priority (it would run on another machine in production: here its import
work must not starve the load generator). Bare and plugin runs alternate. What a challenger adds
to the plugin is measured the same way by ``bench.challenger``; the plugin beside LangSmith tracing
and the Langfuse handler, on the prompt and the chat route, by ``bench.peers``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import ROOT, FaultProxy, bench_app, rss_mb
from langchain_label_studio import local


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1 else []


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


WRK_SCRIPT = ROOT / "bench" / "post.lua"


def load_with_wrk(url: str, concurrency: int, seconds: float, chat: bool = False) -> dict:
    """Load from ``wrk`` (C, so the load generator is not the bottleneck). With ``chat``, the chat route's
    request, one wrk thread per connection: each connection one long session."""
    threads = f"-t{concurrency if chat else 1}"
    cmd = [*pinned(1), "wrk", threads, f"-c{concurrency}", f"-d{seconds:.0f}s", "--latency", "-s", str(WRK_SCRIPT), url]
    cmd += ["--", "chat"] if chat else []
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def percentile(p: str) -> float:
        value, suffix = re.search(rf"{p}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * unit[suffix]

    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {
        "requests": requests,
        "errors": int(errors.group(1)) if errors else 0,
        "rps": rps,
        "p50_ms": percentile("50"),
        "p99_ms": percentile("99"),
    }


def load_with_python(url: str, concurrency: int, seconds: float, chat: bool = False) -> dict:
    cmd = [*pinned(1), sys.executable, str(ROOT / "bench" / "load.py"), url, str(concurrency), str(seconds)]
    out = subprocess.run(
        cmd + (["chat"] if chat else []),
        check=True,
        capture_output=True,
    )
    return json.loads(out.stdout)


def measure(env: dict[str, str], args: argparse.Namespace, health: bool = False, path: str = "/ask") -> dict:
    """One run on the route ``path`` (``/ask`` or ``/chat``): a fresh app on core 0, 2 s of warm-up, then
    ``args.seconds`` of load. With ``health`` (an app with the plugin) also the response to one more
    request (``answer``), the app's health view at the end and how many requests it served in all
    (``served``)."""
    load = load_with_wrk if shutil.which("wrk") else load_with_python
    chat = path == "/chat"
    with bench_app(env, pinned(0)) as (server, ask_url):
        url = ask_url.replace("/ask/", f"{path}/")
        warm = load(url, args.concurrency, 2, chat)  # warm-up
        cpu_before = cpu_s(server.pid)
        result = load(url, args.concurrency, args.seconds, chat)
        result["cpu_ms_per_request"] = (cpu_s(server.pid) - cpu_before) * 1000 / max(1, result["requests"])
        result["warm_requests"] = warm["requests"]
        result["rss_mb"] = rss_mb(server.pid)
        if health:
            body = {"input": {"messages": [{"type": "human", "content": "cats"}]} if chat else {"topic": "cats"}}
            headers = {"X-User-ID": "bench", **({"X-Session-ID": "bench-health"} if chat else {})}
            output = httpx.post(url, json=body, headers=headers, timeout=30).json()["output"]
            result["answer"] = output["messages"][-1]["content"] if chat else output
            result["served"] = 2 + warm["requests"] + result["requests"]  # bench_app's first request and that one
            result["health"] = httpx.get(ask_url.replace("/ask/invoke", "/label-studio/health"), timeout=30).json()
        return result


def label_studio_beside(port: int, data_dir: str | None = None) -> local.LocalServer:
    """The local Label Studio (started, or the one running on ``data_dir``), moved to core 1 at the
    lowest priority (it runs elsewhere in production: its import work must not take the app's core,
    nor starve the load generator)."""
    server = local.up(port, data_dir)
    if pinned(1):
        for pid in subprocess.run(["pgrep", "-g", str(server.pid)], capture_output=True, text=True).stdout.split():
            subprocess.run(["taskset", "-a", "-p", "-c", "1", pid], capture_output=True)
            for tid in os.listdir(f"/proc/{pid}/task"):  # niceness is per thread
                subprocess.run(["renice", "-n", "19", "-p", tid], capture_output=True)
    return server


def load_arguments(description: str | None, rounds: int) -> argparse.Namespace:
    """The options of a load benchmark: run length, connections, rounds, Label Studio, scenarios."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--label-studio-port", type=int, default=local.DEFAULT_PORT)
    parser.add_argument("--label-studio-data-dir", help="its data directory (default: the port's own)")
    parser.add_argument("--only", help="run only scenarios whose name contains this text")
    return parser.parse_args()


def main() -> None:
    args = load_arguments(__doc__, rounds=2)

    server = label_studio_beside(args.label_studio_port, args.label_studio_data_dir)
    proxy = FaultProxy(server.port).start()
    state = Path(tempfile.mkdtemp(prefix="bench-state-"))
    scenarios = [
        ("instant model, Label Studio up", 0, "pass"),
        ("200 ms model, Label Studio up", 200, "pass"),
        ("instant model, Label Studio down", 0, "down"),
        ("instant model, Label Studio 2 s slow", 0, "slow"),
        ("200 ms model, Label Studio down", 200, "down"),
        ("200 ms model, Label Studio 2 s slow", 200, "slow"),
        ("instant model, LS up, deliver beside", 0, "beside"),
        ("instant model, no-op LangChain handler", 0, "noop"),
    ]
    loader = "wrk" if shutil.which("wrk") else "bench/load.py"
    print(
        f"{os.cpu_count()} CPUs, load from {loader}, {args.concurrency} connections, {args.seconds:.0f} s per run, "
        f"{args.rounds} rounds alternating bare/plugin\n"
    )
    print(
        f"{'scenario':40} {'bare rps':>9} {'plugin rps':>10} {'ratio':>6} {'bare p50':>9} {'p50 ratio':>9} "
        f"{'bare p99':>9} {'p99 ratio':>9} {'RSS +MB':>8} {'CPU ms/req bare/plugin':>22}",
        flush=True,
    )
    for index, (name, delay, ls_mode) in enumerate(scenarios):
        if args.only and args.only not in name:
            continue
        if ls_mode == "down":
            proxy.stop()
        else:
            proxy.start() if proxy._server is None else None
            proxy.delay = 2.0
            proxy.set_mode("slow" if ls_mode == "slow" else "pass")
        base_env = {"BENCH_DELAY_MS": str(delay), "BENCH_PROJECT": f"Bench {time.strftime('%Y%m%d-%H%M%S')}"}
        plugin_env = {
            **base_env,
            "BENCH_CAPTURE": "1",
            "LABEL_STUDIO_URL": proxy.url,
            "LABEL_STUDIO_API_KEY": server.api_key,
            "LABEL_STUDIO_STATE_DIR": str(state / str(index)),
        }
        if ls_mode == "noop":  # reference: LangChain's dispatch to a handler that does nothing
            plugin_env = {**base_env, "BENCH_CAPTURE": "noop"}
        deliver = None
        if ls_mode == "beside":  # the app only captures; `langchain-label-studio deliver` runs on the other core
            plugin_env["LABEL_STUDIO_DELIVERY"] = "off"
            deliver_env = {**os.environ, **plugin_env, "LABEL_STUDIO_DELIVERY": "on"}
            cmd = [*pinned(1), sys.executable, "-m", "langchain_label_studio.cli", "deliver", "--report-every", "0"]
            deliver = subprocess.Popen(cmd, cwd=ROOT, env=deliver_env, stderr=subprocess.DEVNULL)
        bare, plugin = [], []
        for _ in range(args.rounds):
            bare.append(measure(base_env, args))
            plugin.append(measure(plugin_env, args))
        if deliver is not None:
            deliver.terminate()
            deliver.wait(60)
        avg = lambda runs, key: sum(r[key] for r in runs) / len(runs)  # noqa: E731
        b_rps, p_rps = avg(bare, "rps"), avg(plugin, "rps")
        b50, p50, b99, p99 = avg(bare, "p50_ms"), avg(plugin, "p50_ms"), avg(bare, "p99_ms"), avg(plugin, "p99_ms")
        errors = sum(r["errors"] for r in bare + plugin)
        print(
            f"{name:40} {b_rps:9.0f} {p_rps:10.0f} {p_rps / b_rps:6.3f} {b50:8.1f}ms {p50 / b50:9.3f} "
            f"{b99:8.1f}ms {p99 / b99:9.3f} {avg(plugin, 'rss_mb') - avg(bare, 'rss_mb'):8.1f} "
            f"{avg(bare, 'cpu_ms_per_request'):15.2f}/{avg(plugin, 'cpu_ms_per_request'):<6.2f}"
            + (f"  ({errors} errors)" if errors else ""),
            flush=True,
        )
    proxy.close()
    shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
