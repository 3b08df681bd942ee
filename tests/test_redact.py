"""Redaction of whole records: the quick test of a record never lets a match through."""

from __future__ import annotations

import copy
import random
import string
import uuid

from test_privacy import BENIGN, SECRETS

from langchain_label_studio.record import CaptureRecord
from langchain_label_studio.redact import Redactor

PIECES = [
    *SECRETS,
    *BENIGN,
    "ask",
    "task",
    "right",
    "Bearer",
    "token",
    "=",
    ":",
    "@",
    "-",
    " ",
    "\n",
    "(",
    ")",
    "+",
    "eyJ",
    "sk",
    "AKIA",
]


def random_text(rng: random.Random) -> str:
    if rng.random() < 0.3:  # plain words: mostly nothing to redact
        return " ".join(rng.choice(["Tell", "me", "about", "cats", "ask", "right", "task", "Sky"]) for _ in range(4))
    parts = []
    for _ in range(rng.randint(0, 6)):
        kind = rng.random()
        if kind < 0.4:
            parts.append(rng.choice(PIECES))
        elif kind < 0.6:
            parts.append("".join(rng.choice(string.digits + " -.") for _ in range(rng.randint(1, 20))))
        elif kind < 0.7:
            parts.append(uuid.UUID(int=rng.getrandbits(128)).hex)
        else:
            parts.append("".join(rng.choice(string.ascii_letters + string.digits) for _ in range(rng.randint(1, 24))))
    return rng.choice(["", " ", "\n"]).join(parts)


def random_record(rng: random.Random) -> CaptureRecord:
    dialogue = [
        {"role": rng.choice(["user", "assistant"]), "content": random_text(rng)} for _ in range(rng.randint(1, 3))
    ]
    return CaptureRecord(
        project={"title": "P", "id": None, "mode": "chat", "label_config": None},
        prompt=dialogue if rng.random() < 0.5 else random_text(rng),
        response=random_text(rng) if rng.random() < 0.8 else None,
        data={
            "user_id": random_text(rng),
            "request_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "route": "/ask",
            "metadata": {"note": random_text(rng), "tags": [random_text(rng)]},
        },
    )


def test_whole_record_test_redacts_exactly_what_rule_by_rule_redaction_does():
    rng = random.Random(20261125)
    quick, thorough = Redactor(), Redactor()
    thorough._joinable = False  # every rule on every string, always
    changed = 0
    for _ in range(20_000):
        record = random_record(rng)
        expected = thorough.record(copy.deepcopy(record))
        got = quick.record(copy.deepcopy(record))
        assert (got.prompt, got.response, got.data) == (expected.prompt, expected.response, expected.data)
        changed += (expected.prompt, expected.response, expected.data) != (record.prompt, record.response, record.data)
    assert quick.counts == thorough.counts
    assert 1_000 < changed < 19_000  # both kinds of record were tried


def test_records_without_personal_data_pass_unchanged():
    record = CaptureRecord(
        project={"title": "P", "id": None, "mode": "prompt", "label_config": None},
        prompt=[{"role": "user", "content": "Tell me about cats"}],
        response="Cats are small, carnivorous mammals.",
        data={"user_id": "bench", "request_id": uuid.uuid4().hex, "route": "/ask", "run_name": "RunnableSequence"},
    )
    before = copy.deepcopy(record)
    redactor = Redactor()
    assert redactor.record(record) == before
    assert redactor.counts == {}


def test_custom_rules_apply_to_every_string():
    redactor = Redactor(patterns={"ORDER": r"^ORD-\d+$"})  # anchored: checked string by string
    record = CaptureRecord(
        project={"title": "P", "id": None, "mode": "prompt", "label_config": None},
        prompt="about my order",
        response="ok",
        data={"order": "ORD-1234", "note": "no order here"},
    )
    redactor.record(record)
    assert record.data == {"order": "<ORDER>", "note": "no order here"}
