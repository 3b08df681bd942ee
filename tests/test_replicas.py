"""Several replicas sharing a PostgreSQL outbox (the local server at 127.0.0.1:5432).

Two uvicorn processes serve the same stateless chat app; a client alternates replicas
turn by turn, as a load balancer would. Each session must end as exactly one task with
every turn in order, whichever replica captured or delivered which turn, through a
replica's SIGKILL and a PostgreSQL restart.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import psycopg
import pytest
from conftest import ROOT, prefilled, tasks_where, wait_healthy
from faults import free_port


@pytest.fixture(params=["sqlite", "postgresql"])
def label_studio(request: pytest.FixtureRequest, label_studio):
    """The test Label Studio on SQLite, or the one on PostgreSQL (started on first use)."""
    return request.getfixturevalue("label_studio_pg") if request.param == "postgresql" else label_studio


class Replica:
    """One app process (uvicorn) of the deployment."""

    def __init__(self, label_studio, tmp_path, pg_url: str, project: str, name: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            **label_studio.env(),
            "LABEL_STUDIO_STATE_DIR": str(tmp_path / name),
            "LABEL_STUDIO_OUTBOX_URL": pg_url,
            "REPLICA_PROJECT": project,
            "PYTHONPATH": "tests",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "apps.replica_app:app", "--port", str(self.port), "--log-level", "error"],
            cwd=ROOT,
            env=env,
        )
        wait_healthy(self.base, self.proc)

    def health(self) -> dict:
        return httpx.get(f"{self.base}/label-studio/health", timeout=30).json()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(60)


@contextlib.contextmanager
def replicas(label_studio, tmp_path, pg_url: str, project: str, n: int = 2):
    started: list[Replica] = []
    try:
        for i in range(n):
            started.append(Replica(label_studio, tmp_path, pg_url, project, f"replica{i}"))
        yield started
    finally:
        for r in started:
            r.stop()


def user_text(session: str, turn: int) -> str:
    return f"{session} says hello {turn}"


def converse(reps: list[Replica], sessions: list[str], turns: int, log: list, workers: int = 8) -> None:
    """Each session's turns in order, turn ``k`` of session ``i`` on replica ``(i + k) % n``;
    a replica that does not answer is skipped, as a load balancer would. ``log`` gets
    ``(session, turn, replica index, answered_at)`` per answered turn."""

    def one(index: int, session: str) -> None:
        dialogue: list[dict] = []
        with httpx.Client(timeout=30) as http:
            for turn in range(turns):
                dialogue.append({"type": "human", "content": user_text(session, turn)})
                for attempt in range(len(reps)):
                    r = (index + turn + attempt) % len(reps)
                    try:
                        resp = http.post(
                            f"{reps[r].base}/chat/invoke",
                            json={"input": dialogue},
                            headers={"X-Session-ID": session, "X-User-ID": f"user-{session}"},
                        )
                    except httpx.TransportError:
                        continue
                    assert resp.status_code == 200, resp.text
                    log.append((session, turn, r, time.monotonic()))
                    dialogue.append({"type": "ai", "content": resp.json()["output"]["content"]})
                    break
                else:
                    raise AssertionError(f"no replica answered turn {turn} of {session}")

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(len(sessions)), sessions))


def wait_committed(replica: Replica, timeout: float = 60.0) -> float:
    """Wait until the replica's writer has committed every capture it had made when this was
    called (its ``committed`` reaches that ``captured``); returns when it was called: every
    answer the replica gave before then is on disk once this returns."""
    asked_at = time.monotonic()
    captured = replica.health()["captured"]
    deadline = time.monotonic() + timeout
    while (health := replica.health())["committed"] < captured:
        assert time.monotonic() < deadline, f"the captures were not committed in {timeout}s: {health}"
        time.sleep(0.05)
    return asked_at


def wait_all_delivered(replica: Replica, timeout: float = 240.0) -> dict:
    """Wait until the shared outbox is empty (as seen from one replica)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = replica.health()
        if health["pending"] == 0 and health["outbox_error"] is None:
            return health
        time.sleep(0.5)
    raise AssertionError(f"not delivered in {timeout}s: {health}")


