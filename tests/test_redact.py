"""Redaction: the quick test of a record never lets a match through; the gaps the rules used
to leave are closed; times, versions and ids stay; a second pass changes nothing; every rule
runs in linear time (shown by its structure and its Python work, timed in bench/redaction.py)."""

from __future__ import annotations

import copy
import dataclasses
import random
import string
import uuid
from re import _constants, _parser
from typing import Any

import pytest
from test_privacy import BENIGN, SECRETS, corpus

from langchain_label_studio.record import CaptureRecord
from langchain_label_studio.redact import _EMAIL, _JWT, BUILTIN_RULES, PEM_WINDOW, Redactor

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


# --- the gaps a rule used to leave ---------------------------------------------------------

GAPS = {
    # named secrets: a prefix before the name, JSON and quoted keys
    "DB_PASSWORD=hunter2secret": "DB_PASSWORD=<SECRET>",
    "STRIPE_API_KEY: sk_live_51HxYzAbCdEfGhIjKlMnOp": "STRIPE_API_KEY: <SECRET>",
    "X_API_KEY=abcdef123456": "X_API_KEY=<SECRET>",
    "export MY_SERVICE_PASSWORD = correcthorse": "export MY_SERVICE_PASSWORD = <SECRET>",
    "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY": "AWS_SECRET_ACCESS_KEY=<SECRET>",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY": "aws_secret_access_key = <SECRET>",
    '{"password": "hunter2secret"}': '{"password": "<SECRET>"}',
    '{"api_key":"abc123def456"}': '{"api_key":"<SECRET>"}',
    "{'token': 'abcdefgh'}": "{'token': '<SECRET>'}",
    '{"password": "correct horse battery staple"}': '{"password": "<SECRET>"}',
    "X-Api-Key: 0123456789abcdef": "X-Api-Key: <SECRET>",
    # an AWS secret access key named nearby, not only after a key
    "my aws secret key is wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, keep it": "my aws secret key is <SECRET>, keep it",
    # IBANs in lower case or spaced: whole
    "de89 3704 0044 0532 0130 00": "<IBAN>",
    "DE89 3704 0044 0532 0130 00": "<IBAN>",
    "iban: de89370400440532013000.": "iban: <IBAN>.",
    "BE68 5390 0754 7034 please": "<IBAN> please",
    # card numbers with any one separator
    "4111.1111.1111.1111": "<CREDIT_CARD>",
    "4111/1111/1111/1111": "<CREDIT_CARD>",
    "4111_1111_1111_1111": "<CREDIT_CARD>",
    "4111 1111 1111 1111": "<CREDIT_CARD>",
    "4111-1111-1111-1111": "<CREDIT_CARD>",
    "3782.822463.10005": "<CREDIT_CARD>",
    "card 4111 1111 1111 1111 exp 12/29": "card <CREDIT_CARD> exp 12/29",
    # phone numbers
    "+33 (0)1 44 55 66 77": "<PHONE>",
    "0049 30 98765432": "<PHONE>",
    "+1 (555) 123-4567": "<PHONE>",
    "(555) 123-4567": "<PHONE>",
    "555.123.4567": "<PHONE>",
    "call 01 44 55 66 77 now": "call <PHONE> now",
    "+44 20 7946 0958 2 times": "<PHONE> 2 times",
    # e-mail addresses in any script
    "jürgen.müller@beispiel.de": "<EMAIL>",
    "用户@例子.中国": "<EMAIL>",
    "write to 'o'neil@example.io'.": "write to '<EMAIL>'.",
}


@pytest.mark.parametrize("text", GAPS)
def test_gap_is_closed(text):
    redactor = Redactor()
    assert redactor.text(text) == GAPS[text]
    assert sum(redactor.counts.values()) == GAPS[text].count("<")


