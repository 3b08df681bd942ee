"""The capture record: one prompt/answer or one conversation state, as queued for delivery."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

Dialogue = list[dict[str, Any]]


def new_id() -> str:
    """A random id: 32 hex digits."""
    return os.urandom(16).hex()


@dataclass
class CaptureRecord:
    """What a callback captured, independent of any label config.

    ``prompt`` is the prompt text (prompt mode) or the dialogue as a list of
    ``{"role", "content"}`` (chat mode). ``response`` is the answer to pre-fill.
    ``data`` holds extra task data columns (user, session, route, metadata...).
    Records that share a ``session`` are one conversation: they are delivered as a
    single task that later records update.
    """

    project: dict[str, Any]
    prompt: str | Dialogue
    response: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    session: str | None = None
    model_version: str | None = None
    capture_id: str = field(default_factory=new_id)
    captured_at: float = field(default_factory=time.time)
    #: ``capture`` (a prompt or a conversation) or ``feedback`` (added to the task(s) of
    #: the capture named in ``target``: ``{"request_id", "session_id"}``).
    kind: str = "capture"
    target: dict[str, Any] | None = None

    @property
    def project_key(self) -> str:
        """A stable key for the target project (its id, else its title)."""
        pid = self.project.get("id")
        return f"id:{pid}" if pid is not None else f"title:{self.project['title']}"

    def to_json(self) -> str:
        return dumps({f: getattr(self, f) for f in _FIELDS})

    @classmethod
    def from_json(cls, text: str | bytes) -> CaptureRecord:
        return cls(**orjson.loads(text))


def dumps(value: Any) -> str:
    """Compact JSON; values that are not JSON types become their ``str()``."""
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:  # what orjson refuses (integers past 64 bits, non-string keys): the slow way
        return _ENCODER.encode(value)


_FIELDS = [f.name for f in fields(CaptureRecord)]
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":"))
