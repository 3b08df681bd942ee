"""Durable outboxes: where captures wait until Label Studio has confirmed them."""

from .base import Claimed, Outbox, OutboxStats
from .sqlite import SQLiteOutbox

__all__ = ["Claimed", "Outbox", "OutboxStats", "SQLiteOutbox"]
