"""The narrow interface every outbox implements."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from ..gil import step_aside
from ..identity import digest, target_ref
from ..record import CaptureRecord, new_id

logger = logging.getLogger("langchain_label_studio")


class OutboxUnavailable(Exception):
    """The outbox's storage cannot be reached (a database restarting, a full disk...)."""


class SchemaTooNew(OutboxUnavailable):
    """The outbox's tables were made by a newer release than this one: they are left untouched.

    Unavailable rather than broken, so captures wait (in memory) instead of being dead-lettered
    while an older and a newer release run side by side, e.g. during a rolling upgrade.
    """

    def __init__(self, location: str, found: int, known: int) -> None:
        super().__init__(
            f"the outbox {location} has schema version {found}, but this release of langchain-label-studio "
            f"knows versions up to {known}: upgrade it (pip install -U langchain-label-studio)"
        )
        self.found, self.known = found, known


class SessionTask(NamedTuple):
    """The Label Studio task of a session, and when the capture it shows was taken."""

    task_id: int
    prediction_id: int | None
    captured_at: float | None


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

    #: Where the outbox lives, for people (a file path, or a database without its password).
    location: str

    def put_many(self, records: list[CaptureRecord]) -> int:
        """Store records durably; returns how many were stored (the rest are over the cap)."""

    def claim(self, limit: int, lease_s: float, feedback: bool = False) -> list[Claimed]:
        """Lease up to ``limit`` due records of one project, oldest first: captures, or with
        ``feedback`` the project's feedback (a queue of its own, see ``CaptureRecord.queue_key``).

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

    def quarantine(self, record: CaptureRecord, reason: str) -> None:
        """Store a record that never entered the queue directly as a dead letter."""

    def session_task(self, project_key: str, session: str) -> SessionTask | None:
        """The Label Studio task of a session, if it has one."""

    def set_session_task(
        self, project_key: str, session: str, task_id: int, prediction_id: int | None, captured_at: float | None
    ) -> None:
        """Map a session to its Label Studio task, showing the capture taken at ``captured_at``."""

    def lock(self, name: str) -> AbstractContextManager[None]:
        """A lock shared by every process that uses this outbox (e.g. to create a project once)."""

    def set_meta(self, **values: str) -> None:
        """Remember facts about the outbox (its Label Studio URL, the last error)."""

    def meta(self) -> dict[str, str]:
        """The facts set with :meth:`set_meta`."""

    def dead_letters(self) -> list[tuple[int, CaptureRecord, str, float]]:
        """All dead-lettered records with their reason and time, oldest first."""

    def requeue_dead_letters(self, seqs: list[int] | None = None) -> int:
        """Put dead letters back in the queue (all, or those named); returns how many. Quarantined
        ones (a negative number: they kept no content, see :func:`placeholder`) stay."""

    def drop_dead_letters(self, seqs: list[int] | None = None) -> int:
        """Delete dead letters for good (all, or those named); returns how many."""

    def stats(self) -> OutboxStats:
        """Depth, age of the oldest record, dead letters."""

    def close(self) -> None:
        """Release connections."""


def within_cap(
    rows: list[tuple[CaptureRecord, str]], budget: int, has_session: Callable[[str, str], bool], cap: int
) -> list[tuple[CaptureRecord, str]]:
    """The rows (record, payload) an outbox over its size cap keeps.

    While ``budget`` bytes (of ``cap``) remain, captures are kept; past it, only later turns of
    sessions the outbox already holds (so a conversation is never cut in the middle).
    Feedback is kept only while more than half of the cap is free, so it can never crowd
    out captures.
    """
    kept = []
    admitted: set[tuple[str, str]] = set()
    for record, payload in rows:
        key = (record.project_key, record.session or "")
        size = len(payload) * 2 + 200  # payload plus index and page overhead, roughly
        if record.kind == "feedback":
            if budget - size < cap // 2:
                continue
            budget -= size
        elif budget >= size:
            budget -= size
        elif record.session is None or (key not in admitted and not has_session(*key)):
            continue
        kept.append((record, payload))
        if record.session is not None:
            admitted.add(key)
    return kept


def is_record_fault(exc: BaseException) -> bool:
    """Whether a failure to store can be a record's: the encoder failed on it, or the database
    refused a value (its data or integrity errors, whatever their subclass).

    Every other failure of the database or the disk is the storage's (full, down, read-only, no
    permission): the records wait in memory for it to come back, none is set aside.
    """
    if isinstance(exc, (OutboxUnavailable, OSError)):
        return False
    classes = type(exc).__mro__
    if any(c.__module__.split(".")[0] in _DATABASE_MODULES for c in classes):
        return any(c.__name__ in ("DataError", "IntegrityError") for c in classes)
    return True


#: Where the outboxes' database errors come from.
_DATABASE_MODULES = ("sqlite3", "psycopg", "psycopg_pool")


def placeholder(record: CaptureRecord, reason: str) -> CaptureRecord:
    """What a quarantined record keeps: where it was going and why it stopped, not its content."""
    capture_id = record.capture_id if isinstance(record.capture_id, str) else new_id()
    project = record.project if isinstance(record.project, dict) else {}
    kept = CaptureRecord(
        project={
            "title": str(project.get("title") or "?"),
            "id": project.get("id"),
            "mode": project.get("mode") or "prompt",
            "label_config": None,
        },
        prompt="",
        data={"quarantined": reason},
        session=None,
        capture_id=capture_id,
        kind=record.kind if record.kind in ("capture", "feedback") else "capture",
    )
    kept.seal()
    return kept


#: Why a stored record that cannot be read (a damaged row) was set aside as a dead letter.
UNREADABLE = "the outbox cannot read this record (a damaged row?)"


def read_record(payload: str | bytes) -> CaptureRecord | None:
    """A stored record, or None when none can be read from ``payload`` (a damaged row)."""
    try:
        record = CaptureRecord.from_json(payload)
    except Exception:
        return None
    if not isinstance(record.capture_id, str) or not isinstance(record.project, dict):
        return None
    return record


def claimed_records(
    rows: Iterable[tuple[int, str, int, bool]], set_aside: Callable[[int, str], None], location: str
) -> list[Claimed]:
    """Claimed rows ``(seq, payload, attempts, sent)`` as records; a row that cannot be read is
    set aside on its own (``set_aside(seq, UNREADABLE)``, a dead letter) and the rest go on."""
    claimed = []
    for i, (seq, payload, attempts, sent) in enumerate(rows):
        record = read_record(payload)
        if record is None:
            set_aside(seq, UNREADABLE)
            logger.error("record %s of %s cannot be read: set aside as a dead letter", seq, location)
            continue
        claimed.append(Claimed(seq, record, attempts, bool(sent), len(payload)))
        step_aside(i)
    return claimed


def cannot_open(location: str, exc: BaseException) -> str:
    """Why an outbox could not be opened, for logs and the health view."""
    if isinstance(exc, OutboxUnavailable):
        return str(exc)
    return f"cannot open the capture outbox {location}: {type(exc).__name__}: {exc}"


def listed_record(payload: str | bytes) -> CaptureRecord:
    """A dead letter's record as listed: a placeholder saying so when it cannot be read."""
    return read_record(payload) or placeholder(CaptureRecord(project={}, prompt=""), UNREADABLE)


def session_digest(session: str | None) -> str | None:
    """A session key as schema 3 keeps it (a digest; see ``identity.session_ref``)."""
    return None if session is None else digest(session)


def with_session_refs(payload: str) -> str:
    """A record stored by schema 2 as schema 3 stores it: its session, and the session a feedback
    names, kept as digests rather than the user and session ids. A payload that is not a record
    is kept as it is."""
    try:
        record = CaptureRecord.from_json(payload)
    except Exception:
        return payload
    record.session = session_digest(record.session)
    if record.kind == "feedback" and isinstance(record.target, dict):
        record.target = {"request_id": record.target.get("request_id"), "session": target_ref(record.target)}
    return record.to_json()
