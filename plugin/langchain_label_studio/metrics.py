"""Counters of what the pipeline did, for health checks and logs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from .urls import strip_credentials

logger = logging.getLogger("langchain_label_studio")


@dataclass
class Metrics:
    """Counts since the process started. Thread-safe through :meth:`add`."""

    captured: int = 0
    #: Captures the writer is done with: in the outbox, or settled there (dropped over the cap,
    #: quarantined, dropped by ``before_capture``). ``captured - committed`` is what a SIGKILL loses.
    committed: int = 0
    delivered: int = 0
    updated: int = 0
    retried: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    last_error_at: float | None = None
    #: Called (at most once a minute per message) with each new error, e.g. to persist it.
    on_error: Callable[[str, float], None] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _logged: dict[str, float] = field(default_factory=dict, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def skip(self, reason: str) -> None:
        """Count a capture that was not recorded, by reason."""
        with self._lock:
            self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def error(self, message: str, every_s: float = 60.0) -> None:
        """Record an error; log it at most once per ``every_s`` for the same message.

        Credentials in a URL of the message are removed first: it is logged and stored.
        """
        message = strip_credentials(message)
        now = time.time()
        with self._lock:
            self.last_error, self.last_error_at = message, now
            if now - self._logged.get(message, 0.0) < every_s:
                return
            self._logged[message] = now
        logger.error("%s", message)
        if self.on_error is not None:
            try:
                self.on_error(message, now)
            except Exception:  # reporting an error must never raise
                pass

    def warn(self, message: str, every_s: float = 60.0) -> None:
        """Log a warning at most once per ``every_s`` for the same message (without credentials)."""
        message = strip_credentials(message)
        now = time.time()
        with self._lock:
            if now - self._logged.get(message, 0.0) < every_s:
                return
            self._logged[message] = now
        logger.warning("%s", message)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            data = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_") and f.repr}
            data["skipped"] = dict(self.skipped)
        return data
