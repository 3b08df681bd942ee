"""Make captured values safe to store and send: JSON-able, valid UTF-8, bounded.

Policy (documented in the README):
- NUL characters are removed and invalid UTF-8 (lone surrogates) becomes U+FFFD.
- A string longer than ``max_chars`` keeps its first ``max_chars`` characters and gets
  the marker ``…[truncated N chars]``; the record is then flagged ``truncated: true``.
- Values that are not JSON types are stored as their ``str()``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage

from .messages import to_dialogue_item

DEFAULT_MAX_CHARS = 100_000
_SURROGATES = re.compile("[\ud800-\udfff]")


@dataclass
class Sanitizer:
    max_chars: int = DEFAULT_MAX_CHARS
    truncated: bool = False

    def text(self, value: str) -> str:
        if "\x00" in value:
            value = value.replace("\x00", "")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                value = _SURROGATES.sub("\ufffd", value)
        if len(value) > self.max_chars:
            self.truncated = True
            value = f"{value[: self.max_chars]}…[truncated {len(value) - self.max_chars} chars]"
        return value

    def value(self, value: Any, depth: int = 0) -> Any:
        """A JSON-able copy of ``value`` (messages become dialogue items)."""
        kind = type(value)
        if kind is str:
            return self.text(value)
        if value is None or kind is bool or kind is int or kind is float:
            return value
        if depth > 20:
            return self.text(repr(value))
        if isinstance(value, Mapping):
            return {self.text(k if type(k) is str else str(k)): self.value(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self.value(v, depth + 1) for v in value]
        if isinstance(value, str):
            return self.text(str(value))
        if isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, BaseMessage):
            return self.value(to_dialogue_item(value), depth + 1)
        if hasattr(value, "model_dump"):
            try:
                return self.value(value.model_dump(), depth + 1)
            except Exception:
                pass
        return self.text(str(value))


def to_text(value: Any) -> str:
    """A run output as the text an annotator reads."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseMessage):
        return str(to_dialogue_item(value)["content"])
    if isinstance(value, dict) and len(value) == 1:
        return to_text(next(iter(value.values())))
    return json.dumps(Sanitizer().value(value), ensure_ascii=False, indent=1)
