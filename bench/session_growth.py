"""What one chat turn costs as its session grows: the app's own work beside the plugin's.

    .venv/bin/python -m bench.session_growth [--sessions 40] [--lengths 1,10,50,200]

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
"""

from __future__ import annotations

import argparse
import asyncio
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--lengths", default="1,10,50,200")
    args = parser.parse_args()
    settings = Settings(url="http://127.0.0.1:9", api_key="unused", state_dir=tempfile.mkdtemp(), deliver=False)
    sink = Inline(Pipeline(settings))
    project = Project("Session growth", mode="chat")

    def plugin(thread: str) -> CaptureHandler:
        context = CaptureContext(project=project, route="/chat", request_id=uuid.uuid4().hex, session_id=thread)
        return CaptureHandler(sink, context)  # type: ignore[arg-type]

    print(f"{'turns before':>12} {'bare µs/turn':>13} {'plugin µs/turn':>15} {'plugin adds':>12} {'bare/plugin':>12}")
    for length in (int(n) for n in args.lengths.split(",")):
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
