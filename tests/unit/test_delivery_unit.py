"""The delivery state machine against a fake Label Studio built from recorded answers.

A SQLite outbox in a temporary directory, the real ``Delivery`` and ``LabelStudioClient``, and
``FakeLabelStudio`` behind ``httpx.MockTransport``: no server, no network.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fake_label_studio import PAT, FakeLabelStudio

from langchain_label_studio.delivery import FEEDBACK_ATTEMPTS, FEEDBACK_BATCH, Delivery, backoff
from langchain_label_studio.identity import session_ref
from langchain_label_studio.label_config import DEFAULT_CONFIGS
from langchain_label_studio.metrics import Metrics
from langchain_label_studio.outbox import SQLiteOutbox
from langchain_label_studio.record import CaptureRecord, new_id


@pytest.fixture
def fake() -> FakeLabelStudio:
    return FakeLabelStudio()


@pytest.fixture
def outbox(tmp_path: Path):
    box = SQLiteOutbox(tmp_path / "state" / "outbox.db")
    yield box
    box.close()


@pytest.fixture
def delivery(fake: FakeLabelStudio, outbox: SQLiteOutbox) -> Delivery:
    return Delivery(fake.client(), outbox, Metrics(), batch_size=50)


def prompt(title: str = "Jokes", n: int = 0, **data: object) -> CaptureRecord:
    project = {"title": title, "id": None, "mode": "prompt", "label_config": None}
    return CaptureRecord(project=project, prompt=f"question {n}", response=f"answer {n}", data=dict(data))


def turn(session: str, text: str, answer: str, at: float, user: str = "alice", title: str = "Chats") -> CaptureRecord:
    project = {"title": title, "id": None, "mode": "chat", "label_config": None}
    return CaptureRecord(
        project=project,
        prompt=[{"role": "user", "content": text}],
        response=answer,
        data={"user_id": user, "session_id": session},
        session=session_ref(user, session),
        captured_at=at,
    )


def feedback(title: str, request_id: str, score: float = 1.0) -> CaptureRecord:
    project = {"title": title, "id": None, "mode": "prompt", "label_config": None}
    entry = {"score": score, "comment": None, "at": "2026-12-01T00:00:00+00:00"}
    return CaptureRecord(
        project=project,
        prompt="",
        data={"feedback": entry},
        kind="feedback",
        target={"request_id": request_id, "session_id": None, "user_id": "alice"},
    )


def drain(delivery: Delivery, steps: int = 10) -> None:
    """Run steps until nothing is taken (ignoring the backoff: time is not what is tested here)."""
    for _ in range(steps):
        delivery.outbox.retry_now()
        delivery.resume()
        if delivery.step() == 0:
            return


def only_project(fake: FakeLabelStudio, title: str) -> int:
    [pid] = [p["id"] for p in fake.projects.values() if p["title"] == title]
    return pid


def answer(fake: FakeLabelStudio, task: dict) -> str:
    [pred_id] = task["predictions"]
    return "\n".join(fake.predictions[pred_id]["result"][0]["value"]["text"])


# -- batches -----------------------------------------------------------------------------------------------


def test_a_batch_is_one_import_into_a_project_created_once(fake, outbox, delivery) -> None:
    outbox.put_many([prompt(n=i) for i in range(20)])
    assert delivery.step() == 20
    pid = only_project(fake, "Jokes")
    assert fake.projects[pid]["label_config"] == DEFAULT_CONFIGS["prompt"]
    tasks = fake.project_tasks(pid)
    assert len(tasks) == 20 and fake.count("POST", r"/api/projects/\d+/import") == 1
    assert sorted(answer(fake, t) for t in tasks) == sorted(f"answer {i}" for i in range(20))
    assert outbox.stats().pending == 0 and delivery.metrics.delivered == 20

    outbox.put_many([prompt(n=99)])
    delivery.step()
    assert fake.count("POST", "/api/projects/") == 1  # known now: neither looked up nor created again


def test_an_existing_project_is_used_and_one_that_does_not_fit_is_left_alone(fake, outbox, delivery) -> None:
    pid = fake.add_project("Jokes", DEFAULT_CONFIGS["prompt"])
    wrong = fake.add_project("Chats", DEFAULT_CONFIGS["prompt"])  # a chat route pointed at a prompt project
    outbox.put_many([prompt(), turn("s1", "Hi", "Hello", time.time())])
    drain(delivery)
    assert len(fake.project_tasks(pid)) == 1 and fake.project_tasks(wrong) == []
    assert "cannot take chat captures" in (delivery.metrics.last_error or "")
    assert outbox.stats().pending == 1  # waits in the outbox until the project is fixed


# -- sessions ----------------------------------------------------------------------------------------------


def test_a_session_is_one_task_updated_by_later_turns(fake, outbox, delivery) -> None:
    now = time.time()
    outbox.put_many([turn("s1", "Hi", "Hello", now), turn("s1", "Weather?", "Sunny", now + 1)])
    delivery.step()
    [task] = fake.project_tasks(only_project(fake, "Chats"))
    assert answer(fake, task) == "Sunny"  # two turns in one batch: one task with the latest

    outbox.put_many([turn("s1", "And tomorrow?", "Rain", now + 2)])
    delivery.step()
    [task] = fake.project_tasks(only_project(fake, "Chats"))
    assert answer(fake, task) == "Rain" and task["data"]["prompt"][-1]["content"] == "And tomorrow?"
    assert fake.count("PATCH", r"/api/tasks/\d+") == 1 and fake.count("PATCH", r"/api/predictions/\d+") == 1
    assert delivery.metrics.updated == 1


def test_an_annotated_session_continues_in_a_new_task(fake, outbox, delivery) -> None:
    now = time.time()
    outbox.put_many([turn("s1", "Hi", "Hello", now)])
    delivery.step()
    [first] = fake.project_tasks(only_project(fake, "Chats"))
    fake.annotate(first["id"])
    outbox.put_many([turn("s1", "More?", "Yes", now + 1)])
    delivery.step()
    tasks = fake.project_tasks(only_project(fake, "Chats"))
    assert len(tasks) == 2 and answer(fake, tasks[0]) == "Hello" and answer(fake, tasks[1]) == "Yes"
    assert outbox.session_task("title:Chats", session_ref("alice", "s1") or "").task_id == tasks[1]["id"]


def test_sessions_of_different_users_are_different_tasks(fake, outbox, delivery) -> None:
    now = time.time()
    outbox.put_many([turn("s1", "Hi", "A", now, user="alice"), turn("s1", "Hi", "B", now, user="mallory")])
    delivery.step()
    tasks = fake.project_tasks(only_project(fake, "Chats"))
    assert sorted(t["data"]["user_id"] for t in tasks) == ["alice", "mallory"]


def test_a_late_older_turn_never_overwrites_a_newer_one(fake, outbox, delivery) -> None:
    now = time.time()
    outbox.put_many([turn("s1", "Later", "newer", now + 10)])
    delivery.step()
    outbox.put_many([turn("s1", "Earlier", "older", now)])
    delivery.step()
    [task] = fake.project_tasks(only_project(fake, "Chats"))
    assert answer(fake, task) == "newer" and fake.count("PATCH", r"/api/tasks/\d+") == 0
    assert outbox.stats().pending == 0


# -- unknown outcomes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not-applied"])
def test_an_import_with_an_unknown_outcome_is_looked_up_before_it_is_sent_again(fake, outbox, delivery, applied):
    now = time.time()
    outbox.put_many([prompt(n=i) for i in range(5)] + [turn("s1", "Hi", "Hello", now, title="Jokes-chat")])
    fake.fail("POST", r"/api/projects/\d+/import", error=httpx.ReadTimeout, applied=applied, times=2)
    drain(delivery)
    tasks = fake.project_tasks(only_project(fake, "Jokes"))
    assert len(tasks) == 5  # never twice, whether or not the lost request went through
    assert len(fake.project_tasks(only_project(fake, "Jokes-chat"))) == 1
    assert fake.count("GET", "/api/tasks/") >= 1  # looked up by capture_id
    assert outbox.stats().pending == 0 and delivery.metrics.retried >= 1
    mapping = outbox.session_task("title:Jokes-chat", session_ref("alice", "s1") or "")
    assert mapping is not None  # a session settled by the lookup keeps its task


def test_a_5xx_after_the_import_is_settled_by_the_lookup(fake, outbox, delivery) -> None:
    outbox.put_many([prompt(n=i) for i in range(3)])
    fake.fail("POST", r"/api/projects/\d+/import", status=502, applied=True)
    drain(delivery)
    assert len(fake.project_tasks(only_project(fake, "Jokes"))) == 3
    assert fake.count("POST", r"/api/projects/\d+/import") == 1  # found, not sent again


# -- rejections --------------------------------------------------------------------------------------------------


def test_a_refused_record_is_split_out_and_dead_lettered_with_the_reason(fake, outbox, delivery) -> None:
    config = DEFAULT_CONFIGS["prompt"].replace("<View>", '<View><Text name="context" value="$context"/>')
    records = [prompt("Custom", n=i, context="c") for i in range(8)]
    records[5] = prompt("Custom", n=5)  # lacks "context": Label Studio refuses the whole import
    for r in records:
        r.project["label_config"] = config
    outbox.put_many(records)
    delivery.step()
    pid = only_project(fake, "Custom")
    assert len(fake.project_tasks(pid)) == 7
    [(_, dead, reason, _)] = outbox.dead_letters()
    assert dead.capture_id == records[5].capture_id
    assert "(400)" in reason and '\\"context\\" key is expected in task data' in reason
    assert fake.count("POST", rf"/api/projects/{pid}/import") <= 1 + 2 * 3  # halves, not one by one
    assert outbox.stats().pending == 0


def test_a_deleted_project_is_looked_up_again_and_its_captures_delivered(fake, outbox, delivery) -> None:
    outbox.put_many([prompt()])
    delivery.step()
    old = only_project(fake, "Jokes")
    del fake.projects[old]  # deleted in Label Studio
    outbox.put_many([prompt(n=1)])
    drain(delivery)
    new = only_project(fake, "Jokes")
    assert new != old and len(fake.project_tasks(new)) == 1
    assert outbox.dead_letters() == [] and "is gone" in (delivery.metrics.last_error or "")


def test_a_project_named_by_id_that_does_not_exist_holds_its_captures(fake, outbox, delivery) -> None:
    record = prompt()
    record.project["id"] = 424242
    outbox.put_many([record])
    delivery.step()
    assert "project 424242 does not exist" in (delivery.metrics.last_error or "")
    assert outbox.stats().pending == 1 and delivery.paused_until - time.time() >= 4.9  # a long rest
    assert fake.count("POST", "/api/projects/") == 0  # never created in its place


# -- feedback -------------------------------------------------------------------------------------------------------


def test_feedback_lands_on_its_request_task_with_exact_counts(fake, outbox, delivery) -> None:
    outbox.put_many([prompt(request_id="req-1"), prompt(n=1, request_id="req-2")])
    delivery.step()
    outbox.put_many([feedback("Jokes", "req-1", 1.0), feedback("Jokes", "req-1", 0.0)])
    delivery.step()
    data = {t["data"]["request_id"]: t["data"] for t in fake.project_tasks(only_project(fake, "Jokes"))}
    assert data["req-1"]["feedback_count"] == 2 and data["req-1"]["feedback_mean"] == 0.5
    assert data["req-1"]["feedback_score"] == 0.0 and "feedback" not in data["req-2"]


def test_feedback_waits_in_its_own_lane_behind_captures(fake, outbox, delivery) -> None:
    outbox.put_many([feedback("Jokes", f"req-{i}") for i in range(FEEDBACK_BATCH + 10)])
    outbox.put_many([prompt(request_id="req-0")])
    taken = delivery.step()
    assert taken == 1 + FEEDBACK_BATCH  # the capture first, then at most one feedback batch
    assert len(fake.project_tasks(only_project(fake, "Jokes"))) == 1


def test_feedback_never_creates_a_project_and_is_dead_lettered_in_the_end(fake, outbox, delivery) -> None:
    outbox.put_many([feedback("Nowhere", "req-x")])
    delivery.step()
    assert fake.projects == {} and outbox.stats().pending == 1
    fake.add_project("Nowhere", DEFAULT_CONFIGS["prompt"])
    for _ in range(FEEDBACK_ATTEMPTS + 1):  # the project exists, the request's task never appears
        outbox.retry_now()
        delivery.step()
    [(_, _, reason, _)] = outbox.dead_letters()
    assert reason == "no Label Studio task for the capture this feedback names"


# -- backoff and tokens ------------------------------------------------------------------------------------------------


def test_failures_back_off_and_a_fix_resumes_at_once(fake, outbox, delivery) -> None:
    outbox.put_many([prompt()])
    fake.fail("POST", "/api/projects/", status=503, times=3)
    delivery.step()
    first = delivery.paused_until - time.time()
    assert 0.4 <= first <= 2.1 and delivery.failures == 1 and outbox.claim(10, 1) == []  # not due yet
    assert "(503)" in (delivery.metrics.last_error or "")
    drain(delivery)
    assert len(fake.project_tasks(only_project(fake, "Jokes"))) == 1 and delivery.failures == 0


def test_a_refused_token_rests_longer(fake, outbox) -> None:
    delivery = Delivery(fake.client(api_key="wrong-token"), outbox, Metrics())
    outbox.put_many([prompt()])
    delivery.step()
    assert delivery.paused_until - time.time() >= 4.9  # 10 s base for a token: not once a second
    assert "refused the API key" in (delivery.metrics.last_error or "") and outbox.stats().pending == 1


def test_a_personal_access_token_is_exchanged_and_refreshed(fake, outbox) -> None:
    delivery = Delivery(fake.client(api_key=PAT), outbox, Metrics())
    outbox.put_many([prompt()])
    delivery.step()
    fake.expire_access_tokens()
    outbox.put_many([prompt(n=1)])
    delivery.step()
    assert len(fake.project_tasks(only_project(fake, "Jokes"))) == 2
    assert fake.count("POST", "/api/token/refresh/") == 2  # once at first, once after the 401


def test_backoff_grows_with_jitter_and_a_cap() -> None:
    for attempt in range(20):
        delays = [backoff(attempt, base_s=1.0, cap_s=60.0) for _ in range(50)]
        assert all(0.5 <= d <= min(60.0, 2**attempt) for d in delays)
    assert max(backoff(16) for _ in range(200)) > 30  # spread up to the cap


def test_the_fake_answers_from_a_recorded_label_studio(fake) -> None:
    from fake_label_studio import recorded

    assert fake.version == "1.23.2"
    client = fake.client()
    pid = client.create_project("Recorded", DEFAULT_CONFIGS["prompt"])["id"]
    shape = set(recorded("project_create")["body"])
    assert set(client.get_project(pid)) == shape
    [task_id] = client.import_tasks(pid, [{"data": {"prompt": "q", "capture_id": new_id()}}])
    assert set(client.get_task(task_id)) == set(recorded("task_get")["body"])
    assert client.get_task(999) is None and client.list_tasks(999, 1) == []


# -- one write at a time --------------------------------------------------------------------------------------


def test_a_write_that_may_still_run_in_label_studio_holds_the_next_one_back(fake, outbox, monkeypatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr("langchain_label_studio.delivery.time.sleep", waits.append)
    delivery = Delivery(fake.client(timeout=30.0), outbox, Metrics(), batch_size=50)
    outbox.put_many([prompt(n=0)])
    drain(delivery)
    assert waits == []  # a write that ended clears the way
    # A process died during its import (its start is recorded, its end is not).
    outbox.set_meta(write_started=repr(time.time() - 10))
    outbox.put_many([prompt(n=1)])
    drain(delivery)
    assert len(waits) == 1 and 19 < waits[0] <= 20  # until the dead write's timeout has passed
    assert len(fake.project_tasks(only_project(fake, "Jokes"))) == 2
    # A request that timed out after it was sent fences the next write the same way.
    fake.fail("POST", r"/api/projects/\d+/import", error=httpx.ReadTimeout, applied=False)
    outbox.put_many([prompt(n=2)])
    drain(delivery)
    assert len(waits) == 2 and 29 < waits[1] <= 30
    assert len(fake.project_tasks(only_project(fake, "Jokes"))) == 3
    assert outbox.meta()["write_started"] == ""


def test_every_request_that_changes_label_studio_is_made_holding_the_write_lock(fake, outbox) -> None:
    held: list[str] = []
    lock = outbox.lock

    @contextlib.contextmanager
    def tracked(name: str) -> Iterator[None]:
        with lock(name):
            held.append(name)
            try:
                yield
            finally:
                held.remove(name)

    writes: list[tuple[str, str, bool]] = []
    serve = fake.handle

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method != "GET":
            writes.append((request.method, request.url.path, "import" in held))
        return serve(request)

    outbox.lock = tracked  # type: ignore[method-assign]
    fake.handle = handle  # type: ignore[method-assign]
    delivery = Delivery(fake.client(), outbox, Metrics(), batch_size=50)
    now = time.time()
    outbox.put_many([prompt(request_id="req-1"), turn("s1", "Hi", "Hello", now)])
    drain(delivery)
    outbox.put_many([turn("s1", "Weather?", "Sunny", now + 1), feedback("Jokes", "req-1", 0.0)])
    drain(delivery)

    made = {(method, re.sub(r"\d+", "N", path)) for method, path, _ in writes}
    assert made == {
        ("POST", "/api/projects/"),  # both projects created
        ("POST", "/api/projects/N/import"),
        ("POST", "/api/dm/views/"),  # the review tab of each project
        ("PATCH", "/api/tasks/N"),  # the session's second turn, and the feedback
        ("PATCH", "/api/predictions/N"),
    }
    assert [w for w in writes if not w[2]] == []
    assert len(fake.views) == 2 and outbox.stats().pending == 0


def test_feedback_without_the_session_mapping_finds_its_own_users_task(fake, tmp_path) -> None:
    """Redaction can make two users' ids read alike in their tasks (both ``<EMAIL>``); feedback
    delivered from an outbox that never saw the session still lands on its own user's task."""
    now = time.time()
    mallory = turn("S", "Hi", "Hello", now, user="<EMAIL>")
    victim = turn("S", "Hi", "Hello", now + 1, user="victim@example.com")
    for record in (mallory, victim):
        record.data["user_id"] = "<EMAIL>"  # as the writer's redaction leaves them
    first = SQLiteOutbox(tmp_path / "first" / "outbox.db")
    first.put_many([mallory])
    drain(Delivery(fake.client(), first, Metrics(), batch_size=50))
    first.put_many([victim])  # the newer task
    drain(Delivery(fake.client(), first, Metrics(), batch_size=50))
    first.close()
    tasks = fake.project_tasks(only_project(fake, "Chats"))
    assert len(tasks) == 2 and {t["data"]["user_id"] for t in tasks} == {"<EMAIL>"}

    other = SQLiteOutbox(tmp_path / "other" / "outbox.db")  # another replica, or a new state directory
    project = {"title": "Chats", "id": None, "mode": "chat", "label_config": None}
    entry = {"score": 0.0, "comment": "from mallory", "at": "2026-12-01T00:00:00+00:00"}
    other.put_many(
        [
            CaptureRecord(
                project=project,
                prompt="",
                data={"feedback": entry},
                kind="feedback",
                target={"request_id": "r", "session": session_ref("<EMAIL>", "S")},
            )
        ]
    )
    drain(Delivery(fake.client(), other, Metrics(), batch_size=50))
    other.close()
    by_capture = {t["data"]["capture_id"]: t["data"] for t in fake.project_tasks(only_project(fake, "Chats"))}
    assert by_capture[mallory.capture_id]["feedback_count"] == 1
    assert "feedback" not in by_capture[victim.capture_id]