def check_sessions(admin, project: str, expected_turns: dict[str, int | set[int]]) -> None:
    """Exactly one task per session, showing all its turns in order (``turns`` answered)."""
    tasks = tasks_where(admin, project)
    by_session = collections.Counter(t["data"]["session_id"] for t in tasks)
    assert sorted(by_session) == sorted(expected_turns), "sessions missing or unexpected"
    assert [s for s, n in by_session.items() if n > 1] == [], "a session has more than one task"
    for task in tasks:
        session = task["data"]["session_id"]
        dialogue = task["data"]["prompt"]
        answered = len(dialogue) // 2 + 1
        allowed = expected_turns[session]
        assert answered in (allowed if isinstance(allowed, set) else {allowed}), (session, dialogue)
        assert [m["role"] for m in dialogue] == ["user", "assistant"] * (answered - 1) + ["user"]
        assert [m["content"] for m in dialogue[::2]] == [user_text(session, t) for t in range(answered)]
        for k, m in enumerate(dialogue[1::2]):
            assert m["content"] == f"(turn {k + 1}) You said: {user_text(session, k)}"
        assert prefilled(task) == f"(turn {answered}) You said: {user_text(session, answered - 1)}"
        assert task["data"]["user_id"] == f"user-{session}"


def test_turns_alternating_between_replicas_make_one_task_per_session(label_studio, admin, tmp_path, pg_url):
    project = f"replicas-{uuid.uuid4().hex[:8]}"
    sessions = [f"s{i:03d}-{uuid.uuid4().hex[:6]}" for i in range(200)]
    log: list = []
    with replicas(label_studio, tmp_path, pg_url, project) as reps:
        converse(reps, sessions, 3, log)
        assert len(log) == 600 and {r for _, _, r, _ in log} == {0, 1}
        wait_all_delivered(reps[0])
        pids = {reps[0].health()["pid"], reps[1].health()["pid"]}
    assert len(pids) == 2
    check_sessions(admin, project, {s: 3 for s in sessions})
    with psycopg.connect(pg_url) as conn:
        mapped = conn.execute("SELECT COUNT(*) FROM label_studio.sessions").fetchone()[0]
        left = conn.execute("SELECT COUNT(*) FROM label_studio.records").fetchone()[0]
    assert (mapped, left) == (200, 0)


def test_a_killed_replicas_captures_are_delivered_by_the_other(label_studio, admin, tmp_path, pg_url):
    project = f"replicas-kill-{uuid.uuid4().hex[:8]}"
    sessions = [f"k{i:03d}-{uuid.uuid4().hex[:6]}" for i in range(120)]
    log: list = []
    with replicas(label_studio, tmp_path, pg_url, project) as reps:
        safe_before: list[float] = []

        def kill_soon() -> None:
            time.sleep(2.0)  # both replicas under load before the kill (the scenario)
            # A capture is submitted before its answer is sent: once the writer has committed what
            # the replica had captured at `safe_before`, its answers until then are on disk.
            safe_before.append(wait_committed(reps[1]))
            reps[1].stop(signal.SIGKILL)

        with concurrent.futures.ThreadPoolExecutor(1) as killer:
            killing = killer.submit(kill_soon)
            converse(reps, sessions, 3, log)
            killing.result()
        assert safe_before, "the replica was not killed"
        assert reps[1].proc.returncode == -signal.SIGKILL
        by_killed = [e for e in log if e[2] == 1]
        assert len(by_killed) > 20, "the killed replica answered too little to prove anything"
        wait_all_delivered(reps[0])

    # Every answer the killed replica gave before `safe_before` was committed and so must be in
    # Label Studio; for a later one (the last commit window) a session may show its previous turn.
    last: dict[str, tuple[int, int, float]] = {}
    for session, turn, r, at in log:
        if turn >= last.get(session, (-1,))[0]:
            last[session] = (turn, r, at)
    expected: dict[str, int | set[int]] = {}
    for session, (turn, r, at) in last.items():
        at_risk = r == 1 and at >= safe_before[0]
        expected[session] = {turn, turn + 1} if at_risk else turn + 1
    check_sessions(admin, project, expected)


def _restart_postgres() -> None:
    subprocess.run(["pg_ctlcluster", "15", "main", "restart", "-m", "fast"], check=True, timeout=120)


