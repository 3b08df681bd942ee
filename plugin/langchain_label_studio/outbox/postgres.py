"""The shared outbox: tables in PostgreSQL, for an app that runs as several replicas.

Every replica writes its captures here and every replica's delivery worker takes work
from here. Claims are serialised by an advisory lock and take rows ``FOR UPDATE SKIP
LOCKED``, so a session is leased to one worker at a time and its turns, whichever replica
captured them, go to one Label Studio task (the ``sessions`` table maps each session to
it). A lease ends when it expires or, at once, when the worker holding it is gone: each
worker holds an advisory lock for its lifetime, which PostgreSQL releases when its
connection dies. Records a vanished worker had already sent wait out ``unknown_grace_s``
(its request may still be in flight) before another worker looks them up and settles them.

Several Label Studio servers can share one database: rows are keyed by ``server``.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ..record import FEEDBACK_QUEUE, CaptureRecord
from ..urls import public_url
from .base import (
    Claimed,
    OutboxStats,
    OutboxUnavailable,
    SchemaTooNew,
    SessionTask,
    claimed_records,
    listed_record,
    session_digest,
    with_session_refs,
    within_cap,
)

try:
    import psycopg
    from psycopg import sql
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "a PostgreSQL outbox needs psycopg 3 and psycopg-pool: pip install 'langchain-label-studio[postgres]'"
    ) from exc

T = TypeVar("T")

#: Advisory-lock namespaces (the first key of ``pg_advisory_lock(int, int)``).
_OWNER_NS = 0x4C534F  # a live delivery worker
_LOCK_NS = 0x4C534C  # named locks (claims, project creation, imports)

#: The tables of schema version 1, as 0.1.0 made them (it kept no version). The schema
#: itself is created only when missing, so a user without CREATE on the database can run in a
#: schema made for it.
_V1_TABLES = """
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

#: Where the schema version is kept (one row; a schema without this table is version 0).
_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS {schema}.schema_version (version INTEGER NOT NULL, migrated_at DOUBLE PRECISION)"
)


def _v1_tables(conn: psycopg.Connection, schema: str) -> None:
    """Version 1: the schema and tables of 0.1.0, where missing."""
    if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL(_V1_TABLES).format(schema=sql.Identifier(schema)))


def _v2_feedback_queues(conn: psycopg.Connection, schema: str) -> None:
    """Version 2: feedback waits in queues of its own (0.1.0 queued it with its project's captures)."""
    for table in ("records", "dead_letters"):
        conn.execute(
            sql.SQL(
                "UPDATE {} SET project_key = %(queue)s || project_key "
                "WHERE project_key NOT LIKE %(pattern)s AND payload LIKE '%%\"kind\":\"feedback\"%%' "
                "AND payload::jsonb ->> 'kind' = 'feedback'"
            ).format(sql.Identifier(schema, table)),
            {"queue": FEEDBACK_QUEUE, "pattern": f"{FEEDBACK_QUEUE}%"},
        )


def _v3_session_refs(conn: psycopg.Connection, schema: str) -> None:
    """Version 3: sessions are kept as digests of the user and session ids, never the ids."""
    sessions = sql.Identifier(schema, "sessions")
    # Rewritten as a whole: row by row, a session id chosen to equal another's digest would collide.
    rows = conn.execute(
        sql.SQL("SELECT server, project_key, session, task_id, prediction_id, captured_at FROM {}").format(sessions)
    ).fetchall()
    conn.execute(sql.SQL("DELETE FROM {}").format(sessions))
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING").format(sessions),
            [(server, key, session_digest(s), task, pred, at) for server, key, s, task, pred, at in rows],
        )
    for table in ("records", "dead_letters"):
        name = sql.Identifier(schema, table)
        seqs = [
            seq
            for (seq,) in conn.execute(
                sql.SQL("SELECT seq FROM {} WHERE session IS NOT NULL OR payload LIKE %s").format(name),
                ('%"kind":"feedback"%',),
            ).fetchall()
        ]
        for start in range(0, len(seqs), 500):  # a bounded share of a full outbox in memory at a time
            chunk = conn.execute(
                sql.SQL("SELECT seq, session, payload FROM {} WHERE seq = ANY(%s)").format(name),
                (seqs[start : start + 500],),
            ).fetchall()
            with conn.cursor() as cur:
                cur.executemany(
                    sql.SQL("UPDATE {} SET session = %s, payload = %s WHERE seq = %s").format(name),
                    [(session_digest(s), with_session_refs(p), seq) for seq, s, p in chunk],
                )


