"""Outbox schema versions: files and schemas made by 0.1.0 are upgraded in place, step by step.

The SQLite tests need nothing but a temporary directory; the PostgreSQL ones use the local
server (``pg`` marker). Delivery of upgraded outboxes to Label Studio: ``tests/test_outbox_upgrade.py``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from legacy_outbox import fill_postgres, fill_sqlite, legacy_records, make_postgres, make_sqlite

from langchain_label_studio.identity import digest, session_ref
from langchain_label_studio.outbox import OutboxUnavailable, SQLiteOutbox
from langchain_label_studio.outbox import sqlite as sqlite_outbox
from langchain_label_studio.outbox.base import SchemaTooNew
from langchain_label_studio.record import FEEDBACK_QUEUE, CaptureRecord

SERVER = "http://label-studio.invalid"


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def legacy_file(tmp_path: Path) -> tuple[Path, list[CaptureRecord], list[CaptureRecord]]:
    """A 0.1.0 outbox file with prompt captures, a chat session, feedback and a dead letter."""
    path = tmp_path / "state" / "outbox-legacy.db"
    make_sqlite(path)
    records, dead = legacy_records("Jokes", "Chats")
    fill_sqlite(path, records, dead, url=SERVER)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("INSERT INTO sessions VALUES ('title:Chats', 'old-session', 41, NULL, 1.0)")
    db.close()
    return path, records, dead


def test_a_new_outbox_is_made_at_the_current_version(tmp_path: Path) -> None:
    outbox = SQLiteOutbox(tmp_path / "state" / "outbox.db")
    assert user_version(outbox.path) == sqlite_outbox.schema_version() == 4
    outbox.close()


def test_a_0_1_0_file_is_upgraded_and_keeps_everything(tmp_path: Path) -> None:
    path, records, dead = legacy_file(tmp_path)
    assert user_version(path) == 0

    outbox = SQLiteOutbox(path)

    assert user_version(path) == sqlite_outbox.schema_version()
    captures = outbox.claim(100, 60)
    assert {c.record.capture_id for c in captures} == {r.capture_id for r in records[:2]}  # one project
    chats = outbox.claim(100, 60)
    assert {c.record.capture_id for c in chats} == {r.capture_id for r in records[2:4]}
    assert {c.record.session for c in chats} == {digest(records[2].session or "")}  # the id is not kept
    assert outbox.claim(100, 60) == []  # the feedback is no longer in a capture queue...
    [feedback] = outbox.claim(100, 60, feedback=True)  # ...but in its project's feedback queue
    assert feedback.record.capture_id == records[4].capture_id and feedback.record.kind == "feedback"
    mapping = outbox.session_task("title:Chats", digest("old-session"))
    assert mapping is not None and mapping.task_id == 41
    assert outbox.meta() == {"label_studio_url": SERVER}
    [(_, kept, reason, _)] = outbox.dead_letters()
    assert kept.capture_id == dead[0].capture_id and reason == "refused"
    assert outbox.requeue_dead_letters() == 1  # requeued where feedback belongs
    assert outbox.stats().by_project[f"{FEEDBACK_QUEUE}title:Jokes"] == 2
    outbox.close()


def test_a_version_2_file_keeps_sessions_as_digests_of_the_ids(tmp_path: Path) -> None:
    """Version 2 kept a session's user and session ids (``user\x1fsession``) in the sessions table
    and the records, a feedback's in its target; version 3 keeps digests only."""
    path, _, _ = legacy_file(tmp_path)
    project = {"title": "Chats", "id": None, "mode": "chat", "label_config": None}
    turn = CaptureRecord(project=project, prompt="Hi", response="Hello", session="victim@example.com\x1fS")
    feedback = CaptureRecord(
        project=project,
        prompt="",
        data={"feedback": {"score": 1.0}},
        kind="feedback",
        target={"request_id": "r1", "session_id": "S", "user_id": "victim@example.com"},
    )
    db = sqlite3.connect(path, isolation_level=None)
    for record in (turn, feedback):
        db.execute(
            "INSERT INTO records (capture_id, project_key, session, payload, created_at) VALUES (?, ?, ?, ?, 0)",
            (record.capture_id, record.project_key, record.session, record.to_json()),
        )
    db.execute("INSERT INTO sessions VALUES ('title:Chats', 'victim@example.com\x1fS', 42, NULL, 1.0)")
    db.close()

    outbox = SQLiteOutbox(path)
    ref = session_ref("victim@example.com", "S")
    mapping = outbox.session_task("title:Chats", ref or "")
    assert mapping is not None and mapping.task_id == 42
    captures = [c.record for _ in range(3) for c in outbox.claim(100, 60)]  # one project per claim
    [stored] = [r for r in captures if r.capture_id == turn.capture_id]
    assert stored.session == ref
    feedbacks = [c.record for _ in range(3) for c in outbox.claim(100, 60, feedback=True)]
    [stored] = [r for r in feedbacks if r.capture_id == feedback.capture_id]
    assert stored.target == {"request_id": "r1", "session": ref}
    outbox.close()
    assert not any(b"victim@example.com" in f.read_bytes() for f in path.parent.glob("outbox-legacy.db*"))


