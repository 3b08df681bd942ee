"""Properties of redaction over generated text and values: it never raises, a second pass
changes nothing, text without any trigger is left alone, and a known secret is always removed."""

from __future__ import annotations

import os
import re

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from langchain_label_studio.redact import Redactor

#: ``REDACT_EXAMPLES=20000 pytest tests/test_redact_properties.py`` searches harder.
EXAMPLES = int(os.environ.get("REDACT_EXAMPLES", "300"))
QUICK = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Pieces that make rules start, half-match or match: separators, prefixes, digit groups.
PIECES = [
    "@",
    ".",
    "-",
    "_",
    " ",
    "\n",
    "+",
    "(",
    ")",
    ":",
    "=",
    '"',
    "'",
    "/",
    "0",
    "00",
    "1",
    "12",
    "4111",
    "0049 ",
    "+33 ",
    "(0)",
    "eyJ",
    "sk-",
    "AKIA",
    "Bearer ",
    "password",
    "DB_PASSWORD=",
    '"token": "',
    "-----BEGIN PRIVATE KEY-----",
    "-----END PRIVATE KEY-----",
    "DE89",
    "de89 ",
    "aws secret ",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "4111 1111 1111 1111",
    "alice@example.com",
    "ü",
    "例子",
    "<EMAIL>",
    "<SECRET>",
    "\x00",
    "\ud800",
]
ODD_CHARS = st.sampled_from(["\ud800", "\udfff", "\x00", "\u00a0", "\u202f", "\ufeff", "٣", "４"])
CHARS = st.one_of(st.characters(), ODD_CHARS)
TEXT = st.one_of(
    st.text(CHARS, max_size=60),
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(CHARS, max_size=6)), max_size=30).map("".join),
)
KEYS = st.one_of(TEXT, st.integers(), st.none(), st.sampled_from(["a@b.co", "x@y.org", "<EMAIL>", "<EMAIL>#2"]))
VALUES = st.recursive(
    st.one_of(TEXT, st.integers(), st.floats(allow_nan=False), st.booleans(), st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=25,
)

SECRETS = [
    "alice.smith@example.com",
    "jürgen.müller@beispiel.de",
    "用户@例子.中国",
    "+1 415-555-0132",
    "+33 (0)1 44 55 66 77",
    "0049 30 98765432",
    "(555) 123-4567",
    "555.123.4567",
    "4111 1111 1111 1111",
    "4111.1111.1111.1111",
    "5500-0000-0000-0004",
    "DE89 3704 0044 0532 0130 00",
    "de89370400440532013000",
    "GB29NWBK60161331926819",
    "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "AKIAIOSFODNN7EXAMPLE",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "Bearer abcdef1234567890abcdef",
    "DB_PASSWORD=hunter2secret",
    '{"api_key": "abc123def456"}',
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----",
]
#: The part of each secret that must be gone (a name such as ``DB_PASSWORD=`` may stay).
SENSITIVE = {
    "Bearer abcdef1234567890abcdef": "abcdef1234567890abcdef",
    "DB_PASSWORD=hunter2secret": "hunter2secret",
    '{"api_key": "abc123def456"}': "abc123def456",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----": "MIIEowIBAAKCAQEA7",
}
#: What text must hold for any built-in rule to change it.
TRIGGER = re.compile(r"[\d@=:]|(?i:bearer)|eyJ|-----BEGIN|sk|pk|rk|xox|gh|gl|hf|AKIA|ASIA|AIza")


@QUICK
@given(TEXT)
def test_text_never_raises_and_a_second_pass_changes_nothing(text):
    once = Redactor().text(text)
    again = Redactor()
    assert again.text(once) == once
    assert again.counts == {}  # placeholders never match a rule


@QUICK
@given(VALUES)
def test_values_never_raise_and_redaction_is_idempotent(value):
    once = Redactor().value(value)
    again = Redactor()
    assert again.value(once) == once
    assert again.counts == {}


@QUICK
@given(st.dictionaries(KEYS, st.integers(), max_size=8))
def test_keys_are_redacted_and_no_value_is_lost(value):
    redacted = Redactor().value(value)
    assert len(redacted) == len(value)
    assert sorted(redacted.values()) == sorted(value.values())
    assert not {"a@b.co", "x@y.org"} & set(redacted)


@QUICK
@given(st.text(CHARS, max_size=200).filter(lambda text: not TRIGGER.search(text)))
def test_text_without_any_trigger_is_unchanged(text):
    redactor = Redactor()
    assert redactor.text(text) == text
    assert redactor.counts == {}


def word(text: str) -> bool:
    """Random text that ends a word where the secret starts (no digit or joiner glued to it)."""
    return not text or not (text[-1].isalnum() or text[-1] in "+-._%'/\\(=:@\"")


@QUICK
@given(
    st.sampled_from(SECRETS),
    TEXT.filter(word),
    TEXT.map(lambda text: text[::-1]).filter(word).map(lambda text: text[::-1]),
)
def test_a_known_secret_anywhere_in_random_text_is_removed(secret, before, after):
    sensitive = SENSITIVE.get(secret, secret)
    assume(sensitive not in before and sensitive not in after)
    out = Redactor().text(f"{before} {secret} {after}")
    assert sensitive not in out


@settings(max_examples=10, deadline=None)
@given(st.one_of(st.text(CHARS, max_size=5_000), TEXT.filter(bool).map(lambda text: text * (100_000 // len(text)))))
def test_long_text_never_raises(text):
    once = Redactor().text(text)
    assert Redactor().text(once) == once
