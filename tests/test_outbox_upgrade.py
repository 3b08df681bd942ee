"""Outboxes left by 0.1.0 (the SQLite file, the PostgreSQL schema) are upgraded on start and
what they hold is delivered to the real Label Studio: captures, a chat session as one task, and
end-user feedback queued beside the captures as 0.1.0 queued it."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from conftest import prefilled, project_tasks
from legacy_outbox import fill_postgres, fill_sqlite, legacy_records, make_postgres, make_sqlite

from langchain_label_studio.client import LabelStudioClient
from langchain_label_studio.pipeline import Pipeline
from langchain_label_studio.settings import Settings


def check_delivered(admin: LabelStudioClient, title: str, chat_title: str, records: list) -> None:
    _, tasks = project_tasks(admin, title)
    by_capture = {t["data"]["capture_id"]: t for t in tasks}
    assert set(by_capture) == {r.capture_id for r in records[:2]}
    owls = by_capture[records[0].capture_id]
    assert prefilled(owls) == "A joke about owls."
    assert [e["comment"] for e in owls["data"]["feedback"]] == ["Spot on"]  # the 0.1.0 feedback landed
    assert owls["data"]["feedback_count"] == 1
    _, [chat] = project_tasks(admin, chat_title)  # two turns of one session: one task, the latest turn
    assert chat["data"]["capture_id"] == records[3].capture_id
    assert prefilled(chat) == "Sunny."


def titles() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"upgrade-{tag}", f"upgrade-chat-{tag}"


def test_a_0_1_0_sqlite_outbox_is_upgraded_and_delivered(ls_env: Path, admin: LabelStudioClient) -> None:
    settings = Settings(state_dir=ls_env)
    title, chat_title = titles()
    records, dead = legacy_records(title, chat_title)
    path = ls_env / f"outbox-{hashlib.sha256(settings.url.encode()).hexdigest()[:10]}.db"
    make_sqlite(path)
    fill_sqlite(path, records, dead, url=settings.url)

    pipeline = Pipeline(settings)
    try:
        assert str(pipeline.outbox.location) == str(path)  # the 0.1.0 file, not a new one
        assert pipeline.flush(60)
        assert pipeline.outbox.stats().dead_letters == 1
    finally:
        pipeline.close(1)
    check_delivered(admin, title, chat_title, records)


def test_a_0_1_0_postgres_outbox_is_upgraded_and_delivered(
    ls_env: Path, admin: LabelStudioClient, pg_url: str
) -> None:
    settings = Settings(state_dir=ls_env, outbox=pg_url)
    title, chat_title = titles()
    records, dead = legacy_records(title, chat_title)
    make_postgres(pg_url)
    fill_postgres(pg_url, settings.url, records, dead)

    pipeline = Pipeline(settings)
    try:
        assert pipeline.flush(60)
        assert pipeline.outbox.stats().dead_letters == 1
    finally:
        pipeline.close(1)
        pipeline.outbox.close()
    check_delivered(admin, title, chat_title, records)