def test_opening_an_upgraded_file_again_changes_nothing(tmp_path: Path) -> None:
    path, _, _ = legacy_file(tmp_path)
    SQLiteOutbox(path).close()
    query = "SELECT seq, project_key, payload FROM records ORDER BY seq"
    db = sqlite3.connect(path)
    before = db.execute(query).fetchall()
    db.close()
    SQLiteOutbox(path).close()
    db = sqlite3.connect(path)
    assert db.execute(query).fetchall() == before
    db.close()


def test_a_later_step_runs_once_after_the_earlier_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _, _ = legacy_file(tmp_path)
    ran: list[int] = []

    def later(db: sqlite3.Connection) -> None:
        ran.append(db.execute("PRAGMA user_version").fetchone()[0])  # what the earlier steps left
        db.execute("ALTER TABLE records ADD COLUMN note TEXT")

    monkeypatch.setattr(sqlite_outbox, "MIGRATIONS", [*sqlite_outbox.MIGRATIONS, later])
    SQLiteOutbox(path).close()
    SQLiteOutbox(path).close()
    assert ran == [4] and user_version(path) == 5


def test_the_url_noted_in_an_earlier_file_loses_its_credentials(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox-legacy.db"
    make_sqlite(path)
    records, dead = legacy_records("Jokes", "Chats")
    fill_sqlite(path, records, dead, url="http://ops:hunter2-pass@label-studio.invalid")
    outbox = SQLiteOutbox(path)
    try:
        assert outbox.meta()["label_studio_url"] == SERVER and outbox.stats().pending == 5
    finally:
        outbox.close()
    assert b"hunter2" not in path.read_bytes()


def test_a_failing_step_leaves_the_file_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _, _ = legacy_file(tmp_path)

    def broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("a step that fails half way")

    monkeypatch.setattr(sqlite_outbox, "MIGRATIONS", [*sqlite_outbox.MIGRATIONS, broken])
    with pytest.raises(RuntimeError, match="half way"):
        SQLiteOutbox(path)
    assert user_version(path) == 0  # not even the steps before it: one transaction
    db = sqlite3.connect(path)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    moved = db.execute("SELECT COUNT(*) FROM records WHERE project_key LIKE 'feedback:%'").fetchone()[0]
    db.close()
    assert "half_done" not in tables and moved == 0


def test_a_file_rebuilt_from_a_dump_is_not_upgraded_again(tmp_path: Path) -> None:
    """``.dump`` (the usual repair of a damaged file) drops ``user_version``: the meta table's copy says
    the file is current, so its sessions are not digested a second time."""
    outbox = SQLiteOutbox(tmp_path / "old" / "outbox.db")
    ref = session_ref("alice", "s-1")
    outbox.set_session_task("title:Chats", ref, 7, 8, 1.0)
    dump = "\n".join(outbox._db().iterdump())
    outbox.close()
    rebuilt = tmp_path / "new" / "outbox.db"
    rebuilt.parent.mkdir(mode=0o700)
    db = sqlite3.connect(rebuilt)
    db.executescript(dump)
    db.close()
    rebuilt.chmod(0o600)
    assert user_version(rebuilt) == 0

    restored = SQLiteOutbox(rebuilt)
    try:
        assert restored.session_task("title:Chats", ref) is not None
        assert user_version(rebuilt) == sqlite_outbox.schema_version()
        assert restored.meta() == {}
    finally:
        restored.close()


def test_a_file_of_a_newer_release_is_refused_untouched(tmp_path: Path) -> None:
    outbox = SQLiteOutbox(tmp_path / "state" / "outbox.db")
    outbox.close()
    db = sqlite3.connect(outbox.path, isolation_level=None)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(SchemaTooNew, match="schema version 99.*upgrade") as raised:
        SQLiteOutbox(outbox.path)
    assert isinstance(raised.value, OutboxUnavailable)  # captures wait; they are not dead-lettered
    assert user_version(outbox.path) == 99


# -- PostgreSQL ------------------------------------------------------------------------------------------


def pg_version(url: str, schema: str = "label_studio") -> int | None:
    import psycopg

    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass(%s)", (f"{schema}.schema_version",)).fetchone()[0] is None:
            return None
        return int(conn.execute(f"SELECT version FROM {schema}.schema_version").fetchone()[0])


def test_postgres_0_1_0_schema_is_upgraded_and_keeps_everything(pg_url: str) -> None:
    from langchain_label_studio.outbox import postgres

    make_postgres(pg_url)
    records, dead = legacy_records("Jokes", "Chats")
    fill_postgres(pg_url, SERVER, records, dead)
    assert pg_version(pg_url) is None

    outbox = postgres.PostgresOutbox(pg_url, SERVER)
    try:
        captures = outbox.claim(100, 60)
        assert pg_version(pg_url) == postgres.schema_version() == 4
        assert {c.record.capture_id for c in captures} == {r.capture_id for r in records[:2]}
        assert {c.record.capture_id for c in outbox.claim(100, 60)} == {r.capture_id for r in records[2:4]}
        assert outbox.claim(100, 60) == []
        [feedback] = outbox.claim(100, 60, feedback=True)
        assert feedback.record.capture_id == records[4].capture_id
        assert outbox.meta() == {"label_studio_url": SERVER}
        assert outbox.requeue_dead_letters() == 1
        assert outbox.stats().by_project[f"{FEEDBACK_QUEUE}title:Jokes"] == 2
    finally:
        outbox.close()
    again = postgres.PostgresOutbox(pg_url, SERVER)
    try:
        assert again.stats().pending == 6 and pg_version(pg_url) == 4
    finally:
        again.close()


def test_postgres_rows_of_a_url_with_credentials_are_kept_without_them(pg_url: str) -> None:
    """Earlier versions keyed rows by the URL as configured, ``user:password@`` included."""
    import psycopg

    from langchain_label_studio.outbox import postgres

    secret_url = "http://ops:hunter2-pass@label-studio.invalid"
    make_postgres(pg_url)
    records, dead = legacy_records("Jokes", "Chats")
    fill_postgres(pg_url, secret_url, records, dead)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO label_studio.sessions (server, project_key, session, task_id) VALUES (%s, %s, %s, %s)",
            (secret_url, "title:Chats", "old-session", 41),
        )

    outbox = postgres.PostgresOutbox(pg_url, secret_url)
    try:
        assert outbox.server == SERVER
        assert outbox.stats().pending == 5 and outbox.stats().dead_letters == 1
        assert outbox.session_task("title:Chats", digest("old-session")) is not None
        assert postgres.PostgresOutbox.servers(pg_url) == [SERVER]
    finally:
        outbox.close()
    with psycopg.connect(pg_url) as conn:
        for table in ("records", "sessions", "dead_letters", "meta"):
            rows = conn.execute(f"SELECT * FROM label_studio.{table}").fetchall()
            assert rows and "hunter2" not in repr(rows), table