def _v4_servers_without_credentials(conn: psycopg.Connection, schema: str) -> None:
    """Version 4: ``server`` and the URL noted in ``meta`` are the Label Studio URL without
    credentials (earlier versions kept ``user:password@`` of a URL that had them). Where the same
    capture, session or fact is kept under both, the row without credentials stays."""
    unique = {"records": ("capture_id",), "sessions": ("project_key", "session"), "meta": ("key",), "dead_letters": ()}
    servers: set[str] = set()
    for table in unique:
        query = sql.SQL("SELECT DISTINCT server FROM {}").format(sql.Identifier(schema, table))
        servers.update(row[0] for row in conn.execute(query).fetchall())
    for old in sorted(servers):
        new = public_url(old)
        if new == old:
            continue
        for table, keys in unique.items():
            name = sql.Identifier(schema, table)
            args = {"old": old, "new": new}
            if keys:
                same = sql.SQL(" AND ").join(sql.SQL("n.{0} = o.{0}").format(sql.Identifier(k)) for k in keys)
                conn.execute(
                    sql.SQL(
                        "DELETE FROM {0} AS o WHERE o.server = %(old)s "
                        "AND EXISTS (SELECT 1 FROM {0} AS n WHERE n.server = %(new)s AND {1})"
                    ).format(name, same),
                    args,
                )
            conn.execute(sql.SQL("UPDATE {} SET server = %(new)s WHERE server = %(old)s").format(name), args)
    meta = sql.Identifier(schema, "meta")
    noted = sql.SQL("SELECT server, value FROM {} WHERE key = 'label_studio_url'").format(meta)
    for server, url in conn.execute(noted).fetchall():
        conn.execute(
            sql.SQL("UPDATE {} SET value = %s WHERE server = %s AND key = 'label_studio_url'").format(meta),
            (public_url(url), server),
        )


#: One migration per version step: ``MIGRATIONS[n]`` takes the tables from version ``n`` to ``n + 1``.
#: Append a function to change the schema; never change one that has shipped.
MIGRATIONS: list[Callable[[psycopg.Connection, str], None]] = [
    _v1_tables,
    _v2_feedback_queues,
    _v3_session_refs,
    _v4_servers_without_credentials,
]


def schema_version() -> int:
    """The schema version this release makes and reads."""
    return len(MIGRATIONS)


#: The database's clock, so leases compare alike on every replica.
_NOW = "extract(epoch FROM clock_timestamp())::float8"
#: A lease still in force: not expired, and its worker alive, or its send maybe in flight.
_HELD = "({t}lease_until >= %(now)s AND ({t}lease_owner = ANY(%(live)s) OR COALESCE({t}sent_at, 0) >= %(settled)s))"


def _key(text: str) -> int:
    """A stable 31-bit key for an advisory lock."""
    value = 0
    for byte in text.encode():
        value = (value * 131 + byte) % 2_147_483_629
    return value


