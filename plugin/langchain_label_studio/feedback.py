"""End-user feedback: signed tokens that name a capture, and the feedback they carry.

A token is ``v1.<payload>.<signature>``: the payload (base64url JSON) names the project,
the request and the session of a capture and when the token expires; the signature is an
HMAC-SHA256 of it with the deployment's secret. Nothing secret is inside a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .record import CaptureRecord

MAX_COMMENT_CHARS = 2000
DEFAULT_TTL_S = 7 * 24 * 3600
#: Task ``data`` keys feedback writes; kept when a session's task is updated.
FEEDBACK_KEYS = ("feedback", "feedback_score", "feedback_count")


class FeedbackError(Exception):
    """A feedback request that is refused, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class FeedbackTokens:
    """Issues and checks feedback tokens with one secret."""

    secret: bytes
    ttl_s: float = DEFAULT_TTL_S

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self.secret, f"v1.{payload}".encode(), hashlib.sha256).digest())

    def issue(self, project: dict[str, Any], request_id: str, session: str | None, now: float | None = None) -> str:
        claims = {"p": project, "r": request_id, "s": session, "e": int((now or time.time()) + self.ttl_s)}
        payload = _b64(json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode())
        return f"v1.{payload}.{self._sign(payload)}"

    def verify(self, token: Any, now: float | None = None) -> dict[str, Any]:
        """The token's claims. Raises FeedbackError: 400 malformed, 403 forged or tampered, 401 expired."""
        if not isinstance(token, str) or token.count(".") != 2 or not token.startswith("v1.") or len(token) > 4096:
            raise FeedbackError(400, "malformed feedback token")
        _, payload, signature = token.split(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            raise FeedbackError(403, "invalid feedback token signature")
        try:
            claims = json.loads(_unb64(payload))
            expires = float(claims["e"])
            claims["p"]["mode"], claims["r"]  # noqa: B018
        except (ValueError, KeyError, TypeError):
            raise FeedbackError(400, "malformed feedback token") from None
        if (now or time.time()) > expires:
            raise FeedbackError(401, "feedback token expired")
        return claims


def parse_feedback(body: Any) -> tuple[Any, float, str | None]:
    """The token, score and comment of a feedback request body.

    ``score`` is a number from 0 (thumbs down) to 1 (thumbs up), or true/false;
    ``comment`` is optional text of at most 2,000 characters.
    """
    if not isinstance(body, dict):
        raise FeedbackError(400, 'the body must be a JSON object {"token", "score", "comment"}')
    score = body.get("score")
    if isinstance(score, bool):
        score = 1.0 if score else 0.0
    if not isinstance(score, (int, float)) or not math.isfinite(score) or not 0 <= score <= 1:
        raise FeedbackError(422, "score must be a number from 0 to 1, or true/false")
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise FeedbackError(422, "comment must be text")
    if comment is not None and len(comment) > MAX_COMMENT_CHARS:
        raise FeedbackError(422, f"comment is longer than {MAX_COMMENT_CHARS} characters")
    return body.get("token"), float(score), comment


def feedback_record(claims: dict[str, Any], score: float, comment: str | None) -> CaptureRecord:
    """A record that adds one feedback to the task(s) of the capture the token names."""
    entry = {"score": score, "comment": comment, "at": datetime.now(timezone.utc).isoformat()}
    return CaptureRecord(
        project=claims["p"],
        prompt="",
        data={"feedback": entry},
        kind="feedback",
        target={"request_id": claims["r"], "session_id": claims.get("s")},
    )


class RateLimiter:
    """At most ``limit`` uses of one key per ``window_s`` (keys kept: the most recent ``size``)."""

    def __init__(self, limit: int = 5, window_s: float = 60.0, size: int = 10_000) -> None:
        self.limit, self.window_s, self.size = limit, window_s, size
        self._uses: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            uses = [t for t in self._uses.pop(key, []) if now - t < self.window_s]
            allowed = len(uses) < self.limit
            if allowed:
                uses.append(now)
            self._uses[key] = uses
            while len(self._uses) > self.size:
                self._uses.popitem(last=False)
            return allowed
