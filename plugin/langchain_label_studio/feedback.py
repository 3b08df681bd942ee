"""End-user feedback: signed tokens that name a capture, and the feedback they carry.

A token is ``v2.<payload>.<signature>``. The payload (base64url of a compact JSON array)
holds the server-side request id, the route prefix, the user id, the session id (chat
routes only), when the token was issued and when it expires, and the deployment id (a
hash of the Label Studio URL without credentials, the route and its project). The
signature is an HMAC-SHA256 of ``v2.<payload>`` with the deployment's secret. Nothing
secret is inside a token, and no project settings: the server maps the route back to
its own project, and refuses a token issued for another deployment.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .identity import session_key, session_ref
from .project import Project
from .record import CaptureRecord, valid_text
from .urls import public_url

VERSION = "v2"
MAX_COMMENT_CHARS = 2000
DEFAULT_TTL_S = 7 * 24 * 3600
#: The longest token accepted (tokens this code issues stay far below it).
MAX_TOKEN_CHARS = 4096
#: The largest feedback request body accepted.
MAX_BODY_BYTES = 16_384
#: The route claim of requests captured into the middleware's ``default`` project.
DEFAULT_ROUTE = "*"
#: Task ``data`` keys feedback writes; kept when a session's task is updated.
FEEDBACK_KEYS = ("feedback", "feedback_score", "feedback_count", "feedback_mean")

_TOKEN = re.compile(rf"v2\.([A-Za-z0-9_-]{{1,{MAX_TOKEN_CHARS}}})\.([A-Za-z0-9_-]{{43}})")


class FeedbackError(Exception):
    """A feedback request that is refused, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def deployment_id(url: str | None, route: str, project: Project) -> str:
    """A short, stable id of one route of one deployment: the same on every replica.

    Made from the Label Studio URL without credentials, the route prefix, and the
    route's project (name pattern, id, mode), so that an app with the same secret but
    another server, route or project refuses the tokens of this one.
    """
    parts = [public_url(url), route, project.name, str(project.id), project.mode]
    digest = hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).digest()
    return _b64(digest[:12])


@dataclass(frozen=True)
class FeedbackClaims:
    """What a token says: which request of which deployment, whose, until when."""

    request_id: str
    route: str
    user_id: str | None
    session_id: str | None
    issued_at: int
    expires_at: int
    deployment: str

    def target_key(self) -> str:
        """What the feedback lands on: the session's task (chat) or the request's task."""
        if self.session_id is not None:
            return f"session:{session_key(self.user_id, self.session_id)}"
        return f"request:{self.request_id}"

    def to_payload(self) -> list[Any]:
        return [
            self.request_id,
            self.route,
            self.user_id,
            self.session_id,
            self.issued_at,
            self.expires_at,
            self.deployment,
        ]

    @classmethod
    def from_payload(cls, value: Any) -> FeedbackClaims:
        if not isinstance(value, list) or len(value) != 7:
            raise ValueError("not a claims list")
        rid, route, user, session, issued, expires, deployment = value
        texts_ok = all(isinstance(v, str) for v in (rid, route, deployment))
        optional_ok = all(v is None or isinstance(v, str) for v in (user, session))
        times_ok = all(type(v) is int for v in (issued, expires))
        if not (texts_ok and optional_ok and times_ok):
            raise ValueError("claims of the wrong type")
        return cls(rid, route, user, session, issued, expires, deployment)