class PostgresOutbox:
    """An :class:`~langchain_label_studio.outbox.Outbox` in PostgreSQL, shared by replicas.

    ``server`` is the Label Studio URL the records are for (kept without its credentials);
    ``schema`` the database schema of the tables, created on first use.
    """

    def __init__(
        self,
        url: str,
        server: str,
        *,
        schema: str = "label_studio",
        max_bytes: int | None = None,
        unknown_grace_s: float = 60.0,
        pool_size: int = 4,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.server = public_url(server)
        self.schema = schema
        self.max_bytes = max_bytes
        self.unknown_grace_s = unknown_grace_s
        self.pool_size = pool_size
        self.connect_timeout_s = connect_timeout_s
        self.location = f"{public_url(url)} (schema {schema})"
        self._pool: ConnectionPool | None = None
        self._pid = -1
        self._guard = threading.Lock()
        self._owner_conn: psycopg.Connection | None = None
        self._owner = 0
        self._owner_pid = -1
        #: Connections inherited through a fork: never used or closed here (closing them would
        #: end the parent's sessions), only kept from the garbage collector.
        self._inherited: list[Any] = []
        self._q = {
            name: sql.SQL(text.replace("{s}.", "{schema}.")).format(schema=sql.Identifier(schema))
            for name, text in _QUERIES.items()
        }
        self._schema_ready = False

    # -- connections ----------------------------------------------------------------------
    def _pool_now(self) -> ConnectionPool:
        if self._pool is None or self._pid != os.getpid():
            with self._guard:
                if self._pool is None or self._pid != os.getpid():
                    if self._pool is not None:
                        self._inherited.append(self._pool)
                    self._pool = ConnectionPool(
                        self.url,
                        min_size=1,
                        max_size=self.pool_size,
                        kwargs={"autocommit": True, "connect_timeout": int(self.connect_timeout_s)},
                        timeout=self.connect_timeout_s,
                        check=ConnectionPool.check_connection,
                        name="label-studio-outbox",
                        open=True,
                    )
                    self._pid = os.getpid()
        return self._pool

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection (the schema created on first use); failures to connect become
        :class:`OutboxUnavailable`."""
        try:
            with self._pool_now().connection() as conn:
                if not self._schema_ready:
                    self._migrate(conn)
                    self._schema_ready = True
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise OutboxUnavailable(f"the PostgreSQL outbox at {public_url(self.url)} is unavailable: {exc}") from None

    def _migrate(self, conn: psycopg.Connection) -> None:
        """:meth:`_create_schema`, any failure of which leaves the outbox unavailable (captures
        wait in memory, the error is reported) rather than failing the records themselves."""
        try:
            self._create_schema(conn)
        except (OutboxUnavailable, psycopg.OperationalError):
            raise
        except Exception as exc:  # e.g. no CREATE privilege for a step that needs it
            raise OutboxUnavailable(
                f"the PostgreSQL outbox {self.location} cannot be brought to schema version {schema_version()}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _create_schema(self, conn: psycopg.Connection) -> None:
        """Bring the schema up to :func:`schema_version`: one transaction, under an advisory lock
        every replica takes, so one replica migrates and the others find it done.

        A schema already at this version is only read (no DDL, no lock), so a user without
        CREATE can run on tables made for it.
        """
        if self.stored_version(conn) == schema_version():
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_NS, _key("schema")))
            version = self.stored_version(conn)
            if version > schema_version():
                raise SchemaTooNew(self.location, version, schema_version())
            if version == schema_version():
                return
            for step in MIGRATIONS[version:]:
                step(conn, self.schema)
            table = sql.Identifier(self.schema, "schema_version")
            conn.execute(sql.SQL(_VERSION_TABLE).format(schema=sql.Identifier(self.schema)))
            conn.execute(sql.SQL("DELETE FROM {}").format(table))
            conn.execute(
                sql.SQL(f"INSERT INTO {{}} (version, migrated_at) VALUES (%s, {_NOW})").format(table),
                (schema_version(),),
            )

    def stored_version(self, conn: psycopg.Connection) -> int:
        """The schema version of the tables (0: none yet, or tables made by 0.1.0)."""
        table = sql.Identifier(self.schema, "schema_version")
        # pg_class as of this statement: to_regclass() may answer from a catalog snapshot taken
        # before another replica's migration committed, which would run the steps again.
        found = conn.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = 'schema_version'",
            (self.schema,),
        ).fetchone()
        if found is None:
            return 0
        return int(_one(conn.execute(sql.SQL("SELECT MAX(version) FROM {}").format(table)))[0] or 0)

    def _run(self, work: Callable[[psycopg.Connection], T]) -> T:
        with self._connection() as conn:
            return work(conn)

    def _live_owner(self) -> int:
        """This process's worker id, held as an advisory lock while the process lives.

        A new id is taken whenever the lock's connection was lost: the old id's leases are
        then void, and their records go to whichever worker claims first.
        """
        if self._owner_pid != os.getpid() and self._owner_conn is not None:
            self._inherited.append(self._owner_conn)
            self._owner_conn = None
        conn = self._owner_conn
        if conn is not None:
            try:
                conn.execute("SELECT 1")
                return self._owner
            except psycopg.Error:
                conn.close()
        self._owner_conn = None
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=int(self.connect_timeout_s))
            while True:
                owner = random.randint(1, 2**31 - 1)
                if _one(conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (_OWNER_NS, owner)))[0]:
                    break
        except psycopg.OperationalError as exc:
            raise OutboxUnavailable(f"the PostgreSQL outbox at {public_url(self.url)} is unavailable: {exc}") from None
        self._owner_conn, self._owner, self._owner_pid = conn, owner, os.getpid()
        return owner

    def close(self) -> None:
        if self._owner_conn is not None and self._owner_pid == os.getpid():
            self._owner_conn.close()
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close()
        self._pool, self._owner_conn, self._pid, self._owner_pid = None, None, -1, -1

    # -- records -----------------------------------------------------------------------------
    def size_bytes(self) -> int:
        """Bytes the records table takes on disk (with its indexes and TOAST)."""
        return int(self._run(lambda c: _one(c.execute(self._q["size"], {"table": self._table()}))[0]))

    def _used_bytes(self, conn: psycopg.Connection) -> int:
        """Bytes the waiting records take, roughly as :func:`within_cap` counts them.

        The table's size on disk is cheap to read but keeps the space of delivered records
        until it is reused, so the records themselves are only measured when it is over the cap.
        """
        on_disk = int(_one(conn.execute(self._q["size"], {"table": self._table()}))[0])
        if self.max_bytes is None or on_disk <= self.max_bytes:
            return on_disk
        return int(_one(conn.execute(self._q["used"]))[0])

    def _table(self) -> str:
        return sql.Identifier(self.schema, "records").as_string(None)

    def put_many(self, records: list[CaptureRecord]) -> int:
        if not records:
            return 0
        rows = [(r, r.to_json()) for r in records]

        def work(conn: psycopg.Connection) -> int:
            kept = rows
            if self.max_bytes is not None:
                budget = self.max_bytes - self._used_bytes(conn)
                kept = within_cap(rows, budget, lambda p, s: self._has_session(conn, p, s), self.max_bytes)
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    self._q["insert"],
                    [
                        {
                            "server": self.server,
                            "capture_id": r.capture_id,
                            "project_key": r.queue_key,
                            "session": r.session,
                            "payload": payload,
                            "created_at": r.captured_at,
                        }
                        for r, payload in kept
                    ],
                )
            return len(kept)

        return self._run(work)

    def _has_session(self, conn: psycopg.Connection, project_key: str, session: str) -> bool:
        args = {"server": self.server, "project_key": project_key, "session": session}
        return conn.execute(self._q["has_session"], args).fetchone() is not None

    def claim(self, limit: int, lease_s: float, feedback: bool = False) -> list[Claimed]:
        owner = self._live_owner()

        def work(conn: psycopg.Connection) -> list[tuple[int, str, int, bool]]:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_NS, _key(f"claim:{self.server}")))
                now = _one(conn.execute(f"SELECT {_NOW}"))[0]
                live = [r[0] for r in conn.execute(_LIVE_OWNERS, {"ns": _OWNER_NS}).fetchall()]
                args = {
                    "server": self.server,
                    "now": now,
                    "live": live,
                    "settled": now - self.unknown_grace_s,
                    "limit": limit,
                    "owner": owner,
                    "until": now + lease_s,
                    "feedback": feedback,
                    "feedback_queue": f"{FEEDBACK_QUEUE}%",
                }
                first = conn.execute(self._q["first_due"], args).fetchone()
                if first is None:
                    return []
                return conn.execute(self._q["claim"], {**args, "project_key": first[0]}).fetchall()

        rows = self._run(work)
        return claimed_records(sorted(rows), self.dead_letter, self.location)

    def _update(self, name: str, seqs: list[int], **args: Any) -> None:
        if seqs:
            self._run(lambda c: c.execute(self._q[name], {"server": self.server, "seqs": seqs, **args}))

    def mark_sent(self, seqs: list[int]) -> None:
        self._update("mark_sent", seqs)

    def done(self, seqs: list[int]) -> None:
        self._update("done", seqs)

    def retry_later(self, seqs: list[int], delay_s: float) -> None:
        self._update("retry_later", seqs, delay=delay_s)

    def retry_now(self) -> None:
        self._run(lambda c: c.execute(self._q["retry_now"], {"server": self.server}))

    def dead_letter(self, seq: int, reason: str) -> None:
        def work(conn: psycopg.Connection) -> None:
            with conn.transaction():
                conn.execute(self._q["dead_letter"], {"server": self.server, "seq": seq, "reason": reason[:2000]})
                conn.execute(self._q["done"], {"server": self.server, "seqs": [seq]})

        self._run(work)

    def quarantine(self, record: CaptureRecord, reason: str) -> None:
        args = {
            "server": self.server,
            "capture_id": record.capture_id,
            "project_key": record.queue_key,
            "payload": record.to_json(),
            "reason": reason[:2000],
        }

        def work(conn: psycopg.Connection) -> None:
            with conn.transaction():  # one at a time: each takes the next number below zero
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_NS, _key("quarantine")))
                conn.execute(self._q["quarantine"], args)

        self._run(work)

    # -- sessions --------------------------------------------------------------------------------
    def session_task(self, project_key: str, session: str) -> SessionTask | None:
        args = {"server": self.server, "project_key": project_key, "session": session}
        row = self._run(lambda c: c.execute(self._q["session_task"], args).fetchone())
        return SessionTask(*row) if row else None

    def set_session_task(
        self, project_key: str, session: str, task_id: int, prediction_id: int | None, captured_at: float | None
    ) -> None:
        args = {
            "server": self.server,
            "project_key": project_key,
            "session": session,
            "task_id": task_id,
            "prediction_id": prediction_id,
            "captured_at": captured_at,
        }
        self._run(lambda c: c.execute(self._q["set_session_task"], args))

    # -- a lock shared by every replica --------------------------------------------------------
    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        key = _key(f"{name}:{self.server}")
        with self._connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s, %s)", (_LOCK_NS, key))
            try:
                yield
            finally:
                try:
                    conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_LOCK_NS, key))
                except psycopg.OperationalError:
                    pass  # the connection is gone, and the lock with it

    # -- facts about the outbox -------------------------------------------------------------------
    def set_meta(self, **values: str) -> None:
        def work(conn: psycopg.Connection) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    self._q["set_meta"], [{"server": self.server, "key": k, "value": v} for k, v in values.items()]
                )

        self._run(work)

    def meta(self) -> dict[str, str]:
        return dict(self._run(lambda c: c.execute(self._q["meta"], {"server": self.server}).fetchall()))

    # -- dead letters --------------------------------------------------------------------------------
    def dead_letters(self) -> list[tuple[int, CaptureRecord, str, float]]:
        rows = self._run(lambda c: c.execute(self._q["dead_letters"], {"server": self.server}).fetchall())
        return [(seq, listed_record(p), reason, at) for seq, p, reason, at in rows]

    def requeue_dead_letters(self, seqs: list[int] | None = None) -> int:
        args = {"server": self.server, "all": seqs is None, "seqs": seqs or []}

        def work(conn: psycopg.Connection) -> int:
            with conn.transaction():
                moved = conn.execute(self._q["requeue"], args).rowcount
                conn.execute(self._q["drop_requeued"], args)
            return moved

        return self._run(work)

    def drop_dead_letters(self, seqs: list[int] | None = None) -> int:
        args = {"server": self.server, "all": seqs is None, "seqs": seqs or []}
        return self._run(lambda c: c.execute(self._q["drop_dead"], args).rowcount)

    def stats(self) -> OutboxStats:
        def work(conn: psycopg.Connection) -> OutboxStats:
            args = {"server": self.server, "table": self._table()}
            by_project: dict[str, int] = dict(conn.execute(self._q["by_project"], args).fetchall())
            oldest, now = _one(conn.execute(self._q["oldest"], args))
            dead = _one(conn.execute(self._q["dead_count"], args))[0]
            size = _one(conn.execute(self._q["size"], args))[0]
            return OutboxStats(
                pending=sum(by_project.values()),
                oldest_age_s=None if oldest is None else max(0.0, now - oldest),
                dead_letters=dead,
                by_project=by_project,
                size_bytes=int(size),
            )

        return self._run(work)

    @classmethod
    def servers(cls, url: str, schema: str = "label_studio") -> list[str]:
        """The Label Studio URLs that have records, dead letters or facts in this database."""
        query = sql.SQL(
            "SELECT server FROM {s}.meta UNION SELECT server FROM {s}.records "
            "UNION SELECT server FROM {s}.dead_letters ORDER BY 1"
        ).format(s=sql.Identifier(schema))
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                meta = sql.Identifier(schema, "meta").as_string(conn)  # quoted as the tables were made
                if _one(conn.execute("SELECT to_regclass(%s)", (meta,)))[0] is None:
                    return []
                return sorted({public_url(row[0]) for row in conn.execute(query).fetchall()})
        except psycopg.OperationalError as exc:
            raise OutboxUnavailable(f"the PostgreSQL outbox at {public_url(url)} is unavailable: {exc}") from None


def _one(cursor: psycopg.Cursor[Any]) -> tuple[Any, ...]:
    """The row of a query that always returns one (an aggregate, a function call)."""
    row = cursor.fetchone()
    if row is None:
        raise OutboxUnavailable("PostgreSQL returned no row for a query that always returns one")
    return tuple(row)


_LIVE_OWNERS = (
    "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND classid = %(ns)s AND objsubid = 2 "
    "AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)

_QUERIES = {
    "size": "SELECT pg_total_relation_size(%(table)s::regclass)",
    "used": "SELECT COALESCE(SUM(octet_length(payload) * 2 + 200), 0) FROM {s}.records",
    "insert": (
        "INSERT INTO {s}.records (server, capture_id, project_key, session, payload, created_at) "
        "VALUES (%(server)s, %(capture_id)s, %(project_key)s, %(session)s, %(payload)s, %(created_at)s) "
        "ON CONFLICT (server, capture_id) DO NOTHING"
    ),
    "has_session": (
        "SELECT 1 FROM {s}.records WHERE server = %(server)s AND project_key = %(project_key)s "
        "AND session = %(session)s UNION ALL SELECT 1 FROM {s}.sessions WHERE server = %(server)s "
        "AND project_key = %(project_key)s AND session = %(session)s LIMIT 1"
    ),
    "first_due": (
        "SELECT project_key FROM {s}.records WHERE server = %(server)s AND not_before <= %(now)s "
        f"AND NOT {_HELD.format(t='')} AND (project_key LIKE %(feedback_queue)s) = %(feedback)s "
        "ORDER BY seq LIMIT 1"
    ),
    "claim": (
        "WITH due AS ("
        "  SELECT seq FROM {s}.records AS r"
        "  WHERE server = %(server)s AND project_key = %(project_key)s AND not_before <= %(now)s"
        f"   AND NOT {_HELD.format(t='r.')}"
        "    AND (session IS NULL OR NOT EXISTS ("
        "      SELECT 1 FROM {s}.records AS o WHERE o.server = r.server AND o.project_key = r.project_key"
        f"       AND o.session = r.session AND {_HELD.format(t='o.')}))"
        "  ORDER BY seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
        "UPDATE {s}.records AS r SET lease_owner = %(owner)s, lease_until = %(until)s FROM due "
        "WHERE r.seq = due.seq RETURNING r.seq, r.payload, r.attempts, r.sent_at IS NOT NULL"
    ),
    "mark_sent": (f"UPDATE {{s}}.records SET sent_at = {_NOW} WHERE server = %(server)s AND seq = ANY(%(seqs)s)"),
    "done": "DELETE FROM {s}.records WHERE server = %(server)s AND seq = ANY(%(seqs)s)",
    "retry_later": (
        f"UPDATE {{s}}.records SET attempts = attempts + 1, not_before = {_NOW} + %(delay)s, lease_until = 0, "
        "lease_owner = NULL WHERE server = %(server)s AND seq = ANY(%(seqs)s)"
    ),
    "retry_now": "UPDATE {s}.records SET not_before = 0 WHERE server = %(server)s AND not_before > 0",
    "dead_letter": (
        "INSERT INTO {s}.dead_letters (seq, server, capture_id, project_key, session, payload, reason, failed_at) "
        f"SELECT seq, server, capture_id, project_key, session, payload, %(reason)s, {_NOW} FROM {{s}}.records "
        "WHERE server = %(server)s AND seq = %(seq)s "
        "ON CONFLICT (seq) DO UPDATE SET reason = EXCLUDED.reason, failed_at = EXCLUDED.failed_at"
    ),
    "quarantine": (
        # Below zero: never the seq of a queued record, which may become a dead letter later.
        "INSERT INTO {s}.dead_letters (seq, server, capture_id, project_key, session, payload, reason, failed_at) "
        "SELECT LEAST(0, COALESCE(MIN(seq), 0)) - 1, %(server)s, %(capture_id)s, %(project_key)s, NULL, "
        f"%(payload)s, %(reason)s, {_NOW} FROM {{s}}.dead_letters"
    ),
    "session_task": (
        "SELECT task_id, prediction_id, captured_at FROM {s}.sessions "
        "WHERE server = %(server)s AND project_key = %(project_key)s AND session = %(session)s"
    ),
    "set_session_task": (
        "INSERT INTO {s}.sessions (server, project_key, session, task_id, prediction_id, captured_at) "
        "VALUES (%(server)s, %(project_key)s, %(session)s, %(task_id)s, %(prediction_id)s, %(captured_at)s) "
        "ON CONFLICT (server, project_key, session) DO UPDATE SET task_id = EXCLUDED.task_id, "
        "prediction_id = EXCLUDED.prediction_id, captured_at = EXCLUDED.captured_at"
    ),
    "set_meta": (
        "INSERT INTO {s}.meta (server, key, value) VALUES (%(server)s, %(key)s, %(value)s) "
        "ON CONFLICT (server, key) DO UPDATE SET value = EXCLUDED.value"
    ),
    "meta": "SELECT key, value FROM {s}.meta WHERE server = %(server)s",
    "dead_letters": (
        "SELECT seq, payload, reason, failed_at FROM {s}.dead_letters WHERE server = %(server)s ORDER BY seq"
    ),
    "requeue": (
        "INSERT INTO {s}.records (server, capture_id, project_key, session, payload, created_at) "
        "SELECT server, capture_id, project_key, session, payload, failed_at FROM {s}.dead_letters "
        "WHERE server = %(server)s AND seq >= 0 AND (%(all)s OR seq = ANY(%(seqs)s)) "
        "ON CONFLICT (server, capture_id) DO NOTHING"
    ),
    "drop_requeued": (
        "DELETE FROM {s}.dead_letters WHERE server = %(server)s AND seq >= 0 AND (%(all)s OR seq = ANY(%(seqs)s))"
    ),
    "drop_dead": "DELETE FROM {s}.dead_letters WHERE server = %(server)s AND (%(all)s OR seq = ANY(%(seqs)s))",
    "by_project": "SELECT project_key, COUNT(*) FROM {s}.records WHERE server = %(server)s GROUP BY project_key",
    "oldest": f"SELECT MIN(created_at), {_NOW} FROM {{s}}.records WHERE server = %(server)s",
    "dead_count": "SELECT COUNT(*) FROM {s}.dead_letters WHERE server = %(server)s",
}