def test_postgres_failing_step_rolls_back_and_newer_schema_is_refused(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from langchain_label_studio.outbox import postgres

    make_postgres(pg_url)

    def broken(conn: psycopg.Connection, schema: str) -> None:
        conn.execute(f"CREATE TABLE {schema}.half_done (x int)")
        raise RuntimeError("a step that fails half way")

    monkeypatch.setattr(postgres, "MIGRATIONS", [*postgres.MIGRATIONS, broken])
    outbox = postgres.PostgresOutbox(pg_url, SERVER)
    try:
        with pytest.raises(OutboxUnavailable, match="schema version 5: RuntimeError: a step that fails half way"):
            outbox.stats()
    finally:
        outbox.close()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('label_studio.half_done')").fetchone()[0] is None
    assert pg_version(pg_url) is None

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE label_studio.schema_version (version INTEGER NOT NULL, migrated_at FLOAT8)")
        conn.execute("INSERT INTO label_studio.schema_version VALUES (99, 0)")
    newer = postgres.PostgresOutbox(pg_url, SERVER)
    try:
        with pytest.raises(SchemaTooNew, match="schema version 99"):
            newer.stats()
    finally:
        newer.close()


def test_a_session_id_chosen_to_equal_another_sessions_digest_does_not_stop_the_upgrade(tmp_path: Path) -> None:
    """0.1.0 kept the raw ``X-Session-ID``: a client could send another session's digest as its id."""
    path = tmp_path / "state" / "outbox.db"
    make_sqlite(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("INSERT INTO sessions VALUES ('title:Chats', 'abc', 1, NULL, 1.0)")
    db.execute("INSERT INTO sessions VALUES ('title:Chats', ?, 2, NULL, 2.0)", (digest("abc"),))
    db.close()
    outbox = SQLiteOutbox(path)
    first = outbox.session_task("title:Chats", digest("abc"))
    second = outbox.session_task("title:Chats", digest(digest("abc")))
    assert (first and first.task_id, second and second.task_id) == (1, 2)
    outbox.close()


def test_postgres_a_session_id_equal_to_another_sessions_digest_does_not_stop_the_upgrade(pg_url: str) -> None:
    import psycopg

    from langchain_label_studio.outbox import postgres

    make_postgres(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for session, task in (("abc", 1), (digest("abc"), 2)):
            conn.execute(
                "INSERT INTO label_studio.sessions (server, project_key, session, task_id) VALUES (%s, %s, %s, %s)",
                (SERVER, "title:Chats", session, task),
            )
    outbox = postgres.PostgresOutbox(pg_url, SERVER)
    try:
        first = outbox.session_task("title:Chats", digest("abc"))
        second = outbox.session_task("title:Chats", digest(digest("abc")))
        assert (first and first.task_id, second and second.task_id) == (1, 2)
    finally:
        outbox.close()


def test_postgres_threads_opening_a_new_schema_together_migrate_it_once(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from langchain_label_studio.outbox import postgres

    ran: list[int] = []

    def counted(i: int, step):  # type: ignore[no-untyped-def]
        def run(conn, schema):  # type: ignore[no-untyped-def]
            ran.append(i)
            step(conn, schema)

        return run

    monkeypatch.setattr(postgres, "MIGRATIONS", [counted(i, s) for i, s in enumerate(postgres.MIGRATIONS)])
    outbox = postgres.PostgresOutbox(pg_url, SERVER)
    start = threading.Barrier(4)

    def use() -> None:
        start.wait()
        outbox.stats()

    threads = [threading.Thread(target=use) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        outbox.close()
    assert sorted(ran) == list(range(len(postgres.MIGRATIONS)))  # each step once, whichever thread ran it