@pytest.mark.parametrize("kind", ["RSA PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY"])
def test_private_key_blocks_are_redacted_whole(kind):
    body = "MIIEowIBAAKCAQEA7bq98F+/abc=\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17\n\nQUJD" * 20
    block = f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----"
    assert Redactor().text(f"key:\n{block}\nthanks") == "key:\n<SECRET>\nthanks"
    escaped = block.replace("\n", "\\n")  # as in a JSON string (a service account file)
    assert Redactor().text(f'{{"private_key": "{escaped}\\n"}}') == '{"private_key": "<SECRET>\\n"}'


def test_a_private_key_without_its_end_is_redacted_to_a_bounded_window():
    head = "-----BEGIN PRIVATE KEY-----"
    assert Redactor().text(f"{head}\nMIIEvQIBADANBg (rest cut)") == "<SECRET>(rest cut)"
    body = "\n".join(["A" * 63] * (2 * PEM_WINDOW // 64))
    out = Redactor().text(f"{head}\n{body}")
    assert out.startswith("<SECRET>\n") and out.endswith("\n" + "A" * 63)
    assert PEM_WINDOW - 64 < len(body) - len(out) + len("<SECRET>") <= PEM_WINDOW + 64


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-30T23:48:05+00:00",
        "2026-11-30T23:48:01+00:00 and 2026-11-30T23:48:09.123456+00:00",
        "2026-11-30 23:48:05.123456",
        "at 23:48:07Z",
        "23:48:00.000001",
        "2026-11-30",
        "30/11/2026 23:48",
        "550e8400-e29b-41d4-a716-446655440000",
        "00000000-0000-0000-0000-000000000000",
        "12345678-0123-4567-8901-234567890123",
        "Version 1.23.2 and 10.0.19041.1234",
        "4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c",
        "de0123456789abcdef0123456789abcd",
        "192.168.100.200",
        "total_tokens: 123456, max_tokens=409600, token_type: bearer",
        "Pi is about 3.14159265358979.",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY without a name nearby",
    ],
)
def test_times_dates_versions_and_ids_stay(text):
    redactor = Redactor()
    assert redactor.text(text) == text
    assert redactor.counts == {}


def test_keys_are_redacted_and_collapsed_keys_keep_every_value():
    redactor = Redactor()
    value = {"alice@example.com": 1, "bob@example.com": 2, "<EMAIL>#2": 3, "plain": {"eve@example.com": [4]}}
    assert redactor.value(value) == {"<EMAIL>": 1, "<EMAIL>#2": 2, "<EMAIL>#2#2": 3, "plain": {"<EMAIL>": [4]}}
    assert redactor.counts == {"EMAIL": 3}


def test_record_keys_are_redacted_by_the_quick_path_too():
    record = CaptureRecord(
        project={"title": "P", "id": None, "mode": "prompt", "label_config": None},
        prompt="hello",
        response="hi",
        data={"metadata": {"carla.gomez@example.co.uk": "vip", "DB_PASSWORD=hunter2secret": True}},
    )
    Redactor().record(record)
    assert record.data == {"metadata": {"<EMAIL>": "vip", "DB_PASSWORD=<SECRET>": True}}


def test_the_value_of_a_key_naming_a_secret_is_redacted_whole():
    """Tool call arguments, metadata, graph state: ``{"password": "..."}`` holds no ``=`` or ``:``."""
    tool_call = {"name": "login", "args": {"user": "bob", "password": "Hunter2 Secret!"}, "id": "call_1"}
    record = CaptureRecord(
        project={"title": "P", "id": None, "mode": "chat", "label_config": None},
        prompt=[{"role": "assistant", "content": "", "tool_calls": [tool_call]}],
        response="done",
        data={"metadata": {"clientSecret": "abc", "X-Api-Key": "k1", "total_tokens": 12, "token_type": "bearer"}},
    )
    redactor = Redactor()
    redactor.record(record)
    assert record.prompt[0]["tool_calls"][0]["args"] == {"user": "bob", "password": "<SECRET>"}
    assert record.data["metadata"] == {
        "clientSecret": "<SECRET>",
        "X-Api-Key": "<SECRET>",
        "total_tokens": 12,
        "token_type": "bearer",
    }
    assert redactor.counts == {"SECRET": 3}
    assert Redactor(builtin=False).value({"password": "kept"}) == {"password": "kept"}


