"""Outboxes exactly as release 0.1.0 made them, for the upgrade tests.

The DDL below is copied verbatim from git revision 316c505 (``outbox/sqlite.py``'s ``SCHEMA``
and ``outbox/postgres.py``'s ``_SCHEMA``); records are stored as 0.1.0 stored them: queued by
their project's key (feedback included: 0.1.0 had no feedback queues), with no schema version.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from langchain_label_studio.record import CaptureRecord, new_id

#: ``outbox/sqlite.py`` ``SCHEMA`` at 316c505.
SQLITE_0_1_0 = """
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

#: ``outbox/postgres.py`` ``_SCHEMA`` at 316c505 (``{schema}`` is the quoted schema name).
POSTGRES_0_1_0 = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.records (
    seq BIGSERIAL PRIMARY KEY,
    server TEXT NOT NULL,
    capture_id TEXT NOT NULL,
    project_key TEXT NOT NULL,
    session TEXT,
    payload TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before DOUBLE PRECISION NOT NULL DEFAULT 0,
    sent_at DOUBLE PRECISION,
    lease_owner INTEGER,
    lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    UNIQUE (server, capture_id)
);
CREATE INDEX IF NOT EXISTS records_due ON {schema}.records (server, not_before, seq);
CREATE INDEX IF NOT EXISTS records_session ON {schema}.records (server, project_key, session);
CREATE TABLE IF NOT EXISTS {schema}.sessions (
    server TEXT NOT NULL,
    project_key TEXT NOT NULL,
    session TEXT NOT NULL,
    task_id BIGINT NOT NULL,
    prediction_id BIGINT,
    captured_at DOUBLE PRECISION,
    PRIMARY KEY (server, project_key, session)
);
CREATE TABLE IF NOT EXISTS {schema}.dead_letters (
    seq BIGINT PRIMARY KEY,
    server TEXT NOT NULL,
    capture_id TEXT NOT NULL,
    project_key TEXT NOT NULL,
    session TEXT,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL,
    failed_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.meta (
    server TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (server, key)
);
"""


def make_sqlite(path: Path) -> None:
    """An outbox file as 0.1.0's ``SQLiteOutbox.__init__`` left it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SQLITE_0_1_0)
    db.close()


def fill_sqlite(path: Path, records: list[CaptureRecord], dead: Sequence[CaptureRecord] = (), url: str = "") -> None:
    """Queue records and dead letters as 0.1.0 did (``project_key``: the project's, feedback too)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.executemany(
            "INSERT INTO records (capture_id, project_key, session, payload, created_at) VALUES (?, ?, ?, ?, ?)",
            [(r.capture_id, r.project_key, r.session, r.to_json(), r.captured_at) for r in records],
        )
        db.executemany(
            "INSERT INTO dead_letters (seq, capture_id, project_key, payload, reason, failed_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(1000 + i, r.capture_id, r.project_key, r.to_json(), "refused", time.time()) for i, r in enumerate(dead)],
        )
        if url:
            db.execute("INSERT INTO meta (key, value) VALUES ('label_studio_url', ?)", (url,))
    finally:
        db.close()


def make_postgres(url: str, schema: str = "label_studio") -> None:
    """An outbox schema as 0.1.0's ``PostgresOutbox`` made it on first use."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL(POSTGRES_0_1_0).format(schema=sql.Identifier(schema)))


def fill_postgres(
    url: str,
    server: str,
    records: list[CaptureRecord],
    dead: Sequence[CaptureRecord] = (),
    schema: str = "label_studio",
) -> None:
    """Queue records and dead letters as 0.1.0 did."""
    import psycopg
    from psycopg import sql

    s = sql.Identifier(schema)
    with psycopg.connect(url, autocommit=True) as conn:
        for r in records:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.records (server, capture_id, project_key, session, payload, created_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s)"
                ).format(s),
                (server, r.capture_id, r.project_key, r.session, r.to_json(), r.captured_at),
            )
        for i, r in enumerate(dead):
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.dead_letters (seq, server, capture_id, project_key, session, payload, reason, "
                    "failed_at) VALUES (%s, %s, %s, %s, %s, %s, 'refused', %s)"
                ).format(s),
                (1000 + i, server, r.capture_id, r.project_key, r.session, r.to_json(), time.time()),
            )
        conn.execute(
            sql.SQL("INSERT INTO {}.meta (server, key, value) VALUES (%s, 'label_studio_url', %s)").format(s),
            (server, server),
        )


def legacy_records(title: str, chat_title: str) -> tuple[list[CaptureRecord], list[CaptureRecord]]:
    """What a 0.1.0 outbox typically held: prompt captures, a chat session's turns, and end-user
    feedback on a prompt capture (queued beside the captures); plus a dead-lettered feedback."""
    project = {"title": title, "id": None, "mode": "prompt", "label_config": None}
    chat = {"title": chat_title, "id": None, "mode": "chat", "label_config": None}
    now = time.time() - 60
    prompts = [
        CaptureRecord(
            project=dict(project),
            prompt=f"Tell me a joke about {topic}",
            response=f"A joke about {topic}.",
            data={"user_id": "alice", "route": "/joke", "request_id": f"req-{topic}-{new_id()[:8]}"},
            captured_at=now + i,
        )
        for i, topic in enumerate(["owls", "cats"])
    ]
    session = f"s-{new_id()[:8]}"
    turns = [
        CaptureRecord(
            project=dict(chat),
            prompt=dialogue,
            response=answer,
            data={"user_id": "bob", "session_id": session, "route": "/chat"},
            session=session,
            captured_at=now + 10 + i,
        )
        for i, (dialogue, answer) in enumerate(
            [
                ([{"role": "user", "content": "Hi!"}], "Hello!"),
                (
                    [
                        {"role": "user", "content": "Hi!"},
                        {"role": "assistant", "content": "Hello!"},
                        {"role": "user", "content": "Weather?"},
                    ],
                    "Sunny.",
                ),
            ]
        )
    ]
    feedback = CaptureRecord(
        project=dict(project),
        prompt="",
        data={"feedback": {"score": 1.0, "comment": "Spot on", "at": "2026-11-20T10:00:00+00:00"}},
        kind="feedback",
        target={"request_id": prompts[0].data["request_id"], "session_id": None},
        captured_at=now + 20,
    )
    dead_feedback = CaptureRecord(
        project=dict(project),
        prompt="",
        data={"feedback": {"score": 0.0, "comment": None, "at": "2026-11-20T10:00:00+00:00"}},
        kind="feedback",
        target={"request_id": "req-gone", "session_id": None},
    )
    return [*prompts, *turns, feedback], [dead_feedback]
