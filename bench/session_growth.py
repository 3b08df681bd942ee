"""What one chat turn costs as its session grows: the app's own work beside the plugin's.

    .venv/bin/python -m bench.session_growth [--sessions 40] [--lengths 1,10,50,200]
    .venv/bin/python -m bench.session_growth --instructions [--sessions 3]

The ``/chat`` graph of ``bench/app.py`` (a LangGraph ``MessagesState`` graph, instant fake model,
``MemorySaver`` checkpointer), invoked in-process. For each session length, ``--sessions`` threads
are grown to that many turns first (captured, with the plugin); then one more turn of each is
timed (CPU time of the process), bare, and with the plugin: its callback handler on the run, and
the writer's work on the record it makes (``before_capture``, redaction, the final cut, encoding
and the SQLite commit) done at once in the same thread, so it is counted. Delivery is left out
(it runs at Label Studio's import rate, ``bench.delivery``). Bare and plugin alternate over 3
rounds; the medians are printed.

Every turn the plugin records the whole conversation (the graph's final state), as the task shows
it; the app re-reads and re-writes its own checkpoint of the same state each turn. The table shows
whether the plugin's part grows faster than the app's.

With ``--instructions`` (needs valgrind) it counts instead the instructions executed per turn under
``callgrind``, which machine noise cannot move: each session length and variant in a process of its
own, the sessions grown (with the plugin either way, so both have the same history) before counting.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import os
import shutil
import statistics
import tempfile
import time
import uuid
from typing import Any

from langchain_core.messages import HumanMessage

from bench.app import graph
from langchain_label_studio import Project, Settings
from langchain_label_studio.capture import CaptureContext, CaptureHandler
from langchain_label_studio.pipeline import Pipeline


class Inline:
    """A pipeline stand-in that does the writer's work on each record as it is submitted."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.metrics = pipeline.metrics

    def submit(self, record: Any) -> bool:
        self.pipeline._store(self.pipeline._protect([record]))  # noqa: SLF001  (the writer's two steps)
        return True


async def turn(thread: str, text: str, handler: CaptureHandler | None) -> None:
    config: dict[str, Any] = {"configurable": {"thread_id": thread}}
    if handler is not None:
        config["callbacks"] = [handler]
    await graph.ainvoke({"messages": [HumanMessage(text)]}, config)


async def grow(threads: list[str], length: int, make: Any) -> None:
    for thread in threads:
        for k in range(length):
            await turn(thread, f"message {k} of {thread}: tell me more about the weather", make(thread))


async def timed(threads: list[str], make: Any) -> float:
    """CPU microseconds per turn of one more turn on each thread."""
    start = time.process_time()
    for thread in threads:
        await turn(thread, "and one more question about it", make(thread))
    return (time.process_time() - start) / len(threads) * 1e6


def plugin_maker() -> Any:
    """``make(thread)``: a capture handler of a chat project whose records get the writer's work at once."""
    settings = Settings(url="http://127.0.0.1:9", api_key="unused", state_dir=tempfile.mkdtemp(), deliver=False)
    sink = Inline(Pipeline(settings))
    project = Project("Session growth", mode="chat")

    def plugin(thread: str) -> CaptureHandler:
        context = CaptureContext(project=project, route="/chat", request_id=uuid.uuid4().hex, session_id=thread)
        return CaptureHandler(sink, context)  # type: ignore[arg-type]

    return plugin


def counted_turn(variant: str, length: int, sessions: int) -> None:
    """Grow ``sessions`` sessions to ``length`` turns, then one more turn each inside ``functools.reduce``
    (what ``callgrind`` counts)."""
    plugin = plugin_maker()
    make = plugin if variant == "plugin" else (lambda t: None)
    threads = [uuid.uuid4().hex for _ in range(sessions)]
    asyncio.run(grow(threads, length, plugin))

    async def more() -> None:
        for thread in threads:
            await turn(thread, "and one more question about it", make(thread))

    asyncio.run(more())  # warm: the first turns of a variant in this process
    functools.reduce(lambda _, __: asyncio.run(more()), [0, 1])


def instructions(lengths: list[int], sessions: int) -> None:
    from bench.instructions import callgrind

    jobs = [(variant, n) for n in lengths for variant in ("bare", "plugin")]

    def count(job: tuple[str, int]) -> int:
        variant, n = job
        return callgrind(["bench.session_growth", "--inner", variant, "--lengths", str(n), "--sessions", str(sessions)])

    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        counts = dict(zip(jobs, pool.map(count, jobs), strict=True))
    print(f"{'turns before':>12} {'bare instr/turn':>16} {'plugin instr/turn':>18} {'plugin adds':>12} {'vs bare':>8}")
    for n in lengths:
        b, p = counts[("bare", n)] / sessions, counts[("plugin", n)] / sessions
        print(f"{n:12d} {b / 1e6:14.2f} M {p / 1e6:16.2f} M {(p - b) / 1e6:10.2f} M {(p - b) / b:+8.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int)
    parser.add_argument("--lengths", default="1,10,50,200")
    parser.add_argument("--instructions", action="store_true", help="count instructions under callgrind")
    parser.add_argument("--inner", choices=("bare", "plugin"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]
    if args.inner:
        counted_turn(args.inner, lengths[0], args.sessions)
        return
    if args.instructions:
        if not shutil.which("valgrind"):
            raise SystemExit("install valgrind first: apt-get install valgrind")
        instructions(lengths, args.sessions or 3)
        return
    args.sessions = args.sessions or 40
    plugin = plugin_maker()

    print(f"{'turns before':>12} {'bare µs/turn':>13} {'plugin µs/turn':>15} {'plugin adds':>12} {'bare/plugin':>12}")
    for length in lengths:
        bare, with_plugin = [], []
        for _ in range(3):
            for runs, make in ((bare, lambda t: None), (with_plugin, plugin)):
                threads = [uuid.uuid4().hex for _ in range(args.sessions)]
                asyncio.run(grow(threads, length, make))
                runs.append(asyncio.run(timed(threads, make)))
        b, p = statistics.median(bare), statistics.median(with_plugin)
        print(f"{length:12d} {b:13.0f} {p:15.0f} {p - b:12.0f} {b / p:12.3f}", flush=True)


if __name__ == "__main__":
    main()
