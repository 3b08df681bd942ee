"""Durable outboxes: where captures wait until Label Studio has confirmed them."""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..urls import public_url
from .base import Claimed, Outbox, OutboxStats, OutboxUnavailable, SessionTask, cannot_open
from .sqlite import SQLiteOutbox

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = [
    "Claimed",
    "Outbox",
    "OutboxStats",
    "OutboxUnavailable",
    "SQLiteOutbox",
    "SessionTask",
    "open_outbox",
    "open_outbox_or_wait",
    "sqlite_outbox_path",
]

logger = logging.getLogger("langchain_label_studio")

#: Failures to open an outbox that the machine's state causes (a damaged or unsafe file, a
#: read-only disk, a file of a newer release), not the code.
_OPEN_ERRORS = (OSError, sqlite3.Error, OutboxUnavailable)


def open_outbox(settings: Settings) -> Outbox:
    """The outbox these settings name: PostgreSQL if ``settings.outbox`` is set, else a SQLite
    file in the state directory (one per Label Studio server)."""
    if settings.outbox:
        from .postgres import PostgresOutbox

        return PostgresOutbox(
            settings.outbox,
            settings.url,
            schema=settings.outbox_schema,
            max_bytes=settings.max_outbox_bytes,
            unknown_grace_s=2 * settings.timeout_s,
        )
    return SQLiteOutbox(sqlite_outbox_path(settings.state_dir, settings.url), settings.max_outbox_bytes)


def sqlite_outbox_path(state_dir: str | os.PathLike[str], url: str) -> Path:
    """The SQLite outbox file of the Label Studio server at ``url`` (named by a hash of the URL)."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:10]
    return Path(state_dir).expanduser() / f"outbox-{digest}.db"


def open_outbox_or_wait(settings: Settings) -> Outbox:
    """:func:`open_outbox`, or, when it cannot be opened now, an outbox that tries again on use
    (at most once a second) and is unavailable until then: an app never fails for its outbox."""
    try:
        return open_outbox(settings)
    except _OPEN_ERRORS as exc:
        path = sqlite_outbox_path(settings.state_dir, settings.url)
        location = public_url(settings.outbox) if settings.outbox else str(path)
        pending = _PendingOutbox(lambda: open_outbox(settings), location, exc)
        logger.error("%s; captures wait in memory until it can be opened", pending.error)
        return cast("Outbox", pending)


class _PendingOutbox:
    """Stands for an outbox that could not be opened: each use tries again (at most once a
    second) and raises :class:`OutboxUnavailable` until it opens, then acts as it does."""

    def __init__(self, opener: Callable[[], Outbox], location: str, error: BaseException) -> None:
        self.location = location
        self._opener = opener
        self._outbox: Outbox | None = None
        self._retry_at = time.monotonic() + 1.0
        self._lock = threading.Lock()
        self.error = cannot_open(location, error)

    def _opened(self) -> Outbox:
        if self._outbox is not None:  # opened: no lock from then on
            return self._outbox
        with self._lock:
            if self._outbox is None:
                if time.monotonic() < self._retry_at:
                    raise OutboxUnavailable(self.error)
                try:
                    self._outbox = self._opener()
                except _OPEN_ERRORS as exc:
                    self._retry_at = time.monotonic() + 1.0
                    self.error = cannot_open(self.location, exc)
                    raise OutboxUnavailable(self.error) from None
            return self._outbox

    def close(self) -> None:
        if self._outbox is not None:
            self._outbox.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._opened(), name)
