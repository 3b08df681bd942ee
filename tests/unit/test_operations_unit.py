"""Retrying dead letters (``dead-letters retry``) against the fake Label Studio: the configured
server's SQLite outbox in a temporary directory, the real pipeline, no network."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_label_studio import URL, FakeLabelStudio

from langchain_label_studio import operations
from langchain_label_studio.label_config import DEFAULT_CONFIGS
from langchain_label_studio.outbox import Outbox, open_outbox
from langchain_label_studio.outbox.base import placeholder
from langchain_label_studio.record import CaptureRecord
from langchain_label_studio.settings import Settings

#: A prompt config that also wants ``data.context``: Label Studio refuses a task without it.
NEEDS_CONTEXT = DEFAULT_CONFIGS["prompt"].replace("<View>", '<View><Text name="context" value="$context"/>', 1)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(url=URL, api_key="unused: the fake's client is given", state_dir=tmp_path, deliver=False)


@pytest.fixture
def outbox(settings: Settings):
    box = open_outbox(settings)
    yield box
    box.close()


def dead_letters(outbox: Outbox, n: int, title: str = "Jokes", **data: object) -> list[CaptureRecord]:
    """``n`` captures put in the outbox and dead-lettered (as a refusal by Label Studio would)."""
    project = {"title": title, "id": None, "mode": "prompt", "label_config": None}
    records = [
        CaptureRecord(project=dict(project), prompt=f"q{i}", response=f"a{i}", data=dict(data)) for i in range(n)
    ]
    outbox.put_many(records)
    for claimed in outbox.claim(100, 60):
        outbox.dead_letter(claimed.seq, "refused (400)")
    assert len(outbox.dead_letters()) == n and outbox.stats().pending == 0
    return records


def test_retry_puts_them_back_and_delivers_them(settings: Settings, outbox: Outbox) -> None:
    fake = FakeLabelStudio()
    records = dead_letters(outbox, 3)
    heard: list[int] = []
    retried = operations.retry_dead_letters(
        settings, outbox, None, timeout=30, client=fake.client(), on_requeued=heard.append
    )
    assert retried == operations.Retried(requeued=3, delivered=3) and heard == [3]
    [pid] = fake.projects
    assert sorted(t["data"]["capture_id"] for t in fake.project_tasks(pid)) == sorted(r.capture_id for r in records)
    assert outbox.dead_letters() == [] and outbox.stats().pending == 0


def test_retry_of_some_without_delivery(settings: Settings, outbox: Outbox) -> None:
    fake = FakeLabelStudio()
    dead_letters(outbox, 3)
    first = outbox.dead_letters()[0][0]
    retried = operations.retry_dead_letters(settings, outbox, [first], deliver=False, client=fake.client())
    assert retried == operations.Retried(requeued=1, delivered=None)
    assert len(outbox.dead_letters()) == 2 and outbox.stats().pending == 1 and fake.calls == []
    nothing = operations.retry_dead_letters(settings, outbox, [999], client=fake.client())
    assert nothing == operations.Retried(requeued=0, delivered=None) and fake.calls == []


def test_refused_again_is_an_error_with_the_counts(settings: Settings, outbox: Outbox) -> None:
    fake = FakeLabelStudio()
    fake.add_project("Custom", NEEDS_CONTEXT)
    dead_letters(outbox, 2, title="Custom")  # no data.context: refused again
    heard: list[int] = []
    with pytest.raises(ValueError, match="not all delivered: 0 pending, 2 dead-lettered again; last error: .*400"):
        operations.retry_dead_letters(
            settings, outbox, None, timeout=30, client=fake.client(), on_requeued=heard.append
        )
    assert heard == [2] and len(outbox.dead_letters()) == 2


def test_deliver_outbox_gives_up_after_the_timeout(settings: Settings, outbox: Outbox) -> None:
    fake = FakeLabelStudio()
    fake.fail("POST", r"/api/projects/", status=503, times=1000)  # Label Studio cannot create the project
    dead_letters(outbox, 1)
    outbox.requeue_dead_letters(None)
    with pytest.raises(ValueError, match="not all delivered: 1 pending, 0 dead-lettered again"):
        operations.deliver_outbox(settings, 0.2, client=fake.client())
    assert outbox.stats().pending == 1
    assert settings.deliver is False  # the caller's settings are left as they were


def quarantined_and_refused(outbox: Outbox) -> None:
    """One dead letter that kept its content (refused by Label Studio), one quarantined (none)."""
    dead_letters(outbox, 1)
    broken = CaptureRecord(project={"title": "Jokes", "id": None, "mode": "prompt", "label_config": None}, prompt="x")
    outbox.quarantine(placeholder(broken, "before_capture failed: ValueError"), "before_capture failed: ValueError")


def test_a_quarantined_dead_letter_is_never_requeued(outbox: Outbox) -> None:
    quarantined_and_refused(outbox)
    assert outbox.requeue_dead_letters() == 1
    [(seq, kept, reason, _)] = outbox.dead_letters()
    assert seq < 0 and kept.prompt == "" and reason.startswith("before_capture failed")
    assert outbox.requeue_dead_letters([seq]) == 0 and outbox.stats().pending == 1
    assert outbox.drop_dead_letters([seq]) == 1


def test_a_quarantined_dead_letter_is_never_requeued_from_postgres(pg_url: str) -> None:
    from langchain_label_studio.outbox.postgres import PostgresOutbox

    outbox = PostgresOutbox(pg_url, URL)
    try:
        test_a_quarantined_dead_letter_is_never_requeued(outbox)
    finally:
        outbox.close()
