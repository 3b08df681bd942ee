"""Durable outboxes: where captures wait until Label Studio has confirmed them."""

from .base import Claimed, Outbox, OutboxStats
from .sqlite import SQLiteOutbox

__all__ = ["Claimed", "Outbox", "OutboxStats", "SQLiteOutbox", "open_outbox"]


def open_outbox(target: str) -> Outbox:
    """Open the outbox named by ``target``: a directory or ``.db`` path for SQLite."""
    return SQLiteOutbox(target)
