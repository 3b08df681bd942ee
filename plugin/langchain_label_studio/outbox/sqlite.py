"""The embedded outbox: one SQLite file (WAL) in the state directory.

Several processes of one machine (uvicorn/gunicorn workers) may share the file: records
are leased to one process at a time. A lease ends when it expires or, at once, when the
process holding it is gone (a SIGKILLed worker's records go to the next process).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..record import FEEDBACK_QUEUE, CaptureRecord
from ..state_dir import lock_file, open_private, private_dir
from ..urls import public_url
from .base import (
    Claimed,
    OutboxStats,
    OutboxUnavailable,
    SchemaTooNew,
    SessionTask,
    cannot_open,
    claimed_records,
    listed_record,
    session_digest,
    with_session_refs,
    within_cap,
)

#: The tables of schema version 1, as 0.1.0 made them (it kept no version: ``user_version`` 0).
_V1_TABLES = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    capture_id TEXT NOT NULL UNIQUE,
    project_key TEXT NOT NULL,
    session TEXT,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    sent INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0
);
DROP INDEX IF EXISTS records_due;
CREATE INDEX IF NOT EXISTS records_session ON records (project_key, session);
CREATE TABLE IF NOT EXISTS sessions (
    project_key TEXT NOT NULL,
    session TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    prediction_id INTEGER,
    captured_at REAL,
    PRIMARY KEY (project_key, session)
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY,
    capture_id TEXT NOT NULL,
    project_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL
);
"""


def _v1_tables(db: sqlite3.Connection) -> None:
    """Version 1: the tables of 0.1.0 (a file of 0.1.0 has them all; earlier files lack a column)."""
    for statement in _V1_TABLES.split(";"):
        if statement.strip():
            db.execute(statement)
    if "captured_at" not in {row[1] for row in db.execute("PRAGMA table_info(sessions)")}:
        db.execute("ALTER TABLE sessions ADD COLUMN captured_at REAL")


def _v2_feedback_queues(db: sqlite3.Connection) -> None:
    """Version 2: feedback waits in queues of its own (0.1.0 queued it with its project's captures)."""
    for table in ("records", "dead_letters"):
        db.execute(
            f"UPDATE {table} SET project_key = ? || project_key "
            "WHERE json_extract(payload, '$.kind') = 'feedback' AND substr(project_key, 1, ?) <> ?",
            (FEEDBACK_QUEUE, len(FEEDBACK_QUEUE), FEEDBACK_QUEUE),
        )


def _v3_session_refs(db: sqlite3.Connection) -> None:
    """Version 3: sessions are kept as digests of the user and session ids, never the ids."""
    db.create_function("session_digest", 1, session_digest, deterministic=True)
    db.create_function("with_session_refs", 1, with_session_refs, deterministic=True)
    # Rewritten as a whole: row by row, a session id chosen to equal another's digest would collide.
    rows = db.execute("SELECT project_key, session, task_id, prediction_id, captured_at FROM sessions").fetchall()
    db.execute("DELETE FROM sessions")
    db.executemany(
        "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?)",
        [(key, session_digest(s), task, pred, at) for key, s, task, pred, at in rows],
    )
    db.execute(
        "UPDATE records SET session = session_digest(session), payload = with_session_refs(payload) "
        "WHERE session IS NOT NULL OR json_extract(payload, '$.kind') = 'feedback'"
    )
    db.execute(
        "UPDATE dead_letters SET payload = with_session_refs(payload) "
        "WHERE json_extract(payload, '$.session') IS NOT NULL OR json_extract(payload, '$.kind') = 'feedback'"
    )


def _v4_url_without_credentials(db: sqlite3.Connection) -> None:
    """Version 4: the Label Studio URL noted in ``meta`` has no credentials (earlier versions noted
    it as configured)."""
    for (url,) in db.execute("SELECT value FROM meta WHERE key = 'label_studio_url'").fetchall():
        db.execute("UPDATE meta SET value = ? WHERE key = 'label_studio_url'", (public_url(url),))


