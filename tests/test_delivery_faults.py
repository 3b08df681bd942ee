"""Exactly once through outages, injected faults, poison records and shutdowns."""

from __future__ import annotations

import collections
import logging
import threading
import time

from conftest import SOAK, project_tasks
from faults import FaultProxy

from langchain_label_studio import local
from langchain_label_studio.pipeline import Pipeline
from langchain_label_studio.project import Project
from langchain_label_studio.record import CaptureRecord
from langchain_label_studio.settings import Settings


def records(project: Project, n: int, prefix: str = "p", session: str | None = None) -> list[CaptureRecord]:
    mode_prompt = project.mode == "prompt"
    return [
        CaptureRecord(
            project=project.to_dict(),
            prompt=f"{prefix}{i}" if mode_prompt else [{"role": "user", "content": f"{prefix}{i}"}],
            response=f"answer {prefix}{i}",
            session=session,
        )
        for i in range(n)
    ]


def assert_exactly_once(admin, title: str, expected: list[CaptureRecord]) -> None:
    _, tasks = project_tasks(admin, title)
    counts = collections.Counter(t["data"]["capture_id"] for t in tasks)
    duplicates = {k: v for k, v in counts.items() if v > 1}
    assert not duplicates, f"{len(duplicates)} captures delivered more than once"
    assert set(counts) == {r.capture_id for r in expected}, (len(counts), len(expected))


def test_injected_faults_deliver_everything_once(label_studio, admin, tmp_path, project_name):
    proxy = FaultProxy(label_studio.port).start()
    settings = Settings(url=proxy.url, api_key=label_studio.api_key, state_dir=tmp_path, timeout_s=1.5, batch_size=20)
    pipeline = Pipeline(settings)
    project = Project(project_name)
    sent: list[CaptureRecord] = []
    proxy.delay = 1.0
    for mode in ["error500", "lose_response", "reset", "hang", "slow", "lose_response"] * max(1, round(SOAK)):
        proxy.set_mode(mode)
        before = proxy.faults_by_mode.get(mode, 0)
        batch = records(project, 45, prefix=f"{mode}-{len(sent)}-")
        for r in batch:
            pipeline.submit(r)
        sent += batch
        pipeline.retry_now()
        deadline = time.monotonic() + 30
        while proxy.faults_by_mode.get(mode, 0) < before + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proxy.faults_by_mode.get(mode, 0) >= before + 1, (mode, proxy.faults_by_mode)
    proxy.set_mode("pass")
    pipeline.retry_now()
    assert pipeline.flush(120 * SOAK), pipeline.health()
    pipeline.close()
    proxy.close()

    assert pipeline.metrics.retried > 0
    assert_exactly_once(admin, project_name, sent)


def test_label_studio_restart_under_traffic(label_studio, admin, tmp_path, project_name):
    settings = Settings(url=label_studio.url, api_key=label_studio.api_key, state_dir=tmp_path, batch_size=50)
    pipeline = Pipeline(settings)
    project = Project(project_name)
    sent: list[CaptureRecord] = []

    def traffic(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            batch = records(project, 5, prefix=f"t{len(sent)}-")
            for r in batch:
                pipeline.submit(r)
            sent.extend(batch)
            time.sleep(0.05)

    traffic(1.0 * SOAK)
    stopper = threading.Thread(target=local.down, args=(label_studio.port, label_studio.data_dir))
    stopper.start()
    traffic(4.0 * SOAK)
    while stopper.is_alive():  # traffic all through the stop, however long it takes
        traffic(0.2)
    stopper.join()
    down_from = len(sent)
    traffic(1.0 * SOAK)  # Label Studio down: these wait in the outbox
    assert len(sent) > down_from and pipeline.health()["pending"] > 0
    restarted = local.up(label_studio.port, label_studio.data_dir)
    assert restarted.api_key == label_studio.api_key
    traffic(1.0 * SOAK)
    pipeline.retry_now()
    assert pipeline.flush(120 * SOAK), pipeline.health()
    pipeline.close()
    assert len(sent) > 200
    assert_exactly_once(admin, project_name, sent)


def test_poison_record_is_dead_lettered_and_the_rest_delivered(label_studio, admin, tmp_path, project_name):
    pipeline = Pipeline(Settings(url=label_studio.url, api_key=label_studio.api_key, state_dir=tmp_path))
    project = Project(project_name)
    good = records(project, 10)
    poison = CaptureRecord(project=project.to_dict(), prompt=None, response="x")  # type: ignore[arg-type]
    for r in good[:5] + [poison] + good[5:]:
        pipeline.submit(r)
    assert pipeline.flush(60), pipeline.health()
    pipeline.close()

    assert_exactly_once(admin, project_name, good)
    [(seq, record, reason, _)] = pipeline.outbox.dead_letters()
    assert record.capture_id == poison.capture_id
    assert "400" in reason and "prompt" in reason
    assert pipeline.metrics.dead_lettered == 1


def test_shutdown_keeps_the_undelivered_for_the_next_start(label_studio, admin, tmp_path, project_name):
    proxy = FaultProxy(label_studio.port)  # not started: Label Studio unreachable
    pipeline = Pipeline(Settings(url=proxy.url, api_key=label_studio.api_key, state_dir=tmp_path))
    project = Project(project_name)
    sent = records(project, 30)
    for r in sent:
        pipeline.submit(r)
    started = time.monotonic()
    pipeline.close(timeout=1.0)
    assert time.monotonic() - started < 5
    assert pipeline.outbox.stats().pending == 30

    proxy.start()
    again = Pipeline(Settings(url=proxy.url, api_key=label_studio.api_key, state_dir=tmp_path))
    again.start()
    assert again.flush(60), again.health()
    again.close()
    proxy.close()
    assert_exactly_once(admin, project_name, sent)


def test_full_outbox_keeps_known_sessions_and_counts_new_ones(label_studio, tmp_path, project_name, caplog):
    caplog.set_level(logging.WARNING, logger="langchain_label_studio")
    proxy = FaultProxy(label_studio.port)  # down: nothing leaves the outbox
    settings = Settings(url=proxy.url, api_key=label_studio.api_key, state_dir=tmp_path, max_outbox_bytes=200_000)
    pipeline = Pipeline(settings)
    project = Project(project_name, mode="chat")
    def wait_committed(n: int) -> None:
        """Wait until the writer is done with the first ``n`` captures (stored or dropped)."""
        deadline = time.monotonic() + 60
        while pipeline.health()["committed"] < n:
            assert time.monotonic() < deadline, pipeline.health()
            time.sleep(0.05)

    for r in records(project, 1, prefix="early", session="known"):
        pipeline.submit(r)
    wait_committed(1)
    assert pipeline.flush(0.5) is False
    for i in range(400):
        for r in records(project, 1, prefix="x" * 500 + str(i), session=f"new-{i}"):
            pipeline.submit(r)
    wait_committed(401)  # the outbox is full now
    for r in records(project, 1, prefix="late", session="known"):
        pipeline.submit(r)
    wait_committed(402)
    pipeline.close(timeout=0.5)
    proxy.close()

    stats = pipeline.outbox.stats()
    assert pipeline.metrics.dropped > 0
    assert stats.pending + pipeline.metrics.dropped == 402
    sessions = {row[0] for row in pipeline.outbox._db().execute("SELECT session FROM records WHERE session = 'known'")}
    assert sessions == {"known"}
    assert pipeline.outbox._db().execute("SELECT COUNT(*) FROM records WHERE session = 'known'").fetchone()[0] == 2
    warnings = [r for r in caplog.records if "over its cap" in r.getMessage()]
    assert len(warnings) == 1