def test_postgres_restart_mid_load_loses_nothing(label_studio, admin, tmp_path, pg_url):
    project = f"replicas-pg-{uuid.uuid4().hex[:8]}"
    sessions: list[str] = []
    log: list = []
    with replicas(label_studio, tmp_path, pg_url, project) as reps:
        def restart_under_load() -> tuple[float, float]:
            """Restart PostgreSQL once the replicas have answered some turns: (started, ended)."""
            deadline = time.monotonic() + 60
            while len(log) < 10:
                assert time.monotonic() < deadline, "no turn answered before the restart"
                time.sleep(0.05)
            started = time.monotonic()
            _restart_postgres()
            return started, time.monotonic()

        with concurrent.futures.ThreadPoolExecutor(1) as restarter:
            restarted = restarter.submit(restart_under_load)
            # Sessions go on in rounds of 20 through the restart, until one round has run after it
            # (and at least 100 sessions in all).
            while True:
                after_restart = restarted.done()
                batch = [f"p{len(sessions) + i:03d}-{uuid.uuid4().hex[:6]}" for i in range(20)]
                sessions += batch
                converse(reps, batch, 3, log, workers=4)
                if after_restart and len(sessions) >= 100:
                    break
            restart_started, restart_ended = restarted.result()
        assert len(log) == 3 * len(sessions)
        answered = [at for *_, at in log]
        assert min(answered) < restart_started and max(answered) > restart_ended, "the load did not span the restart"
        other = wait_all_delivered(reps[1])  # each replica's view: its own captures not yet committed too
        health = wait_all_delivered(reps[0])
    assert health["dropped"] == 0 and other["dropped"] == 0
    check_sessions(admin, project, {s: 3 for s in sessions})


CHILD = """
import sys, time
from langchain_label_studio.outbox.postgres import PostgresOutbox
from langchain_label_studio.record import CaptureRecord
outbox = PostgresOutbox(sys.argv[1], "http://label-studio.invalid")
project = {"title": "leases", "mode": "chat"}
records = [CaptureRecord(project, f"prompt {i}") for i in range(3)]
records += [CaptureRecord(project, [{"role": "user", "content": f"turn {i}"}], session="S") for i in range(3)]
outbox.put_many(records)
claimed = outbox.claim(100, 600)
outbox.mark_sent([claimed[0].seq, claimed[3].seq])  # one prompt and the session's first turn are in flight
print(len(claimed), flush=True)
time.sleep(600)
"""