#: One migration per version step: ``MIGRATIONS[n]`` takes the tables from version ``n`` to ``n + 1``.
#: Append a function to change the schema; never change one that has shipped.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _v1_tables,
    _v2_feedback_queues,
    _v3_session_refs,
    _v4_url_without_credentials,
]


def schema_version() -> int:
    """The schema version this release makes and reads."""
    return len(MIGRATIONS)


def migrate(db: sqlite3.Connection, location: str) -> int:
    """Bring the tables up to :func:`schema_version`, in one transaction; returns the version.

    The version lives in SQLite's ``user_version`` header field, which commits and rolls back
    with the tables: a step that fails leaves the file as it was, to be tried on the next start.
    A copy in the ``meta`` table survives a rebuild from ``.dump`` (which drops the header
    field), so a restored file is never taken through steps it has already had.
    """
    current = schema_version()
    if db.execute("PRAGMA user_version").fetchone()[0] == current and _noted_version(db) == current:
        return current  # the common case: no write, no lock
    db.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then find it done
    try:
        version = max(int(db.execute("PRAGMA user_version").fetchone()[0]), _noted_version(db) or 0)
        if version > current:
            raise SchemaTooNew(location, version, current)
        for step in MIGRATIONS[version:]:
            step(db)
            version += 1
            db.execute(f"PRAGMA user_version = {version:d}")
        db.execute(f"PRAGMA user_version = {version:d}")  # also for a restored file, which lost it
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_VERSION_KEY, str(version)))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return version


#: The ``meta`` key of the schema version's copy.
_VERSION_KEY = "schema_version"