def test_a_record_of_many_long_strings_is_tested_piece_by_piece_and_misses_nothing():
    """The quick test searches at most about JOIN_CHARS at once: each secret is still found."""
    filler = [f"{i} " + "plain words, nothing to hide " * 2000 for i in range(6)]  # ~60 KB each
    for where in range(len(filler) + 1):
        texts = list(filler)
        texts.insert(where, "mail me at carla.gomez@example.co.uk")
        record = CaptureRecord(
            project={"title": "P", "id": None, "mode": "chat", "label_config": None},
            prompt=[{"role": "user", "content": t} for t in texts],
            response="ok",
        )
        Redactor().record(record)
        assert [m["content"] for m in record.prompt][where] == "mail me at <EMAIL>"


def test_custom_rules_apply_to_keys():
    redactor = Redactor(patterns={"ORDER": r"ORD-\d+"})
    assert redactor.value({"ORD-1": "a", "note": "ORD-2"}) == {"<ORDER>": "a", "note": "<ORDER>"}


@pytest.mark.parametrize("text", [line for _, line in corpus()] + list(GAPS) + BENIGN)
def test_a_second_pass_changes_nothing(text):
    once = Redactor().text(text)
    again = Redactor()
    assert again.text(once) == once
    assert again.counts == {}


# --- linear time ---------------------------------------------------------------------------