def test_a_session_stored_with_its_ids_by_an_older_process_reaches_the_task_as_a_digest(fake, outbox, delivery) -> None:
    record = turn("s1", "Hi", "Hello", time.time(), user="alice@example.com")
    record.session = "alice@example.com\x1fs1"  # as a process of the previous release still writes it
    outbox.put_many([record])
    drain(delivery)
    [task] = fake.project_tasks(only_project(fake, "Chats"))
    assert task["data"]["session_ref"] == session_ref("alice@example.com", "s1")


def test_a_failure_of_this_process_inside_a_write_does_not_hold_the_next_one_back(fake, outbox, delivery, monkeypatch):
    outbox.put_many([prompt(request_id="req-1")])
    delivery.step()

    def broken(*_: object) -> None:
        raise RuntimeError("a bug, not Label Studio")

    monkeypatch.setattr("langchain_label_studio.delivery.add_feedback", broken)
    outbox.put_many([feedback("Jokes", "req-1")])
    with pytest.raises(RuntimeError):
        delivery.step()
    assert outbox.meta()["write_started"] == ""  # no request left running: the next write need not wait


@pytest.mark.parametrize("payload", ["not json", "[]", '{"prompt": "no project"}', '{"project": "x", "prompt": ""}'])
def test_a_damaged_row_is_set_aside_alone_and_can_be_dropped(
    payload: str, fake: FakeLabelStudio, outbox: SQLiteOutbox, delivery: Delivery
) -> None:
    from langchain_label_studio.outbox.base import UNREADABLE

    outbox.put_many([prompt(n=1)])
    outbox._db().execute(
        "INSERT INTO records (capture_id, project_key, session, payload, created_at) "
        "VALUES ('x', 'title:Jokes', NULL, ?, 0)",
        (payload,),
    )
    outbox.put_many([prompt(n=2)])
    while delivery.step():
        pass
    assert sorted(t["data"]["prompt"] for t in fake.tasks.values()) == ["question 1", "question 2"]
    assert outbox.stats().pending == 0
    [(seq, record, reason, _)] = outbox.dead_letters()  # listed, though it cannot be read
    assert reason == UNREADABLE and record.data == {"quarantined": UNREADABLE}
    assert outbox.requeue_dead_letters() == 1  # a retry does not stop at it...
    delivery.step()
    [(seq, _, reason, _)] = outbox.dead_letters()  # ...and it is set aside again
    assert reason == UNREADABLE and len(fake.tasks) == 2
    assert outbox.drop_dead_letters([seq]) == 1 and outbox.dead_letters() == []


def test_a_record_from_a_newer_version_with_a_field_unknown_here_is_delivered(
    fake: FakeLabelStudio, outbox: SQLiteOutbox, delivery: Delivery
) -> None:
    newer = prompt(n=1).to_json()[:-1] + ',"field_of_a_newer_version":3}'
    outbox._db().execute(
        "INSERT INTO records (capture_id, project_key, session, payload, created_at) "
        "VALUES ('y', 'title:Jokes', NULL, ?, 0)",
        (newer,),
    )
    delivery.step()
    assert [t["data"]["prompt"] for t in fake.tasks.values()] == ["question 1"]
