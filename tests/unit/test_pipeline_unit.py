"""The pipeline's ``committed`` counter: what the writer is done with, so tests (and operators) can
tell what a SIGKILL could still lose. A SQLite outbox in a temporary directory, delivery off."""

from __future__ import annotations

from pathlib import Path

from langchain_label_studio.pipeline import Pipeline
from langchain_label_studio.record import CaptureRecord
from langchain_label_studio.settings import Settings

PROJECT = {"title": "Jokes", "id": None, "mode": "prompt", "label_config": None}


def records(n: int, prefix: str = "p") -> list[CaptureRecord]:
    return [CaptureRecord(project=dict(PROJECT), prompt=f"{prefix}{i}", response=f"answer {i}") for i in range(n)]


def pipeline(tmp_path: Path, **options: object) -> Pipeline:
    return Pipeline(Settings(url="http://label-studio.test", state_dir=tmp_path, deliver=False, **options))


def test_committed_counts_what_reached_the_outbox(tmp_path: Path) -> None:
    p = pipeline(tmp_path)
    try:
        for r in records(5):
            p.submit(r)
        assert p.flush(30)
        health = p.health()
        assert (health["captured"], health["committed"], health["pending"]) == (5, 5, 5)
    finally:
        p.close(timeout=1)


def test_committed_counts_captures_settled_at_the_commit(tmp_path: Path) -> None:
    def hook(record: CaptureRecord) -> CaptureRecord | None:
        if record.prompt == "drop0":
            return None  # dropped by the hook
        if record.prompt == "fail0":
            raise ValueError("cannot")  # quarantined as a dead letter
        return record

    p = pipeline(tmp_path, before_capture=hook)
    try:
        for r in records(3) + records(1, "drop") + records(1, "fail"):
            p.submit(r)
        assert p.flush(30)
        health = p.health()
        assert (health["captured"], health["committed"], health["pending"]) == (5, 5, 3)
        assert health["dead_lettered"] == 1 and health["skipped"] == {"before_capture": 1, "before_capture_error": 1}
    finally:
        p.close(timeout=1)


def test_a_nul_or_a_lone_surrogate_inside_a_secret_does_not_hide_it_from_redaction(tmp_path: Path) -> None:
    key = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz9876543210"
    hidden = key[:8] + "\x00" + key[8:]
    p = pipeline(tmp_path)
    try:
        p.submit(
            CaptureRecord(
                project=dict(PROJECT),
                prompt=f"my key {hidden} and mail bob\x00@example.org \ud800",
                response=f"noted: {hidden}",
                data={"note": hidden, f"key {hidden}": "v"},
            )
        )
        assert p.flush(30)
        [claimed] = p.outbox.claim(10, 60)
    finally:
        p.close(timeout=1)
    record = claimed.record
    assert record.prompt == "my key <SECRET> and mail <EMAIL> \ufffd"
    assert record.response == "noted: <SECRET>"
    assert record.data == {"note": "<SECRET>", "key <SECRET>": "v"}
    stored = b"".join(f.read_bytes() for f in tmp_path.rglob("outbox.db*"))
    assert key[8:].encode() not in stored and b"example.org" not in stored


def test_cleaning_before_redaction_cuts_nothing_a_secret_could_straddle(tmp_path: Path) -> None:
    value: object = {"k": "x" * 936 + " alice.wonderland@example.com tail"}
    for _ in range(45):  # deeper than the request path keeps: only a before_capture hook nests so deep
        value = {"a": value}
    p = pipeline(tmp_path)
    try:
        p.submit(CaptureRecord(project=dict(PROJECT), prompt="p", data={"d": value, "z": "a NUL\x00 elsewhere"}))
        assert p.flush(30)
        [claimed] = p.outbox.claim(10, 60)
    finally:
        p.close(timeout=1)
    assert "wonderland" not in claimed.record.to_json()


def test_a_damaged_outbox_file_at_start_keeps_captures_in_memory_until_it_is_replaced(tmp_path: Path) -> None:
    from langchain_label_studio.outbox import sqlite_outbox_path

    path = sqlite_outbox_path(tmp_path, "http://label-studio.test")
    path.write_bytes(b"not a database" * 1000)
    path.chmod(0o600)
    p = pipeline(tmp_path)  # the app starts all the same
    try:
        for r in records(3):
            assert p.submit(r)
        assert not p.flush(1.5)
        health = p.health()
        assert "file is not a database" in health["last_error"] and str(path) in health["last_error"]
        assert (health["captured"], health["committed"], health["pending"]) == (3, 0, 3)
        path.unlink()  # the operator moves the damaged file away: the next attempt opens a new one
        assert p.flush(30)
        assert p.health()["committed"] == 3 and p.outbox.stats().pending == 3
    finally:
        p.close(timeout=1)


def test_a_record_the_encoder_fails_on_is_set_aside_alone(tmp_path: Path) -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    def hook(record: CaptureRecord) -> CaptureRecord:
        if record.prompt == "p1":
            record.model_version = Unprintable()  # type: ignore[assignment]
        return record

    p = pipeline(tmp_path, before_capture=hook)
    try:
        for r in records(3):
            p.submit(r)
        assert p.flush(30)
        health = p.health()
        assert (health["committed"], health["pending"], health["dead_letters"]) == (3, 2, 1)
    finally:
        p.close(timeout=1)


def test_what_counts_as_a_records_fault_and_what_as_the_storages() -> None:
    import sqlite3

    import psycopg
    from psycopg import errors

    from langchain_label_studio.outbox.base import OutboxUnavailable, is_record_fault

    for exc in (TypeError(), ValueError(), RuntimeError(), RecursionError(), sqlite3.IntegrityError()):
        assert is_record_fault(exc), exc
    for exc in (errors.NumericValueOutOfRange(), errors.UniqueViolation(), psycopg.DataError()):
        assert is_record_fault(exc), exc
    storage = (OSError(), OutboxUnavailable("down"), sqlite3.OperationalError(), sqlite3.DatabaseError())
    for exc in (*storage, errors.ReadOnlySqlTransaction(), errors.InsufficientPrivilege(), psycopg.OperationalError()):
        assert not is_record_fault(exc), exc