@dataclass(frozen=True)
class FeedbackTokens:
    """Issues and checks feedback tokens with one secret."""

    secret: bytes
    ttl_s: float = DEFAULT_TTL_S

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self.secret, f"{VERSION}.{payload}".encode("ascii"), hashlib.sha256).digest())

    def issue(
        self,
        *,
        request_id: str,
        route: str,
        deployment: str,
        user_id: str | None = None,
        session_id: str | None = None,
        now: float | None = None,
    ) -> str:
        """A token for one captured request (``session_id`` only for chat routes)."""
        issued = int(time.time() if now is None else now)
        claims = FeedbackClaims(request_id, route, user_id, session_id, issued, issued + int(self.ttl_s), deployment)
        raw = json.dumps(claims.to_payload(), separators=(",", ":"), ensure_ascii=False)
        payload = _b64(raw.encode("utf-8", "surrogatepass"))
        return f"{VERSION}.{payload}.{self._sign(payload)}"

    def verify(self, token: Any, now: float | None = None) -> FeedbackClaims:
        """The token's claims.

        Raises FeedbackError: 400 malformed (or of an older version), 403 forged or
        tampered, 401 expired. Whether the token belongs to this deployment is the
        caller's check (:attr:`FeedbackClaims.deployment`).
        """
        if not isinstance(token, str):
            raise FeedbackError(400, "the feedback token must be text")
        if token.startswith("v1."):
            raise FeedbackError(400, "feedback tokens of version v1 are no longer accepted")
        match = _TOKEN.fullmatch(token) if len(token) <= MAX_TOKEN_CHARS else None
        if match is None:
            raise FeedbackError(400, "malformed feedback token")
        payload, signature = match.groups()
        if not hmac.compare_digest(self._sign(payload).encode("ascii"), signature.encode("ascii")):
            raise FeedbackError(403, "invalid feedback token signature")
        try:
            claims = FeedbackClaims.from_payload(json.loads(_unb64(payload)))
        except (ValueError, RecursionError):
            raise FeedbackError(400, "malformed feedback token") from None
        if (time.time() if now is None else now) > claims.expires_at:
            raise FeedbackError(401, "feedback token expired")
        return claims


@dataclass(frozen=True)
class Feedback:
    """One end-user verdict: the token it came with, a score from 0 to 1, an optional comment."""

    token: str
    score: float
    comment: str | None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_feedback(body: bytes) -> Feedback:
    """The feedback in a request body: ``{"token", "score", "comment"}`` as UTF-8 JSON.

    ``score`` is a number from 0 (thumbs down) to 1 (thumbs up), or true/false;
    ``comment`` is optional text of at most 2,000 characters. Raises FeedbackError:
    400 for a body that is not a JSON object (empty, invalid UTF-8, ``NaN``, nested
    too deep, a number too long), 422 for a score or comment out of bounds.
    """
    if not body.strip():
        raise FeedbackError(400, 'the body is empty; send {"token", "score", "comment"}')
    try:
        text = body.decode("utf-8")
        parsed = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise FeedbackError(400, "the body is not JSON") from None
    if not isinstance(parsed, dict):
        raise FeedbackError(400, 'the body must be a JSON object {"token", "score", "comment"}')
    token = parsed.get("token")
    if not isinstance(token, str):
        raise FeedbackError(400, "the feedback token must be text")
    return Feedback(token, _score(parsed.get("score")), _comment(parsed.get("comment")))


def _score(value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if type(value) is int and 0 <= value <= 1:  # compared exactly: a 400-digit integer is no float
        return float(value)
    if type(value) is float and 0.0 <= value <= 1.0:  # NaN compares false
        return value
    raise FeedbackError(422, "score must be a number from 0 to 1, or true/false")


def _comment(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise FeedbackError(422, "comment must be text")
    if len(value) > MAX_COMMENT_CHARS:
        raise FeedbackError(422, f"comment is longer than {MAX_COMMENT_CHARS} characters")
    return valid_text(value).replace("\x00", "")  # lone surrogates: no UTF-8 text can hold them


def feedback_record(
    claims: FeedbackClaims, project: dict[str, Any], feedback: Feedback, now: float | None = None
) -> CaptureRecord:
    """A record that adds one feedback to the task of the request (or session) the token names."""
    at = datetime.fromtimestamp(time.time() if now is None else now, UTC).isoformat()
    return CaptureRecord(
        kind="feedback",
        project=project,
        prompt="",
        data={"feedback": {"score": feedback.score, "comment": feedback.comment, "at": at}},
        target={"request_id": claims.request_id, "session": session_ref(claims.user_id, claims.session_id)},
    )


class RateLimiter:
    """At most ``limit`` uses of one key per ``window_s`` (keys kept: the most recent ``size``)."""

    def __init__(self, limit: int = 5, window_s: float = 60.0, size: int = 10_000) -> None:
        if limit < 1:
            raise ValueError(f"a rate limit allows at least 1 use, not {limit!r}")
        self.limit, self.window_s, self.size = limit, window_s, size
        self._uses: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Whether ``key`` may be used now (a use is counted only when allowed)."""
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