#: The worst case of each rule, as found for the benchmark (``bench/redaction.py`` times them).
ADVERSARIAL = {
    "email": lambda n: "a@" + "a." * (n // 2),
    "email, local part": lambda n: "a." * (n // 2) + "@",
    "jwt": lambda n: "eyJ-" * (n // 4),
    "api key": lambda n: "sk " * (n // 3),
    "named secret": lambda n: '"token": "' * (n // 10),
    "named secret, spaces": lambda n: "password:" + " " * n + "x",
    "bearer": lambda n: "bearer " * (n // 7),
    "private key": lambda n: "-----BEGIN RSA PRIVATE KEY-----\n" * (n // 32),
    "aws secret": lambda n: "aws secret " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEa " * (n // 41),
    "iban": lambda n: "DE89 3704 0044 0532 0130 01 " * (n // 28),
    "card": lambda n: "4111 1111 1111 1112 " * (n // 20),
    "phone": lambda n: " +" + "1" * 30 * (n // 32),
    "phone, groups": lambda n: "+1 (0)" * (n // 6),
    "phone, 00": lambda n: "0049 " * (n // 5),
    "timestamps": lambda n: "2026-11-30T23:48:05.123456+00:00 " * (n // 33),
}


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_a_megabyte_of_a_rules_worst_case_completes(name):
    text = ADVERSARIAL[name](1_000_000)
    once = Redactor().text(text)
    assert Redactor().text(once) == once


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_python_work_per_text_is_bounded_by_its_length(name):
    """A rule's function runs at most once per five characters: every candidate is that long."""
    redactor = Redactor()
    calls = 0

    def counted(decide):
        def call(match):
            nonlocal calls
            calls += 1
            return decide(match)

        return call

    redactor._rules = [
        dataclasses.replace(rule, replacement=counted(rule.replacement)) if callable(rule.replacement) else rule
        for rule in redactor._rules
    ]
    text = ADVERSARIAL[name](100_000)
    redactor.text(text)
    assert calls <= len(text) / 5


def backtracking_repeats(pattern: str) -> list[tuple[int, int, list]]:
    """The repetitions of ``pattern`` that may give back what they took: (min, max, body)."""
    found: list[tuple[int, int, list]] = []

    def walk(items: Any) -> None:
        for op, av in items:
            if op in (_constants.MAX_REPEAT, _constants.MIN_REPEAT):
                found.append((av[0], av[1], list(av[2])))
                walk(av[2])
            elif op is _constants.POSSESSIVE_REPEAT:
                walk(av[2])
            elif op is _constants.SUBPATTERN:
                walk(av[3])
            elif op is _constants.ATOMIC_GROUP:
                walk(av)
            elif op in (_constants.ASSERT, _constants.ASSERT_NOT):
                walk(av[1])
            elif op is _constants.BRANCH:
                for alternative in av[1]:
                    walk(alternative)

    walk(_parser.parse(pattern).data)
    return found


@pytest.mark.parametrize("rule", BUILTIN_RULES, ids=lambda rule: f"{rule.name}:{rule.pattern.pattern[:24]}")
def test_no_rule_can_backtrack_over_a_long_stretch(rule):
    """Structure behind the linear time: a repetition that may run long never gives back.

    Unbounded repetitions are possessive, except two loops (the JWT's prefix, the e-mail
    domain's labels) whose every turn is a possessive run then a delimiter: giving back a
    turn costs one step. Other repetitions that may give back are short (at most 40).
    """
    for low, high, body in backtracking_repeats(rule.pattern.pattern):
        if high != _constants.MAXREPEAT:
            assert high <= 40, (low, high, body)
            continue
        ops = [op for op, _ in body]
        assert set(ops) <= {_constants.POSSESSIVE_REPEAT, _constants.LITERAL} and _constants.LITERAL in ops, body
        assert rule.pattern in (_JWT, _EMAIL)


def test_a_conversation_captured_again_is_redacted_and_counted_the_same_each_time():
    """Clean strings are remembered (a session's earlier turns are not scanned again); strings
    with a secret never are, so every capture that holds one is redacted and counted."""
    history = [{"role": "user", "content": f"turn {i}: tell me about the weather in town {i}"} for i in range(50)]
    secret = {"role": "user", "content": "and write to me at jane.doe@example.com please, thank you"}

    def capture(dialogue: list[dict[str, Any]]) -> CaptureRecord:
        project = {"title": "Chats", "id": None}
        return CaptureRecord(project=project, prompt=copy.deepcopy(dialogue), data={"state": copy.deepcopy(dialogue)})

    remembering, fresh = Redactor(), None
    for turn in range(3):
        dialogue = [*history, secret] if turn else history
        once = remembering.record(capture(dialogue))
        fresh = Redactor()
        alone = fresh.record(capture(dialogue))
        assert (once.prompt, once.data) == (alone.prompt, alone.data)  # as by a redactor that remembers nothing
    assert remembering.counts == {"EMAIL": 4}  # two captures with the secret, in prompt and state
    assert fresh.counts == {"EMAIL": 2}
    assert "jane.doe" not in str(once)


@pytest.mark.parametrize("length", [32, 300])
def test_the_memory_the_redactor_remembers_with_is_bounded(length):
    """However short the clean strings (each one costs more than its characters), the memory the
    redactor keeps them in stays within CLEAN_MAX_BYTES, and the newest are the ones kept."""
    import tracemalloc

    from langchain_label_studio.redact import CLEAN_MAX_BYTES

    redactor = Redactor()
    base = "a harmless sentence about nothing in particular, " * 10
    count = 3 * CLEAN_MAX_BYTES // (length + 200)  # three times what fits
    texts = (f"{i:08d} {base}"[:length] for i in range(count))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for text in texts:
            assert redactor.text(text) == text
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held <= CLEAN_MAX_BYTES * 1.1, f"{held / 2**20:.1f} MB held"
    newest = f"{count - 1:08d} {base}"[:length]
    assert newest in redactor._clean and f"{0:08d} {base}"[:length] not in redactor._clean