def test_a_dead_replicas_leases_end_at_once_unless_a_send_may_be_in_flight(pg_url):
    from langchain_label_studio.outbox.postgres import PostgresOutbox

    child = subprocess.Popen([sys.executable, "-c", CHILD, pg_url], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "6"
        # A grace period no slow machine outlasts while the test looks: the records in flight are held.
        outbox = PostgresOutbox(pg_url, "http://label-studio.invalid", unknown_grace_s=600)
        assert outbox.claim(100, 60) == [], "another replica's live lease was taken"
    finally:
        child.kill()
        child.wait()
    # The owner is gone: what it had not sent is free at once; the session with a record in
    # flight, and the prompt in flight, wait out the grace period, then come back marked as sent.
    deadline = time.monotonic() + 10  # PostgreSQL notices the closed connection within moments; the lease is 600 s
    while not (first := outbox.claim(100, 60)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(c.record.prompt for c in first) == ["prompt 1", "prompt 2"]
    assert not any(c.sent for c in first)
    assert outbox.claim(100, 60) == []
    # A replica whose grace period has run out (as this one's does after 600 s) takes them; the
    # first replica, alive, keeps what it claimed.
    later = PostgresOutbox(pg_url, "http://label-studio.invalid", unknown_grace_s=0.5)
    deadline = time.monotonic() + 30
    while not (second := later.claim(100, 60)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(c.record.session, c.sent) for c in second] == [(None, True), ("S", True), ("S", False), ("S", False)]
    later.close()
    outbox.close()


def test_a_late_older_turn_never_overwrites_a_newer_one(label_studio, admin, tmp_path, pg_url):
    """Turns reach the outbox out of order when replicas commit at different moments."""
    from langchain_label_studio.pipeline import Pipeline
    from langchain_label_studio.project import Project
    from langchain_label_studio.record import CaptureRecord
    from langchain_label_studio.settings import Settings

    title = f"late-turn-{uuid.uuid4().hex[:8]}"
    settings = Settings(url=label_studio.url, api_key=label_studio.api_key, state_dir=tmp_path, outbox=pg_url)
    pipeline = Pipeline(settings)
    project = Project(title, mode="chat").to_dict()
    now = time.time()

    def turn(k: int) -> CaptureRecord:
        dialogue = []
        for i in range(k):
            dialogue += [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]
        return CaptureRecord(
            project,
            dialogue + [{"role": "user", "content": f"q{k}"}],
            f"a{k}",
            data={"session_id": "S"},
            session="S",
            captured_at=now + k,
        )

    pipeline.submit(turn(1))
    assert pipeline.flush(60)
    pipeline.submit(turn(0))  # captured before turn 1, committed after it
    assert pipeline.flush(60)
    pipeline.submit(turn(2))
    pipeline.submit(turn(1))  # in one batch with a newer turn
    assert pipeline.flush(60)
    pipeline.close()
    [task] = tasks_where(admin, title)
    assert [m["content"] for m in task["data"]["prompt"]] == ["q0", "a0", "q1", "a1", "q2"]
    assert prefilled(task) == "a2"


def test_status_and_dead_letters_of_the_shared_outbox(label_studio, pg_url, tmp_path):
    from test_cli import cli

    from langchain_label_studio.outbox.postgres import PostgresOutbox
    from langchain_label_studio.record import CaptureRecord

    outbox = PostgresOutbox(pg_url, label_studio.url)
    project = {"title": "Support chats", "mode": "chat"}
    outbox.put_many([CaptureRecord(project, f"prompt {i}") for i in range(3)])
    [bad, *_] = outbox.claim(10, 60)
    outbox.dead_letter(bad.seq, "Label Studio said 400: bad data")
    outbox.close()
    env = {**os.environ, **label_studio.env(), "LABEL_STUDIO_STATE_DIR": str(tmp_path / "none")}
    env["LABEL_STUDIO_OUTBOX_URL"] = pg_url

    status = cli("status", env=env)
    assert status.returncode == 0, status.stderr
    assert "outbox postgresql://" in status.stdout and f"127.0.0.1:5432/{pg_url.rsplit('/', 1)[1]}" in status.stdout
    assert "pending        2" in status.stdout and "Support chats" in status.stdout
    assert "dead letters   1" in status.stdout and "reachable" in status.stdout
    listed = cli("dead-letters", "list", env=env)
    assert listed.returncode == 0 and "Label Studio said 400: bad data" in listed.stdout
    dropped = cli("dead-letters", "drop", str(bad.seq), "--outbox", pg_url, env={**env, "LABEL_STUDIO_OUTBOX_URL": ""})
    assert dropped.stdout.strip() == "dropped 1 dead letter(s)"


def test_a_full_shared_outbox_keeps_known_sessions_and_frees_space_once_delivered(pg_url):
    from langchain_label_studio.outbox.postgres import PostgresOutbox
    from langchain_label_studio.record import CaptureRecord

    outbox = PostgresOutbox(pg_url, "http://label-studio.invalid", max_bytes=400_000)
    project = {"title": "cap", "mode": "chat"}

    def turn(session: str, text: str) -> CaptureRecord:
        return CaptureRecord(project, [{"role": "user", "content": text}], session=session)

    assert outbox.put_many([turn("known", "early")]) == 1
    stored = sum(outbox.put_many([turn(f"new-{i}", "x" * 2000)]) for i in range(400))
    assert 0 < stored < 400, "the cap never applied"
    assert outbox.put_many([turn("known", "late")]) == 1  # a known session's later turn is kept
    assert outbox.put_many([turn("another-new", "y")]) == 0
    assert outbox.stats().pending == stored + 2

    while batch := outbox.claim(500, 60):  # delivered: the space is free again for new sessions
        outbox.done([c.seq for c in batch])
    assert outbox.size_bytes() > 400_000, "the table keeps its size on disk"
    assert outbox.put_many([turn("after", "z")]) == 1
    outbox.close()


def test_while_postgres_is_unreachable_captures_wait_in_memory_bounded_and_counted(label_studio, admin, pg_url):
    from faults import FaultProxy

    from langchain_label_studio.pipeline import Pipeline
    from langchain_label_studio.project import Project
    from langchain_label_studio.record import CaptureRecord
    from langchain_label_studio.settings import Settings

    proxy = FaultProxy(5432)  # not started: PostgreSQL refuses connections
    db = pg_url.rsplit("/", 1)[1]
    title = f"pg-down-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        url=label_studio.url,
        api_key=label_studio.api_key,
        outbox=f"postgresql://postgres@127.0.0.1:{proxy.port}/{db}",
        max_buffer=50,
        before_capture=lambda record: seen.append(record.capture_id) or record,
    )
    seen: list[str] = []
    pipeline = Pipeline(settings)
    project = Project(title).to_dict()
    accepted = [pipeline.submit(CaptureRecord(project, f"prompt {i}", f"answer {i}")) for i in range(80)]
    assert accepted == [True] * 50 + [False] * 30
    health = pipeline.health()
    assert health["outbox_error"] and "unavailable" in health["outbox_error"]
    assert health["pending"] == 50 and health["dropped"] == 30

    proxy.start()  # PostgreSQL is back: what waited in memory is committed and delivered
    try:
        assert pipeline.flush(90), pipeline.health()
    finally:
        pipeline.close()
        proxy.close()
    prompts = sorted(t["data"]["prompt"] for t in tasks_where(admin, title))
    assert prompts == sorted(f"prompt {i}" for i in range(50))
    assert len(seen) == len(set(seen)) == 50, "a record went through before_capture more than once"


def test_while_postgres_is_read_only_captures_wait_in_memory_and_none_is_set_aside(pg_url):
    """A failover to a standby (the database read-only) is the storage's failure, not the records'."""
    from langchain_label_studio.pipeline import Pipeline
    from langchain_label_studio.project import Project
    from langchain_label_studio.record import CaptureRecord
    from langchain_label_studio.settings import Settings

    admin_url, db = pg_url.rsplit("/", 1)

    def read_only(on: bool) -> None:
        with psycopg.connect(f"{admin_url}/postgres", autocommit=True) as conn:
            setting = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
            conn.execute(f'ALTER DATABASE "{db}" {setting}')
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (db,))

    pipeline = Pipeline(Settings(url="http://label-studio.test", outbox=pg_url, deliver=False))
    project = Project("read-only").to_dict()
    try:
        pipeline.submit(CaptureRecord(project, "before", "answer"))
        assert pipeline.flush(30)
        read_only(True)
        for i in range(3):
            pipeline.submit(CaptureRecord(project, f"during {i}", "answer"))
        deadline = time.monotonic() + 30
        while "read-only" not in (pipeline.health()["last_error"] or "") and time.monotonic() < deadline:
            time.sleep(0.1)
        health = pipeline.health()
        assert "read-only" in health["last_error"], health
        assert (health["pending"], health["dead_letters"], health["dead_lettered"]) == (4, 0, 0)
        read_only(False)
        assert pipeline.flush(30), pipeline.health()
        health = pipeline.health()
        assert (health["pending"], health["dead_letters"], health["committed"]) == (4, 0, 4)
    finally:
        pipeline.close(timeout=1)
    with psycopg.connect(pg_url) as conn:
        stored = conn.execute("SELECT payload FROM label_studio.records").fetchall()
    assert sum("during" in str(row[0]) for row in stored) == 3


