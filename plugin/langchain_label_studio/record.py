"""The capture record: one prompt/answer or one conversation state, as queued for delivery."""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

Dialogue = list[dict[str, Any]]
#: Prefix of the outbox queues of feedback records.
FEEDBACK_QUEUE = "feedback:"
#: ``data`` key of a chat record whose graph state holds its messages once: the state's
#: ``messages`` are left empty (``None``) and are the dialogue (``prompt``) followed by this list.
#: The task gets the state whole (:func:`~langchain_label_studio.task.build_task`).
STATE_TAIL_KEY = "state_messages_after_prompt"


def new_id() -> str:
    """A random id: 32 hex digits."""
    return os.urandom(16).hex()


@dataclass
class CaptureRecord:
    """What a callback captured, independent of any label config.

    ``prompt`` is the prompt text (prompt mode) or the dialogue as a list of
    ``{"role", "content"}`` (chat mode). ``response`` is the answer to pre-fill.
    ``data`` holds extra task data columns (user, session, route, metadata...).
    Records that share a ``session`` (a digest of the user and session ids, see
    :func:`~langchain_label_studio.identity.session_ref`) are one conversation: they are
    delivered as a single task that later records update.
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
    #: the capture named in ``target``: ``{"request_id", "session"}``, a ``session`` as above).
    kind: str = "capture"
    target: dict[str, Any] | None = None
    #: Longest string the stored record keeps (strings are cut after redaction). Not stored.
    max_chars: int | None = field(default=None, repr=False, compare=False)

    @property
    def project_key(self) -> str:
        """A stable key for the target project (its id, else its title)."""
        pid = self.project.get("id")
        return f"id:{pid}" if pid is not None else f"title:{self.project['title']}"

    @property
    def queue_key(self) -> str:
        """The outbox queue of the record: its project's, or that project's feedback queue.

        Feedback waits in queues of its own, so that a flood of it never delays captures.
        """
        return f"{FEEDBACK_QUEUE}{self.project_key}" if self.kind == "feedback" else self.project_key

    def to_json(self) -> str:
        """The record as stored: compact JSON, valid UTF-8 (see :func:`dumps`)."""
        return dumps({f: getattr(self, f) for f in _FIELDS})

    def seal(self) -> None:
        """Make the fields an outbox indexes valid text (surrogates replaced), ids bounded.

        Raises ``TypeError`` when a field has a type no outbox can store.
        """
        if not isinstance(self.capture_id, str) or not isinstance(self.project, dict):
            raise TypeError("capture_id must be text and project a dict")
        self.capture_id = valid_text(self.capture_id)[:64]
        if self.session is not None:
            self.session = valid_text(str(self.session))
        title = self.project.get("title")
        if isinstance(title, str):
            self.project["title"] = valid_text(title)
        if not isinstance(self.captured_at, (int, float)) or self.captured_at != self.captured_at:
            self.captured_at = time.time()

    @classmethod
    def from_json(cls, text: str | bytes) -> CaptureRecord:
        """A stored record; fields this version does not know (a newer version's) are left out."""
        data = orjson.loads(text)
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})


def dumps(value: Any) -> str:
    """Compact JSON, always valid UTF-8; values that are not JSON types become their ``str()``.

    Lone surrogates (which no UTF-8 text can hold) become U+FFFD wherever they are, keys included.
    """
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:  # what orjson refuses (surrogates, integers past 64 bits, non-string keys)
        pass
    try:
        return valid_text(_ENCODER.encode(value))
    except ValueError:  # NaN or infinity, which JSON cannot hold: null, as orjson writes them
        return valid_text(_ENCODER.encode(_finite(value)))


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinite floats replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def valid_text(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD, so that it encodes as UTF-8."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", text)
    return text


#: The fields stored in the outbox.
_FIELDS = [f.name for f in fields(CaptureRecord) if f.name != "max_chars"]
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":"), allow_nan=False)
_SURROGATES = re.compile("[\ud800-\udfff]")
