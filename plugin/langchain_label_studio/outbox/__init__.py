"""Durable outboxes: where captures wait until Label Studio has confirmed them."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from .base import Claimed, Outbox, OutboxStats, OutboxUnavailable, SessionTask
from .sqlite import SQLiteOutbox

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["Claimed", "Outbox", "OutboxStats", "OutboxUnavailable", "SQLiteOutbox", "SessionTask", "open_outbox"]


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
    digest = hashlib.sha256(settings.url.encode()).hexdigest()[:10]
    return SQLiteOutbox(settings.state_dir / f"outbox-{digest}.db", settings.max_outbox_bytes)
