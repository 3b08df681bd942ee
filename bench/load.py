"""Closed-loop HTTP load: C concurrent clients for T seconds; prints throughput and latency percentiles.

    load.py URL C T [chat]

With ``chat``, the bench app's chat route: each client one long session (its own ``X-Session-ID``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx


async def run(url: str, concurrency: int, seconds: float, chat: bool = False) -> dict:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(timeout=30) as client:
            n = 0
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                if chat:
                    body = {"input": {"messages": [{"type": "human", "content": f"t{i}-{n}"}]}}
                    headers = {"X-User-ID": f"u{i}", "X-Session-ID": f"bench-{i}"}
                else:
                    body, headers = {"input": {"topic": f"t{i}-{n}"}}, {"X-User-ID": f"u{i}"}
                resp = await client.post(url, json=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                errors += resp.status_code != 200
                n += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
    }


if __name__ == "__main__":
    chat = sys.argv[4:] == ["chat"]
    print(json.dumps(asyncio.run(run(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), chat))))
