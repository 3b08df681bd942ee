"""Make captured values safe to store and send: JSON-able, valid UTF-8, bounded.

Two stages, so that redaction sees a secret whole before anything is cut:

1. On the request path, :class:`Sanitizer` turns what a run produced into JSON types
   (messages become dialogue items, other objects their ``str()``, nesting past
   :data:`MAX_DEPTH` its ``repr``) and cuts each string at ``max_chars`` plus
   :data:`SCAN_MARGIN`, which bounds what redaction scans.
2. In the background writer, before redaction, :func:`normalize` removes NUL characters
   and replaces lone surrogates with U+FFFD (so that neither can split a secret in two);
   after it, :func:`finish` cuts each string (keys included) at ``max_chars`` with the
   marker ``…[truncated N chars]``, and the record is flagged ``truncated: true``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from langchain_core.messages import BaseMessage

from .messages import to_dialogue_item
from .record import CaptureRecord, valid_text

DEFAULT_MAX_CHARS = 100_000
#: Characters kept past ``max_chars`` until redaction has run (a secret cut in two would escape it).
SCAN_MARGIN = 4096
MAX_DEPTH = 20
_MARKER = re.compile(r"…\[truncated (\d+) chars\]\Z")


@dataclass
class Sanitizer:
    """Request-path stage: a JSON-able copy with every string cut at ``max_chars + SCAN_MARGIN``."""

    max_chars: int = DEFAULT_MAX_CHARS

    def text(self, value: str) -> str:
        return cut(value, self.max_chars + SCAN_MARGIN)

    def value(self, value: Any, depth: int = 0) -> Any:
        """A JSON-able copy of ``value`` (messages become dialogue items)."""
        kind = type(value)
        if kind is str:
            return self.text(value)
        if value is None or kind is bool or kind is int or kind is float:
            return value
        if depth > MAX_DEPTH:
            return self.text(_safe_repr(value))
        if isinstance(value, dict):  # the common types first: the abstract ones are slower to test
            return self._mapping(value, depth)
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self.value(v, depth + 1) for v in value]
        if isinstance(value, BaseMessage):
            return self._message(value, depth + 1)
        if isinstance(value, Mapping):
            return self._mapping(value, depth)
        if isinstance(value, str):
            return self.text(str(value))
        if isinstance(value, (bool, int, float)):
            return value
        if hasattr(value, "model_dump"):
            try:
                return self.value(value.model_dump(), depth + 1)
            except Exception:
                pass
        return self.text(_safe_str(value))

    def _mapping(self, value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
        return {self.text(k if type(k) is str else str(k)): self.value(v, depth + 1) for k, v in value.items()}

    def _message(self, message: BaseMessage, depth: int) -> Any:
        """``value(to_dialogue_item(message), depth)``: the item is new and its keys are short
        names of ours, so only its values are made safe."""
        item = to_dialogue_item(message)
        if depth > MAX_DEPTH:
            return self.text(_safe_repr(item))
        limit = self.max_chars + SCAN_MARGIN
        for key, field_value in item.items():
            if type(field_value) is not str:
                item[key] = self.value(field_value, depth + 1)
            elif len(field_value) > limit:
                item[key] = cut(field_value, limit)
        return item


def cut(text: str, limit: int) -> str:
    """``text`` cut at ``limit`` characters, with a marker that counts what was cut (over earlier cuts too)."""
    if len(text) <= limit:
        return text
    dropped = len(text) - limit
    earlier = _MARKER.search(text, len(text) - 40)
    if earlier is not None:  # cut before: count what that cut dropped as well
        dropped = len(text) - len(earlier.group(0)) - limit + int(earlier.group(1))
    return f"{text[:limit]}…[truncated {dropped} chars]"


@dataclass
class _Finisher:
    max_chars: int
    truncated: bool = False

    def text(self, value: str) -> str:
        value = _plain(value)
        if len(value) > self.max_chars:
            self.truncated = True
            value = cut(value, self.max_chars)
        return value

    def value(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if depth > MAX_DEPTH * 2:  # only a before_capture hook can nest this deep
            return self.text(_safe_repr(value))
        if isinstance(value, dict):
            return {self.text(k if isinstance(k, str) else str(k)): self.value(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v, depth + 1) for v in value]
        if value is None or isinstance(value, (bool, int, float)):
            return value
        return self.text(_safe_str(value))


def finish(record: CaptureRecord, max_chars: int = DEFAULT_MAX_CHARS) -> CaptureRecord:
    """Writer stage, after redaction: valid text without NULs, strings cut at ``max_chars`` (in place)."""
    if _already_finished(record, max_chars):
        return record
    clean = _Finisher(max_chars)
    record.prompt = clean.value(record.prompt)
    if record.response is not None:
        record.response = clean.text(record.response if isinstance(record.response, str) else str(record.response))
    record.data = clean.value(record.data) if isinstance(record.data, dict) else {"data": clean.value(record.data)}
    if clean.truncated:
        record.data["truncated"] = True
    return record


def normalize(record: CaptureRecord) -> CaptureRecord:
    """Writer stage, before redaction: NULs removed and lone surrogates replaced in every string,
    keys included (in place). Nothing is cut and nothing else changes: that is :func:`finish`'s."""
    if _already_finished(record, sys.maxsize):
        return record
    record.prompt = _normalized(record.prompt)
    if isinstance(record.response, str):
        record.response = _plain(record.response)
    record.data = _normalized(record.data)
    return record


def _normalized(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return _plain(value)
    if depth > MAX_DEPTH * 2:  # only a before_capture hook nests this deep: left for finish()
        return value
    if isinstance(value, dict):
        return {_plain(k) if isinstance(k, str) else k: _normalized(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalized(v, depth + 1) for v in value]
    return value


def _plain(text: str) -> str:
    """``text`` without NULs, as valid text."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    return valid_text(text)


def _already_finished(record: CaptureRecord, max_chars: int) -> bool:
    """Whether :func:`finish` would change nothing (most records), told by one pass of the encoder.

    The encoder refuses lone surrogates, keys that are not text, types JSON has no place for and
    integers past 64 bits; it writes NUL as ``\\u0000``; and no string of a value can be longer
    than the value's encoding.
    """
    if not isinstance(record.data, dict) or not isinstance(record.response, (str, type(None))):
        return False
    try:
        encoded = orjson.dumps((record.prompt, record.response, record.data))
    except TypeError:
        return False
    return len(encoded) <= max_chars and b"\\u0000" not in encoded


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)[:1000]
    except Exception:
        return f"<{type(value).__name__}>"


def to_text(value: Any) -> str:
    """A run output as the text an annotator reads."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseMessage):
        return str(to_dialogue_item(value)["content"])
    if isinstance(value, dict) and len(value) == 1:
        return to_text(next(iter(value.values())))
    return json.dumps(Sanitizer().value(value), ensure_ascii=False, indent=1)