def _noted_version(db: sqlite3.Connection) -> int | None:
    """The schema version noted in the ``meta`` table, if any."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is None:
        return None
    row = db.execute("SELECT value FROM meta WHERE key = ?", (_VERSION_KEY,)).fetchone()
    try:
        return max(0, int(row[0])) if row else None
    except (TypeError, ValueError):  # not a number: the header field alone tells
        return None


#: A lease still in force: not expired, and its process still alive.
_HELD = "(lease_until >= ? AND lease_alive(lease_owner))"
_HELD_OTHER = "(o.lease_until >= ? AND lease_alive(o.lease_owner))"


def _lease_alive(owner: str | None) -> bool:
    """Whether the process named in a lease (``pid-random``) still runs on this machine."""
    if not owner:
        return False
    if os.name != "posix":  # os.kill(pid, 0) terminates the process on Windows: leases just expire
        return True
    try:
        os.kill(int(owner.split("-", 1)[0]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


class SQLiteOutbox:
    """An :class:`~langchain_label_studio.outbox.Outbox` in a SQLite file.

    ``target`` is a directory (the file is ``outbox.db`` inside it) or a ``.db`` path.
    The directory is created owner-only (0700) and the file 0600.
    """

    def __init__(self, target: str | os.PathLike[str], max_bytes: int | None = None) -> None:
        path = Path(target).expanduser()
        if path.suffix != ".db":
            path = path / "outbox.db"
        private_dir(path.parent)  # 0700 when new; refused if others can write it
        self.path = path
        self.location = str(path)
        self.max_bytes = max_bytes
        self._local = threading.local()
        os.close(open_private(path))  # 0600 when new; refused if a symlink or others can write it
        try:
            migrate(self._db(), self.location)
        except sqlite3.DatabaseError as exc:  # a damaged file, or locked past the timeout by a long upgrade
            self.close()
            raise OutboxUnavailable(cannot_open(self.location, exc)) from None

    # -- connections --------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            db.create_function("lease_alive", 1, _lease_alive, deterministic=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db, self._local.pid = db, os.getpid()
            self._local.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None and self._local.pid == os.getpid():
            db.close()
        self._local = threading.local()

    # -- records -------------------------------------------------------------------------
    def size_bytes(self) -> int:
        """Bytes the outbox's data takes (pages in use; freed pages are reused, not counted)."""
        db = self._db()
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        used = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        return int(used * page_size)

    def put_many(self, records: list[CaptureRecord]) -> int:
        if not records:
            return 0
        rows = [(r, r.to_json()) for r in records]
        with self._tx() as db:
            if self.max_bytes is not None:
                rows = within_cap(
                    rows, self.max_bytes - self.size_bytes(), lambda p, s: self._has_session(db, p, s), self.max_bytes
                )
            db.executemany(
                "INSERT OR IGNORE INTO records (capture_id, project_key, session, payload, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(r.capture_id, r.queue_key, r.session, payload, r.captured_at) for r, payload in rows],
            )
        return len(rows)

    @staticmethod
    def _has_session(db: sqlite3.Connection, project_key: str, session: str) -> bool:
        return (
            db.execute(
                "SELECT 1 FROM records WHERE project_key = ? AND session = ? "
                "UNION ALL SELECT 1 FROM sessions WHERE project_key = ? AND session = ? LIMIT 1",
                (project_key, session, project_key, session),
            ).fetchone()
            is not None
        )

    def claim(self, limit: int, lease_s: float, feedback: bool = False) -> list[Claimed]:
        now = time.time()
        with self._tx() as db:
            first = db.execute(
                f"SELECT project_key FROM records WHERE +not_before <= ? AND NOT {_HELD} "
                "AND (substr(project_key, 1, ?) = ?) = ? ORDER BY seq LIMIT 1",
                (now, now, len(FEEDBACK_QUEUE), FEEDBACK_QUEUE, feedback),
            ).fetchone()
            if first is None:
                return []
            rows = db.execute(
                f"""
                SELECT seq, payload, attempts, sent FROM records AS r
                WHERE project_key = ? AND +not_before <= ? AND NOT {_HELD}
                  AND (session IS NULL OR NOT EXISTS (
                        SELECT 1 FROM records AS o
                        WHERE o.project_key = r.project_key AND o.session = r.session
                          AND {_HELD_OTHER}))
                ORDER BY seq LIMIT ?
                """,
                (first[0], now, now, now, limit),
            ).fetchall()
            seqs = [row[0] for row in rows]
            db.execute(
                f"UPDATE records SET lease_owner = ?, lease_until = ? WHERE seq IN ({_placeholders(len(seqs))})",
                (self._local.owner, now + lease_s, *seqs),
            )
        return claimed_records(rows, self.dead_letter, self.location)

    def _update(self, sql: str, seqs: list[int], *args: object) -> None:
        if not seqs:
            return
        with self._tx() as db:
            db.execute(sql.format(_placeholders(len(seqs))), (*args, *seqs))

    def mark_sent(self, seqs: list[int]) -> None:
        self._update("UPDATE records SET sent = 1 WHERE seq IN ({})", seqs)

    def done(self, seqs: list[int]) -> None:
        self._update("DELETE FROM records WHERE seq IN ({})", seqs)

    def retry_later(self, seqs: list[int], delay_s: float) -> None:
        self._update(
            "UPDATE records SET attempts = attempts + 1, not_before = ?, lease_until = 0, lease_owner = NULL "
            "WHERE seq IN ({})",
            seqs,
            time.time() + delay_s,
        )

    def retry_now(self) -> None:
        with self._tx() as db:
            db.execute("UPDATE records SET not_before = 0 WHERE not_before > 0")

    def dead_letter(self, seq: int, reason: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO dead_letters (seq, capture_id, project_key, payload, reason, failed_at) "
                "SELECT seq, capture_id, project_key, payload, ?, ? FROM records WHERE seq = ?",
                (reason[:2000], time.time(), seq),
            )
            db.execute("DELETE FROM records WHERE seq = ?", (seq,))

    def quarantine(self, record: CaptureRecord, reason: str) -> None:
        # Below zero: never the seq of a queued record, which may become a dead letter later.
        with self._tx() as db:
            db.execute(
                "INSERT INTO dead_letters (seq, capture_id, project_key, payload, reason, failed_at) "
                "SELECT MIN(0, COALESCE(MIN(seq), 0)) - 1, ?, ?, ?, ?, ? FROM dead_letters",
                (record.capture_id, record.queue_key, record.to_json(), reason[:2000], time.time()),
            )

    # -- sessions --------------------------------------------------------------------------
    def session_task(self, project_key: str, session: str) -> SessionTask | None:
        row = (
            self._db()
            .execute(
                "SELECT task_id, prediction_id, captured_at FROM sessions WHERE project_key = ? AND session = ?",
                (project_key, session),
            )
            .fetchone()
        )
        return SessionTask(*row) if row else None

    def set_session_task(
        self, project_key: str, session: str, task_id: int, prediction_id: int | None, captured_at: float | None
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO sessions (project_key, session, task_id, prediction_id, captured_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (project_key, session, task_id, prediction_id, captured_at),
            )

    # -- a lock shared by the processes of this machine ---------------------------------------
    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        fd = open_private(self.path.parent / f"{name}.lock")
        try:
            lock_file(fd)
            yield
        finally:
            os.close(fd)  # releases the lock

    # -- facts about the outbox (its server, its last error) -------------------------------------
    def set_meta(self, **values: str) -> None:
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))

    def meta(self) -> dict[str, str]:
        return dict(self._db().execute("SELECT key, value FROM meta WHERE key != ?", (_VERSION_KEY,)).fetchall())

    # -- dead letters ------------------------------------------------------------------------
    def dead_letters(self) -> list[tuple[int, CaptureRecord, str, float]]:
        """All dead-lettered records with their reason and time, oldest first."""
        rows = self._db().execute("SELECT seq, payload, reason, failed_at FROM dead_letters ORDER BY seq").fetchall()
        return [(seq, listed_record(p), reason, at) for seq, p, reason, at in rows]

    def requeue_dead_letters(self, seqs: list[int] | None = None) -> int:
        """Put dead letters back in the queue (all, or those named); returns how many. Quarantined
        ones (a negative number: they kept no content) stay."""
        where = " WHERE seq >= 0" + ("" if seqs is None else f" AND seq IN ({_placeholders(len(seqs))})")
        args = () if seqs is None else tuple(seqs)
        with self._tx() as db:
            moved = db.execute(
                "INSERT OR IGNORE INTO records (capture_id, project_key, session, payload, created_at) "
                "SELECT capture_id, project_key, "
                "CASE WHEN json_valid(payload) THEN json_extract(payload, '$.session') END, payload, failed_at "
                f"FROM dead_letters{where}",
                args,
            ).rowcount
            db.execute(f"DELETE FROM dead_letters{where}", args)
        return moved

    def drop_dead_letters(self, seqs: list[int] | None = None) -> int:
        """Delete dead letters for good (all, or those named); returns how many."""
        where = "" if seqs is None else f" WHERE seq IN ({_placeholders(len(seqs))})"
        with self._tx() as db:
            return db.execute(f"DELETE FROM dead_letters{where}", () if seqs is None else tuple(seqs)).rowcount

    def stats(self) -> OutboxStats:
        db = self._db()
        by_project = dict(db.execute("SELECT project_key, COUNT(*) FROM records GROUP BY project_key").fetchall())
        oldest = db.execute("SELECT MIN(created_at) FROM records").fetchone()[0]
        dead = db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
        return OutboxStats(
            pending=sum(by_project.values()),
            oldest_age_s=None if oldest is None else max(0.0, time.time() - oldest),
            dead_letters=dead,
            by_project=by_project,
            size_bytes=self.size_bytes(),
        )