def test_replicas_quarantining_at_once_each_keep_their_dead_letter(pg_url):
    import threading

    from langchain_label_studio.outbox.postgres import PostgresOutbox
    from langchain_label_studio.project import Project
    from langchain_label_studio.record import CaptureRecord

    boxes = [PostgresOutbox(pg_url, "http://label-studio.test") for _ in range(6)]
    start = threading.Barrier(len(boxes))

    def quarantine(box: PostgresOutbox) -> None:
        start.wait()
        for i in range(15):
            box.quarantine(CaptureRecord(Project("q").to_dict(), f"p{i}"), "redaction failed: ValueError")

    try:
        with concurrent.futures.ThreadPoolExecutor(len(boxes)) as pool:
            list(pool.map(quarantine, boxes))  # re-raises any failure
        assert boxes[0].stats().dead_letters == 6 * 15
    finally:
        for box in boxes:
            box.close()


def test_an_outbox_in_a_schema_with_capitals_or_a_dot_is_found_by_the_commands(pg_url):
    from langchain_label_studio.outbox.postgres import PostgresOutbox
    from langchain_label_studio.project import Project
    from langchain_label_studio.record import CaptureRecord

    for schema in ("LabelStudio", "ls.prod"):
        outbox = PostgresOutbox(pg_url, "http://label-studio.test", schema=schema)
        try:
            outbox.put_many([CaptureRecord(Project("q").to_dict(), "p")])
        finally:
            outbox.close()
        assert PostgresOutbox.servers(pg_url, schema=schema) == ["http://label-studio.test"]


def test_a_damaged_row_of_the_shared_outbox_is_set_aside_alone(pg_url):
    from langchain_label_studio.outbox.base import UNREADABLE
    from langchain_label_studio.outbox.postgres import PostgresOutbox
    from langchain_label_studio.project import Project
    from langchain_label_studio.record import CaptureRecord

    outbox = PostgresOutbox(pg_url, "http://label-studio.test")
    try:
        outbox.put_many([CaptureRecord(Project("q").to_dict(), f"p{i}") for i in range(3)])
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("UPDATE label_studio.records SET payload = 'not json' WHERE payload LIKE '%\"p1\"%'")
        claimed = outbox.claim(10, 60)
        assert sorted(c.record.prompt for c in claimed) == ["p0", "p2"]
        [(seq, record, reason, _)] = outbox.dead_letters()
        assert reason == UNREADABLE and record.data == {"quarantined": UNREADABLE}
        assert outbox.drop_dead_letters([seq]) == 1
    finally:
        outbox.close()
