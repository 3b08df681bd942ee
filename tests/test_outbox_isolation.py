"""A record that cannot be redacted, encoded or stored never holds back another (no server needed)."""

from __future__ import annotations

import json

import pytest

from langchain_label_studio.delivery import MAX_FEEDBACK_ENTRIES, add_feedback
from langchain_label_studio.outbox.base import within_cap
from langchain_label_studio.outbox.sqlite import SQLiteOutbox
from langchain_label_studio.pipeline import Pipeline, get_pipeline
from langchain_label_studio.project import Project
from langchain_label_studio.record import CaptureRecord
from langchain_label_studio.settings import Settings

UNREACHABLE = "http://127.0.0.1:9"
PROJECT = Project("isolation").to_dict()


def deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"k": value}
    return value


def capture(prompt, **fields) -> CaptureRecord:
    return CaptureRecord(project=dict(PROJECT), prompt=prompt, response="answer", **fields)


def stored(outbox: SQLiteOutbox) -> list[tuple[str, str]]:
    rows = outbox._db().execute("SELECT capture_id, payload FROM records ORDER BY seq").fetchall()
    return [(capture_id, payload) for capture_id, payload in rows]


@pytest.fixture
def writer(tmp_path):
    """A pipeline that only captures into its outbox, with a hook that misbehaves on request."""

    def hook(record):
        marker = record.data.get("hook")
        if marker == "raise":
            raise ValueError("secret content alice@example.com")
        if marker == "junk":
            return {"not": "a record"}
        if marker == "nest":
            record.data["nested"] = deep(5000)
        if marker == "surrogate":
            record.data["note"] = "made by the hook \ud800"
        return record

    pipeline = Pipeline(Settings(url=UNREACHABLE, state_dir=tmp_path, deliver=False, before_capture=hook))
    yield pipeline
    pipeline.close(timeout=1)


def test_bad_records_are_quarantined_and_the_rest_stored(writer, caplog):
    good = [capture(f"fine {i}") for i in range(3)]
    bad = {marker: capture("x", data={"hook": marker}) for marker in ("raise", "junk", "nest")}
    odd = [
        capture("lone \ud800 surrogate", session="sess\udfff", data={"key\ud800": "v"}),
        capture("x", data={"hook": "surrogate"}),
        capture("nul \x00 char"),
    ]
    for record in [good[0], *bad.values(), good[1], *odd, good[2]]:
        assert writer.submit(record)
    assert writer.flush(10)

    rows = dict(stored(writer.outbox))
    assert set(rows) == {r.capture_id for r in good + odd}
    for payload in rows.values():
        payload.encode("utf-8")  # valid UTF-8, whatever came in
        assert "\x00" not in json.loads(payload)["prompt"]
    assert json.loads(rows[odd[0].capture_id])["prompt"] == "lone \ufffd surrogate"

    dead = {record.capture_id: reason for _, record, reason, _ in writer.outbox.dead_letters()}
    assert set(dead) == {r.capture_id for r in bad.values()}
    assert dead[bad["raise"].capture_id] == "before_capture failed: ValueError"
    assert "TypeError" in dead[bad["junk"].capture_id]
    assert "alice@example.com" not in caplog.text and "secret content" not in caplog.text
    assert writer.health()["dead_lettered"] == 3


def test_quarantined_records_keep_no_content(writer):
    record = capture("private words", data={"hook": "raise"})
    writer.submit(record)
    assert writer.flush(10)
    [(seq, kept, reason, _)] = writer.outbox.dead_letters()
    assert seq < 0 and kept.capture_id == record.capture_id
    assert "private words" not in kept.to_json()


def test_truncation_comes_after_redaction(tmp_path):
    pipeline = Pipeline(Settings(url=UNREACHABLE, state_dir=tmp_path, deliver=False))
    secret = "sk-proj-" + "A1b2C3d4" * 8
    record = capture("x" * 94 + " " + secret, max_chars=100)  # the cut would fall inside the key
    pipeline.submit(record)
    assert pipeline.flush(10)
    [(_, payload)] = stored(pipeline.outbox)
    prompt = json.loads(payload)["prompt"]
    assert "A1b2" not in prompt and prompt.startswith("x" * 94 + " <SECR")
    assert json.loads(payload)["data"]["truncated"] is True
    pipeline.close(timeout=1)


def test_feedback_never_crowds_out_captures():
    cap = 100_000
    feedback = [
        (CaptureRecord(project=dict(PROJECT), prompt="", kind="feedback", data={"feedback": {}}), "f" * 1000)
        for _ in range(200)
    ]
    new_chat = (CaptureRecord(project=dict(PROJECT), prompt="hi", session="s-new"), "c" * 1000)
    kept = within_cap([*feedback, new_chat], cap, lambda *_: False, cap)
    assert new_chat in kept
    assert 0 < sum(r.kind == "feedback" for r, _ in kept) < 200  # feedback stops at half the cap


def test_feedback_list_is_bounded_with_exact_count_and_mean():
    data: dict = {"prompt": "p"}
    for i in range(100):
        data = add_feedback(data, [{"id": f"f{i}", "score": float(i % 2), "comment": None}]) or data
    assert len(data["feedback"]) == MAX_FEEDBACK_ENTRIES
    assert data["feedback"][-1]["id"] == "f99"
    assert (data["feedback_count"], data["feedback_mean"], data["feedback_score"]) == (100, 0.5, 1.0)
    assert add_feedback(data, [{"id": "f99", "score": 0.0}]) is None  # a retried write adds nothing


def test_components_with_other_settings_get_their_own_pipeline(tmp_path):
    base = dict(url=UNREACHABLE, state_dir=tmp_path)
    plain = get_pipeline(Settings(**base))
    assert get_pipeline(Settings(**base)) is plain
    custom = get_pipeline(Settings(**base, redact_patterns={"TICKET": r"T-\d{6}"}))
    hooked = get_pipeline(Settings(**base, before_capture=lambda r: r))
    assert len({id(plain), id(custom), id(hooked)}) == 3
    assert custom.redactor.text("see T-123456") == "see <TICKET>"
    assert plain.redactor.text("see T-123456") == "see T-123456"
    assert custom.outbox.location == plain.outbox.location  # same server, same outbox
