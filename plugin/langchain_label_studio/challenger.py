"""Side-by-side comparisons from live traffic: a challenger answers a sample of captured requests.

For a sampled share of a route's captured requests (``Project(challenger=..., challenger_rate=...)``)
the challenger runnable answers the same input (chat: the same history) once the response has
been sent. It runs in a bounded pool of its own (``challenger_concurrency`` threads, at most
``challenger_queue`` jobs waiting): a job that finds the queue full is dropped and counted
(``skipped.challenger_dropped``), so the challenger can never slow a request or hold memory
without bound. Both answers become one task of the project ``"<name> (A/B)"``, left and right
in random order (``left_source``/``right_source`` record which is which), for a ``<Pairwise>``
choice.

Privacy: the challenger sees the raw input, as the production model does: it stands in for a
model you might deploy, and an input with ``<EMAIL>`` placeholders would not measure that. Its
answer is captured like any other, redacted before it is stored. Use a challenger you would
trust with production traffic.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
from dataclasses import dataclass
from typing import Any

from .pipeline import Pipeline
from .project import Project
from .record import STATE_TAIL_KEY, CaptureRecord, new_id
from .sanitize import Sanitizer, to_text
from .trace_links import TRACE_KEYS

logger = logging.getLogger("langchain_label_studio")

#: Data keys of the captured task not copied into its comparison (too big, or about the other task).
_NOT_COPIED = (
    "state",
    STATE_TAIL_KEY,
    "capture_id",
    "captured_at",
    "feedback",
    "feedback_score",
    "feedback_count",
    "feedback_mean",
    *TRACE_KEYS,  # the link to the original run's trace would show which side is the model's
)


@dataclass
class Job:
    """One comparison to make: the captured record (as stored JSON: a snapshot taken before
    redaction changes it) and what the challenger is given."""

    project: Project
    pipeline: Pipeline
    record_json: str
    payload: Any


class ChallengerPool:
    """Threads that run a project's challenger, with a bounded queue in front of them."""

    def __init__(self, concurrency: int, queue_limit: int) -> None:
        self.concurrency = concurrency
        self.queue_limit = queue_limit
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=max(1, queue_limit))
        self._pid = -1
        self._lock = threading.Lock()
        self.ran = self.failed = self.dropped = 0

    def offer(self, job: Job) -> bool:
        """Queue a job without waiting; False (and counted) when the queue is full."""
        self._start()
        try:
            if self.queue_limit == 0:
                raise queue.Full
            self._queue.put_nowait(job)
            return True
        except queue.Full:
            self.dropped += 1
            job.pipeline.metrics.skip("challenger_dropped")
            return False

    def _start(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._queue = queue.Queue(maxsize=max(1, self.queue_limit))  # a forked child starts empty
            for i in range(self.concurrency):
                threading.Thread(target=self._work, name=f"label-studio-challenger-{i}", daemon=True).start()
            self._pid = os.getpid()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                record = compare(job)
                if record is not None:
                    job.pipeline.submit(record)
                self.ran += 1
            except Exception as exc:  # a failing challenger never reaches the app
                self.failed += 1
                job.pipeline.metrics.skip("challenger_failed")
                # Only the type: the message may quote captured content, which is never logged.
                logger.warning("the challenger failed: %s", type(exc).__name__)
            finally:
                self._queue.task_done()

    def join(self) -> None:
        """Wait until every queued job is done (tests, benchmarks)."""
        self._queue.join()


_pools: dict[tuple[int, int], ChallengerPool] = {}
_pools_lock = threading.Lock()


def pool_for(project: Project) -> ChallengerPool:
    """The pool of a project's challenger (one per challenger and limits, per process)."""
    key = (id(project.challenger), project.challenger_concurrency * 1_000_003 + project.challenger_queue)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = ChallengerPool(project.challenger_concurrency, project.challenger_queue)
        return pool


def chosen(project: Project) -> bool:
    """Whether this request gets a challenger answer (a random draw at ``challenger_rate``)."""
    return project.challenger is not None and random.random() < project.challenger_rate


def compare(job: Job) -> CaptureRecord | None:
    """Run the challenger on the job's input; the comparison record (None without an answer)."""
    output = job.project.challenger.invoke(job.payload, config={"run_name": "label-studio-challenger"})
    original = CaptureRecord.from_json(job.record_json)
    clean = Sanitizer(original.max_chars or 100_000)
    answer = clean.text(to_text(output))
    if original.response is None or not answer.strip():
        return None
    model_left = random.random() < 0.5
    sources = ("model", "challenger") if model_left else ("challenger", "model")
    answers = (original.response, answer) if model_left else (answer, original.response)
    data = {k: v for k, v in original.data.items() if k not in _NOT_COPIED}
    data.update(
        answer_left=answers[0],
        answer_right=answers[1],
        left_source=sources[0],
        right_source=sources[1],
        compared_capture_id=original.capture_id,
        challenger=_name(job.project.challenger),
    )
    comparison = job.project.comparison()
    return CaptureRecord(
        project=comparison.to_dict(),
        prompt=original.prompt,
        response=None,
        data=data,
        session=None,
        model_version=original.model_version,
        capture_id=new_id(),
        max_chars=original.max_chars,
    )


def _name(runnable: Any) -> str:
    for attr in ("model_name", "model", "name"):
        value = getattr(runnable, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(runnable).__name__
