"""Capture records as stored in the outbox: JSON both ways, whatever the values."""

from __future__ import annotations

import json

from langchain_label_studio.record import CaptureRecord, dumps, new_id


def test_records_round_trip_through_their_stored_form():
    record = CaptureRecord(
        project={"title": "P", "id": None, "mode": "chat", "label_config": None},
        prompt=[{"role": "user", "content": "héllo ✓ 🐱"}],
        response="fine",
        data={"big": 2**70, "float": 0.1, "nested": {"k": [1, None, True]}},
        session="s1",
    )
    text = record.to_json()
    assert CaptureRecord.from_json(text) == record
    assert CaptureRecord.from_json(text.encode()) == record
    assert "héllo ✓ 🐱" in text  # stored as UTF-8 text, not escaped


def test_values_that_are_not_json_become_text():
    assert dumps({"when": object.__new__(type("Stamp", (), {"__str__": lambda self: "noon"}))}) == '{"when":"noon"}'
    assert dumps({1: "one"}) == '{"1":"one"}'  # keys become strings, as the json module does


def test_ids_are_32_random_hex_digits():
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_values_json_cannot_hold_become_null_or_valid_text():
    text = dumps({"nan": float("nan"), "inf": [float("inf")], "big": 2**70, "bad": "\ud800", 1: None})
    assert CaptureRecord.from_json(
        CaptureRecord({"title": "P"}, prompt="p", data=json.loads(text)).to_json()
    ).data == {"nan": None, "inf": [None], "big": 2**70, "bad": "\ufffd", "1": None}
