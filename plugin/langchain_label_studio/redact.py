"""Redaction of personal data and secrets, applied to every record before it is stored.

Built-in rules replace matches with typed placeholders: ``<EMAIL>``, ``<PHONE>``,
``<CREDIT_CARD>`` (Luhn-checked), ``<SECRET>`` (API keys, bearer tokens, JWTs,
``password=...``) and ``<IBAN>`` (checksum-verified). Extra rules are ``{"NAME": regex}``
pairs (matches become ``<NAME>``). Every string of the record is covered: messages, the
graph state, tool arguments and results, metadata.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .record import CaptureRecord


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card(match: re.Match[str]) -> str | None:
    digits = re.sub(r"\D", "", match.group(0))
    return "<CREDIT_CARD>" if 13 <= len(digits) <= 19 and _luhn_ok(digits) else None


def _iban(match: re.Match[str]) -> str | None:
    raw = re.sub(r"\s", "", match.group(0)).upper()
    moved = raw[4:] + raw[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return "<IBAN>" if len(raw) >= 15 and int(number) % 97 == 1 else None


def _phone(match: re.Match[str]) -> str | None:
    digits = re.sub(r"\D", "", match.group(0))
    return "<PHONE>" if 8 <= len(digits) <= 15 else None


Replacement = str | Callable[[re.Match[str]], str | None]
#: A cheap test that is true of every text the rule's pattern can match (false: skip the rule).
Precheck = Callable[[str], bool]
_DIGIT = re.compile(r"\d")
_KEY_PREFIXES = ("sk", "pk", "rk", "xox", "gh", "gl", "hf", "AKIA", "ASIA", "AIza")


def _has_digit(text: str) -> bool:
    return _DIGIT.search(text) is not None


#: Prechecks of the built-in rules, by position in ``BUILTIN_RULES``: each only needs what
#: its pattern cannot match without (a literal, a digit), case folding included.
_PRECHECKS: list[Precheck] = [
    lambda text: "bearer" in text.lower(),
    lambda text: "eyJ" in text,
    lambda text: any(prefix in text for prefix in _KEY_PREFIXES),
    lambda text: "=" in text or ":" in text,
    lambda text: "@" in text,
    _has_digit,
    _has_digit,
    _has_digit,
]

_MARK_OR_DIGIT = re.compile(r"[=:@\d]")
_KEY_START = re.compile(rf"\b(?:{'|'.join(_KEY_PREFIXES)})")


def _may_match_builtin(text: str) -> bool:
    """False when no built-in rule can match: each match holds one of these (cheapest first)."""
    return (
        _MARK_OR_DIGIT.search(text) is not None
        or "eyJ" in text
        or "bearer" in text.lower()
        or _KEY_START.search(text) is not None
    )


#: (name, pattern, replacement) in the order they are applied; secrets first.
BUILTIN_RULES: list[tuple[str, str, Replacement]] = [
    ("SECRET", r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}", "Bearer <SECRET>"),
    ("SECRET", r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", "<SECRET>"),
    (
        "SECRET",
        r"\b(?:sk|pk|rk|sk-proj|sk-ant|xox[abposr]|ghp|gho|ghs|ghu|github_pat|glpat|hf|AKIA|ASIA|AIza)"
        r"[-_]?[A-Za-z0-9_-]{16,}",
        "<SECRET>",
    ),
    (
        "SECRET",
        r"(?i)\b(api[_-]?key|apikey|secret|token|password|passwd|pwd)\b(\s*[:=]\s*)"
        r"[\"']?[^\s\"',;]{6,}",
        lambda m: f"{m.group(1)}{m.group(2)}<SECRET>",
    ),
    ("EMAIL", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b", "<EMAIL>"),
    ("IBAN", r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b", _iban),
    ("CREDIT_CARD", r"\b\d(?:[ -]?\d){12,18}\b", _card),
    (
        "PHONE",
        r"(?<![\w+])(?:\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,5}"
        r"|\(\d{2,4}\)\s?\d{3,4}[\s.-]?\d{3,4}"
        r"|\d{3}[\s.-]\d{3}[\s.-]\d{4}"
        r"|0\d{1,4}[\s.-]\d{3,4}[\s.-]?\d{3,4})(?!\w)",
        _phone,
    ),
]


@dataclass
class Redactor:
    """Applies the rules to every string of a record, counting replacements per rule."""

    builtin: bool = True
    patterns: Mapping[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rules: list[tuple[str, str, Replacement, Precheck | None]] = (
            [(*rule, check) for rule, check in zip(BUILTIN_RULES, _PRECHECKS, strict=True)] if self.builtin else []
        )
        rules += [(name.upper(), pattern, f"<{name.upper()}>", None) for name, pattern in self.patterns.items()]
        self._rules = [
            (re.compile(pattern), functools.partial(self._replace, name, repl), check)
            for name, pattern, repl, check in rules
        ]
        #: Only the built-in rules are known to match the joined strings of a record wherever
        #: they match one of them (their anchors are word boundaries, which NUL keeps apart).
        self._joinable = not self.patterns

    def text(self, value: str) -> str:
        for regex, replace, check in self._rules:
            if check is None or check(value):
                value = regex.sub(replace, value)
        return value

    def _replace(self, name: str, repl: Replacement, match: re.Match[str]) -> str:
        out = repl(match) if callable(repl) else repl
        if out is None:
            return match.group(0)
        self.counts[name] = self.counts.get(name, 0) + 1
        return out

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    def record(self, record: CaptureRecord) -> CaptureRecord:
        """Redact a record in place (prompt, answer, every data value) and return it."""
        if not self._rules:
            return record
        if self._joinable and not self._matches_any(record):
            return record
        record.prompt = self.value(record.prompt)
        if record.response is not None:
            record.response = self.text(record.response)
        record.data = self.value(record.data)
        return record

    def _matches_any(self, record: CaptureRecord) -> bool:
        """Whether any rule matches somewhere in the record (most records: no, one pass each).

        The strings are joined with NUL, which no rule's match needs: a rule that matches
        inside one string matches the joined text, so "no match" there means none anywhere.
        Generated ids are left out of the test (they cannot match).
        """
        strings: list[str] = []
        _collect(record.prompt, strings)
        if record.response is not None:
            strings.append(record.response)
        _collect(record.data, strings)
        joined = "\x00".join(strings)
        if not _may_match_builtin(joined):
            return False
        return any((check is None or check(joined)) and regex.search(joined) for regex, _, check in self._rules)


#: A request or run id as generated here: no built-in rule can match inside it (a
#: 32-character word has no boundary for the digit rules, and no secret prefix is hex).
_GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def _collect(value: Any, into: list[str]) -> None:
    if isinstance(value, str):
        if len(value) != 32 or not _GENERATED_ID.fullmatch(value):
            into.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _collect(item, into)
    elif isinstance(value, list):
        for item in value:
            _collect(item, into)
