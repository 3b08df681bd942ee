"""The narrow interface every outbox implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..record import CaptureRecord


@dataclass
class Claimed:
    """A record leased to this process for delivery.

    ``sent`` is True when an earlier send may have reached Label Studio (its outcome
    was unknown), so delivery must look for the task before sending it again.
    """

    seq: int
    record: CaptureRecord
    attempts: int
    sent: bool
    size: int = 0  #: bytes of the stored record


@dataclass
class OutboxStats:
    pending: int = 0
    oldest_age_s: float | None = None
    dead_letters: int = 0
    by_project: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0


class Outbox(Protocol):
    """Records in, leased batches out; nothing is removed before Label Studio confirms it."""

    def put_many(self, records: list[CaptureRecord]) -> int:
        """Store records durably; returns how many were stored (the rest are over the cap)."""

    def claim(self, limit: int, lease_s: float) -> list[Claimed]:
        """Lease up to ``limit`` due records of one project, oldest first.

        All due records of a session are leased together, and a session leased by
        another worker is skipped, so one session is only ever delivered by one worker.
        """

    def mark_sent(self, seqs: list[int]) -> None:
        """Note that a send of these records is about to start (outcome may be unknown)."""

    def done(self, seqs: list[int]) -> None:
        """Remove delivered records."""

    def retry_later(self, seqs: list[int], delay_s: float) -> None:
        """Release records for another attempt after ``delay_s``."""

    def retry_now(self) -> None:
        """Make every waiting record due now (after a fix, skip the backoff)."""

    def dead_letter(self, seq: int, reason: str) -> None:
        """Move a record Label Studio refused for good to the dead letters, with the reason."""

    def session_task(self, project_key: str, session: str) -> tuple[int, int | None] | None:
        """The Label Studio (task id, prediction id) of a session, if it has one."""

    def set_session_task(self, project_key: str, session: str, task_id: int, prediction_id: int | None) -> None:
        """Map a session to its Label Studio task."""

    def stats(self) -> OutboxStats:
        """Depth, age of the oldest record, dead letters."""

    def close(self) -> None:
        """Release connections."""
