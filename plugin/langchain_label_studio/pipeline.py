"""The capture pipeline: an in-memory hand-over, a group-committing writer, a delivery worker.

``submit`` only appends to a deque: no disk, no network, no lock held for long. A writer
thread commits what arrived to the outbox every ``commit_interval_s`` (the window a
SIGKILL can lose), and a delivery thread drains the outbox into Label Studio. Threads
start lazily in the process that submits, so a process forked after import (gunicorn
``--preload``, uvicorn ``--workers``) starts its own.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from .client import LabelStudioClient
from .delivery import Delivery
from .gil import step_aside
from .metrics import Metrics
from .outbox import OutboxStats, OutboxUnavailable, open_outbox_or_wait
from .outbox.base import is_record_fault, placeholder
from .record import CaptureRecord
from .redact import Redactor
from .sanitize import DEFAULT_MAX_CHARS, finish, normalize
from .settings import Settings
from .urls import public_url, strip_credentials

logger = logging.getLogger("langchain_label_studio")


class Pipeline:
    """One outbox and its worker threads for one Label Studio server.

    ``client`` talks to that server (default: one made from the settings' URL, key and timeout).
    """

    def __init__(self, settings: Settings, client: LabelStudioClient | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.outbox = open_outbox_or_wait(settings)
        self._meta_written = False
        self.metrics.on_error = lambda message, at: self.outbox.set_meta(last_error=message, last_error_at=str(at))
        self.client = client or LabelStudioClient(settings.url, settings.api_key, timeout=settings.timeout_s)
        self.delivery = Delivery(self.client, self.outbox, self.metrics, batch_size=settings.batch_size)
        self.redactor = Redactor(builtin=settings.redact, patterns=settings.redact_patterns)
        self._buffer: deque[CaptureRecord] = deque()
        self._wake_writer = threading.Event()
        self._wake_delivery = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pid = -1
        self._start_lock = threading.Lock()
        self._committed_through = 0
        self._submitted = 0
        #: Records taken by the writer and not yet stored (counted against ``max_buffer``), and
        #: those of a failed write, already redacted, waiting for the next attempt.
        self._writing = 0
        self._retry: list[CaptureRecord] = []
        self._buffer_lock = threading.Lock()
        _live.add(self)

    # -- request path --------------------------------------------------------------------
    def submit(self, record: CaptureRecord) -> bool:
        """Queue a record for delivery without blocking. False if the buffer is full."""
        self._ensure_started()
        with self._buffer_lock:
            full = len(self._buffer) + self._writing >= self.settings.max_buffer
            if not full:
                self._buffer.append(record)
        if full:
            self.metrics.add("dropped")
            self.metrics.warn(
                f"capture buffer full ({self.settings.max_buffer} records not yet on disk): dropping captures"
            )
            return False
        self._submitted += 1
        self.metrics.add("captured")
        return True

    # -- threads ------------------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._pid == os.getpid() and not self._stop.is_set():
            return
        with self._start_lock:
            if self._pid == os.getpid() and not self._stop.is_set():
                return
            if self._pid != os.getpid():  # a fresh process (or a fork): own buffer, own threads
                self._buffer, self._retry, self._writing = deque(), [], 0
                self._buffer_lock = threading.Lock()
                self._submitted = self._committed_through = 0
            self._stop.clear()
            self._threads = [threading.Thread(target=self._write_loop, name="label-studio-writer", daemon=True)]
            if self.settings.deliver:
                self._threads.append(
                    threading.Thread(target=self._deliver_loop, name="label-studio-delivery", daemon=True)
                )
            for t in self._threads:
                t.start()
            self._pid = os.getpid()

    def start(self) -> None:
        """Start the worker threads now (they also start on the first capture)."""
        self._ensure_started()

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            self._wake_writer.wait(self.settings.commit_interval_s)
            self._wake_writer.clear()
            self._commit()
        self._commit()

    def _commit(self) -> None:
        with self._buffer_lock:
            batch, self._retry = self._retry, []
            fresh: list[CaptureRecord] = []
            while self._buffer and len(batch) + len(fresh) < 5000:
                fresh.append(self._buffer.popleft())
            self._writing = len(batch) + len(fresh)
        if not batch and not fresh:
            return
        protected = self._protect(fresh)
        self._settled(len(fresh) - len(protected))  # dropped or quarantined: settled
        batch += protected
        try:
            stored = self._store(batch)
        except Exception as exc:  # disk full, database down...: keep the records in memory
            with self._buffer_lock:
                self._retry, self._writing = batch, len(batch)
            self.metrics.error(f"cannot write the capture outbox {self.outbox.location}: {describe(exc)}")
            time.sleep(0.5)
            return
        with self._buffer_lock:
            self._writing = 0
        if stored < len(batch):
            self.metrics.add("dropped", len(batch) - stored)
            self.metrics.warn(
                f"capture outbox is over its cap ({self.settings.max_outbox_bytes} bytes): "
                "new sessions are not captured until Label Studio catches up"
            )
        self._settled(len(batch))
        if not self._meta_written:  # the outbox is reachable: note which server its records are for
            try:
                self.outbox.set_meta(label_studio_url=public_url(self.settings.url))
                self._meta_written = True
            except Exception:  # only a note for `status`: tried again on the next commit
                pass

    def _settled(self, n: int) -> None:
        """``n`` more captures are past the commit (stored, or dropped or quarantined there)."""
        if n:
            self._committed_through += n
            self.metrics.add("committed", n)

    def _store(self, batch: list[CaptureRecord]) -> int:
        """Store a batch; a record the outbox refuses is quarantined, never holding back the rest.

        Storage failures (disk full, database down or read-only) raise: the whole batch is kept
        for later. A failure a record can cause is narrowed down by halves to the records that do.
        """
        try:
            return self.outbox.put_many(batch)
        except Exception as exc:
            if not is_record_fault(exc):
                raise
            if len(batch) > 1:
                half = len(batch) // 2
                return self._store(batch[:half]) + self._store(batch[half:])
            self._quarantine(batch[0], f"the outbox refused this capture: {type(exc).__name__}")
            return 1

    def _protect(self, batch: list[CaptureRecord]) -> list[CaptureRecord]:
        """``before_capture``, redaction, then the final cut: nothing unredacted reaches the disk.

        A record a step fails on is quarantined as a dead letter with the reason (its content
        is not kept: it could not be redacted); the others go on.
        """
        hook = self.settings.before_capture
        kept = []
        for i, record in enumerate(batch):
            step_aside(i)
            step = "before_capture"
            try:
                if hook is not None:
                    changed = hook(record)
                    if changed is None:
                        self.metrics.skip("before_capture")
                        continue
                    if not isinstance(changed, CaptureRecord):
                        raise TypeError(f"before_capture returned a {type(changed).__name__}, not a CaptureRecord")
                    record = changed
                step = "redaction"
                self.redactor.record(normalize(record))
                step = "encoding"
                finish(record, record.max_chars or DEFAULT_MAX_CHARS)
                record.seal()  # the JSON itself is made once, by the outbox (:meth:`_store` isolates a failure)
            except Exception as exc:
                # Only the error's type: its message may quote the content, which is never logged.
                self.metrics.skip(f"{step}_error")
                self._quarantine(record, f"{step} failed: {type(exc).__name__}")
                continue
            kept.append(record)
        return kept

    def _quarantine(self, record: CaptureRecord, reason: str) -> None:
        """Keep a capture that cannot be stored as a dead letter: its ids and the reason, not its content."""
        self.metrics.add("dead_lettered")
        self.metrics.error(f"a capture was quarantined as a dead letter: {reason}")
        try:
            self.outbox.quarantine(placeholder(record, reason), reason)
        except Exception as exc:  # the outbox is down: the count and the log line remain
            self.metrics.error(f"cannot write a dead letter to {self.outbox.location}: {describe(exc)}")

    def _deliver_loop(self) -> None:
        """Deliver full batches back to back; otherwise let records gather for a while.

        After a failure the loop rests for the backoff delay (Label Studio down costs one
        attempt per delay, not one per capture); ``retry_now`` ends the rest.
        """
        while not self._stop.is_set():
            rest = self.delivery.paused_until - time.time()
            if rest > 0:
                self._wake_delivery.wait(rest)
                self._wake_delivery.clear()
                continue
            try:
                taken = self.delivery.step()
            except OutboxUnavailable as exc:  # e.g. the database restarting: records wait where they are
                self.metrics.error(str(exc))
                taken = 0
                self._stop.wait(1.0)
            except Exception as exc:  # a bug must never kill the worker
                logger.exception("label studio delivery failed")
                self.metrics.error(f"delivery failed: {exc!r}")
                taken = 0
                self._stop.wait(1.0)
            if taken < self.settings.batch_size:
                self._wake_delivery.wait(self.settings.delivery_interval_s)
                self._wake_delivery.clear()

    # -- lifecycle ------------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything captured so far is delivered (starting the worker if it is
        stopped); with ``deliver=False``, until it is in the outbox. True if it was in time."""
        deadline = time.monotonic() + timeout
        self._ensure_started()
        self._wake_writer.set()
        while time.monotonic() < deadline:
            committed = not self._buffer and self._committed_through >= self._submitted
            if committed and (not self.settings.deliver or self._outbox_empty()):
                return True
            self._wake_delivery.set()
            time.sleep(0.05)
        return False

    def _outbox_empty(self) -> bool:
        try:
            return self.outbox.stats().pending == 0
        except OutboxUnavailable:
            return False

    def close(self, timeout: float = 5.0) -> None:
        """Commit what is buffered, deliver what can be delivered within ``timeout``, stop.

        What is not delivered stays in the outbox for the next start.
        """
        if self._pid == os.getpid() and not self._stop.is_set():
            self.flush(timeout)
            self._stop.set()
            self._wake_writer.set()
            self._wake_delivery.set()
            for t in self._threads:
                t.join(timeout=max(1.0, timeout))
        self._pid = -1

    def retry_now(self) -> None:
        """Skip the backoff: try every waiting record again now (after fixing a token or project)."""
        self.delivery.resume()
        self.outbox.retry_now()
        self._wake_delivery.set()

    def health(self) -> dict[str, Any]:
        """Queue depth, oldest pending age, counters and the last error."""
        try:
            stats, outbox_error = self.outbox.stats(), None
        except OutboxUnavailable as exc:
            stats, outbox_error = OutboxStats(), str(exc)
        snapshot = self.metrics.snapshot()
        return {
            "label_studio_url": public_url(self.settings.url),
            "pid": os.getpid(),
            "outbox": self.outbox.location,
            "outbox_error": strip_credentials(outbox_error) if outbox_error else None,
            "delivery": "in this process" if self.settings.deliver else "by another process",
            "pending": stats.pending + len(self._buffer) + self._writing,
            "oldest_pending_s": stats.oldest_age_s,
            "dead_letters": stats.dead_letters,
            "by_project": stats.by_project,
            "outbox_bytes": stats.size_bytes,
            "redactions": dict(self.redactor.counts),
            **snapshot,
        }


def describe(exc: BaseException) -> str:
    """An error of the outbox or the network as it may be logged: its type and message, no credentials."""
    return strip_credentials(f"{type(exc).__name__}: {exc}")[:500]


_live: weakref.WeakSet[Pipeline] = weakref.WeakSet()


def live_pipelines() -> list[Pipeline]:
    """Every pipeline of this process that is still referenced (for metrics and draining)."""
    return list(_live)


_registry: dict[tuple[Any, ...], Pipeline] = {}
_registry_lock = threading.Lock()


def get_pipeline(settings: Settings) -> Pipeline:
    """The shared pipeline for these settings.

    Handlers, middlewares and graphs with the same settings share one pipeline (one
    writer, one delivery worker). Components whose settings differ in anything but the
    API key (another redaction rule, another ``before_capture``, delivery off...) get a
    pipeline of their own, on the same outbox when they name the same server, so no
    component's setting is ever lost to another's. A later call with another API key
    updates the key.
    """
    key = _settings_key(settings)
    with _registry_lock:
        pipeline = _registry.get(key)
        if pipeline is None:
            pipeline = _registry[key] = Pipeline(settings)
        elif settings.api_key and settings.api_key != pipeline.settings.api_key:
            pipeline.settings.api_key = settings.api_key
            pipeline.client.set_api_key(settings.api_key)
            pipeline.retry_now()
        return pipeline


def _settings_key(settings: Settings) -> tuple[Any, ...]:
    """Every setting but the API key, in a hashable form (callables by identity)."""
    key: list[Any] = []
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.name == "api_key":
            continue
        if f.name == "state_dir" and value is not None:
            value = str(Path(value).expanduser().resolve())
        elif isinstance(value, Mapping):
            value = tuple(sorted((str(k), str(v)) for k, v in value.items()))
        elif callable(value):
            value = ("callable", id(value))
        key.append((f.name, value))
    return tuple(key)


def _close_all() -> None:
    for pipeline in list(_live):
        try:
            pipeline.close(timeout=pipeline.settings.exit_timeout_s)
        except Exception:  # interpreter shutdown: never raise from atexit
            pass


atexit.register(_close_all)
