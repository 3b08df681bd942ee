"""Property tests of the path capture -> redaction -> outbox -> task, on arbitrary values (no server)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from langchain_label_studio.label_config import DEFAULT_CONFIGS, parse_layout
from langchain_label_studio.outbox.sqlite import SQLiteOutbox
from langchain_label_studio.pipeline import Pipeline
from langchain_label_studio.project import Project
from langchain_label_studio.record import CaptureRecord, dumps
from langchain_label_studio.sanitize import Sanitizer
from langchain_label_studio.settings import Settings
from langchain_label_studio.task import build_task

#: Any text: lone surrogates, NULs, control characters, astral planes.
text = st.text(st.characters(codec=None, categories=None), max_size=200)
keys = st.one_of(text, st.integers(), st.booleans(), st.none(), st.floats(allow_nan=True))
leaves = st.one_of(text, st.integers(min_value=-(2**80), max_value=2**80), st.floats(), st.booleans(), st.none())
values = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=30,
)


def deep(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


def writer(tmp_path_factory) -> Pipeline:
    state = tmp_path_factory.mktemp("state")
    return Pipeline(Settings(url="http://127.0.0.1:9", state_dir=state, deliver=False))


def stored(outbox: SQLiteOutbox) -> list[CaptureRecord]:
    rows = outbox._db().execute("SELECT payload FROM records ORDER BY seq").fetchall()
    return [CaptureRecord.from_json(payload) for (payload,) in rows]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=values, data=st.dictionaries(text, values, max_size=5), response=st.one_of(st.none(), text))
def test_any_capture_is_stored_as_valid_text_and_becomes_a_task(tmp_path_factory, prompt, data, response):
    clean = Sanitizer(max_chars=50)  # as the request path makes it
    mode = "chat" if isinstance(prompt, list) else "prompt"
    record = CaptureRecord(
        project=Project("props", mode=mode).to_dict(),
        prompt=clean.value(prompt),
        response=clean.text(response) if response is not None else None,
        data=clean.value(data),
        session="s\ud800" if mode == "chat" else None,
        max_chars=50,
    )
    pipeline = writer(tmp_path_factory)
    try:
        assert pipeline.submit(record)
        assert pipeline.flush(10)
        [kept] = stored(pipeline.outbox)
        assert kept.capture_id == record.capture_id
        payload = kept.to_json()
        payload.encode("utf-8")  # valid UTF-8, whatever came in
        assert "\\u0000" not in payload and "\x00" not in payload
        assert pipeline.redactor.value(json.loads(payload)) == json.loads(payload)  # redaction is idempotent
        task = build_task(kept, parse_layout(DEFAULT_CONFIGS[mode]))
        json.loads(dumps(task)).keys()  # what the client sends is valid JSON
    finally:
        pipeline.close(timeout=1)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(levels=st.integers(min_value=1, max_value=5000), size=st.integers(min_value=0, max_value=300_000))
def test_deep_and_huge_values_never_raise(tmp_path_factory, levels, size):
    clean = Sanitizer()
    record = CaptureRecord(
        project=Project("props").to_dict(),
        prompt=clean.text("x" * size),
        data=clean.value({"deep": deep(levels), "k" * min(size, 10_000): 1}),
    )
    pipeline = writer(tmp_path_factory)
    try:
        assert pipeline.submit(record)
        assert pipeline.flush(10)
        [kept] = stored(pipeline.outbox)
        assert len(kept.prompt) <= 100_000 + 40
        assert kept.data.get("truncated") is (True if size > 100_000 else None)
    finally:
        pipeline.close(timeout=1)


@settings(max_examples=200, deadline=None)
@given(prompt=values, data=st.dictionaries(text, values, max_size=5), response=st.one_of(st.none(), text))
def test_finish_stores_what_the_full_walk_would(prompt, data, response):
    """``finish`` skips the walk of a record the encoder shows it would not change: never wrongly."""
    import copy

    from langchain_label_studio.sanitize import _Finisher, finish

    clean = Sanitizer(max_chars=10_000)
    record = CaptureRecord(project={"title": "P", "id": None}, prompt=clean.value(prompt), data=clean.value(data))
    record.response = response
    walked = copy.deepcopy(record)
    full = _Finisher(10_000)
    walked.prompt, walked.data = full.value(walked.prompt), full.value(walked.data)
    walked.response = full.text(walked.response) if walked.response is not None else None
    if full.truncated:
        walked.data["truncated"] = True
    finish(record, 10_000)
    assert dumps([record.prompt, record.response, record.data]) == dumps([walked.prompt, walked.response, walked.data])
