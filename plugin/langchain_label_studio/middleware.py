"""``LabelStudioMiddleware``: one line in a LangServe/FastAPI app captures its routes' traffic.

>>> app.add_middleware(
...     LabelStudioMiddleware,
...     routes={"/joke": "Jokes", "/chat": Project("Support chats", mode="chat")},
... )

A pure ASGI middleware: it never buffers or changes a response (it only adds the
request-id header), so streaming is untouched. While a mapped request is served, a
context variable holds a :class:`~langchain_label_studio.capture.CaptureHandler` that
LangChain attaches to every run (no route code changes). The delivery worker starts
and drains with the app's lifespan.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from datetime import datetime, timezone
from typing import Any

from .capture import CaptureContext, CaptureHandler, current_handler
from .feedback import DEFAULT_TTL_S, FeedbackError, FeedbackTokens, RateLimiter, feedback_record, parse_feedback
from .pipeline import Pipeline, get_pipeline
from .project import Project
from .record import new_id
from .sanitize import DEFAULT_MAX_CHARS
from .settings import Settings

logger = logging.getLogger("langchain_label_studio")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ProjectLike = str | int | Project
#: ``identify(scope)`` returns ``{"user_id": ..., "session_id": ...}`` (either may be missing).
Identify = Callable[[Scope], Mapping[str, Any] | None]

#: LangServe endpoints under a route that never run the chain for a user.
_NOT_RUNS = {"feedback", "token_feedback", "public_trace_link", "playground", "config_hashes"}
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: Paths whose route is remembered (the last ones served), so routing runs once per path.
_MATCH_CACHE_SIZE = 256


def as_project(value: ProjectLike) -> Project:
    """A route's project: a name (prompt mode), an id, or a :class:`Project`."""
    if isinstance(value, Project):
        return value
    if isinstance(value, bool):
        raise TypeError("a project is a name, an id or a Project")
    if isinstance(value, int):
        return Project(id=value)
    return Project(name=str(value))


class LabelStudioMiddleware:
    """Capture the LangChain runs of mapped routes into their Label Studio projects.

    Args:
        app: the ASGI app.
        routes: route prefix -> project (name, id or :class:`Project`). A LangServe
            prefix covers ``/invoke``, ``/batch``, ``/stream``, ``/stream_log`` and
            ``/stream_events``; playground, schema and feedback endpoints are skipped.
        default: project for POST requests on unmapped routes (default: not captured).
        api_key, url, state_dir: as for :class:`Settings` (env vars when unset).
        user_header, session_header: request headers naming the user and the session.
        request_id_header: header carrying the request id, returned on the response.
        identify: ``identify(scope)`` -> ``{"user_id", "session_id"}``, overriding the rest.
        prefix: where the plugin's own endpoints live (``{prefix}/health``).
        health: serve ``GET {prefix}/health`` with the pipeline's counters (JSON) and, with
            ``prometheus_client`` installed, ``GET {prefix}/metrics`` in Prometheus format.
        drain_timeout_s: how long shutdown waits for delivery; the rest stays queued.
        max_chars: longest string kept in a capture (longer ones are truncated).
        sample_rate, record_headers, opt_out_header: whole-session sampling, headers kept in
            ``data.headers`` (credentials never), the header that opts a request out.
        redact, redact_patterns, before_capture: redaction before anything is stored.
        feedback_secret, feedback_ttl_s, feedback_header: signed feedback tokens on responses
            (``LABEL_STUDIO_FEEDBACK_SECRET``); ``feedback_in_body`` also adds the token to
            LangServe's ``metadata.feedback_tokens`` of ``/invoke`` and ``/batch`` answers.
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: Mapping[str, ProjectLike] | None = None,
        *,
        default: ProjectLike | None = None,
        api_key: str | None = None,
        url: str | None = None,
        state_dir: str | None = None,
        outbox: str | None = None,
        settings: Settings | None = None,
        user_header: str = "X-User-ID",
        session_header: str = "X-Session-ID",
        request_id_header: str = "X-Request-ID",
        identify: Identify | None = None,
        prefix: str = "/label-studio",
        health: bool = False,
        drain_timeout_s: float = 10.0,
        max_chars: int = DEFAULT_MAX_CHARS,
        sample_rate: float = 1.0,
        record_headers: Iterable[str] = (),
        opt_out_header: str = "X-Label-Studio-Capture",
        redact: bool = True,
        redact_patterns: Mapping[str, str] | None = None,
        before_capture: Callable[[Any], Any] | None = None,
        feedback_secret: str | None = None,
        feedback_ttl_s: float = DEFAULT_TTL_S,
        feedback_header: str = "X-Label-Studio-Feedback-Token",
        feedback_in_body: bool = False,
    ) -> None:
        self.app = app
        self.routes = sorted(
            ((p.rstrip("/") or "/", as_project(v)) for p, v in (routes or {}).items()),
            key=lambda item: len(item[0]),
            reverse=True,
        )
        self.default = as_project(default) if default is not None else None
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be between 0 and 1, not {sample_rate!r}")
        self.sample_rate = sample_rate
        settings = settings or Settings(
            url=url,
            api_key=api_key,
            state_dir=state_dir,
            outbox=outbox,
            redact=redact,
            redact_patterns=dict(redact_patterns or {}),
            before_capture=before_capture,
        )
        self.pipeline: Pipeline = get_pipeline(settings)
        self.record_headers = [h.lower().encode() for h in record_headers if not _is_secret_header(h.lower())]
        self.opt_out_header = opt_out_header.lower().encode()
        secret = feedback_secret or os.environ.get("LABEL_STUDIO_FEEDBACK_SECRET")
        self.feedback = FeedbackTokens(secret.encode(), feedback_ttl_s) if secret else None
        self.feedback_header = feedback_header.lower().encode()
        self.feedback_in_body = feedback_in_body
        self._feedback_limit = RateLimiter()
        if self.feedback is None:
            logger.warning(
                "Label Studio feedback is disabled: set LABEL_STUDIO_FEEDBACK_SECRET (or feedback_secret=) "
                "to give each captured response a feedback token"
            )
        self.user_header = user_header.lower().encode()
        self.session_header = session_header.lower().encode()
        self.request_id_header = request_id_header.lower().encode()
        self.identify = identify
        self.prefix = prefix.rstrip("/")
        self.health = health
        self.drain_timeout_s = drain_timeout_s
        self.max_chars = max_chars
        self._matches: dict[str, tuple[str, Project] | None] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = _path(scope)
        method = scope["method"]
        if path.startswith(self.prefix):
            if self.health and path == f"{self.prefix}/health" and method == "GET":
                await _send_json(send, 200, self.pipeline.health())
                return
            if self.health and path == f"{self.prefix}/metrics" and method == "GET":
                await _send_metrics(send)
                return
            if path == f"{self.prefix}/feedback" and method == "POST":
                await self._feedback_endpoint(receive, send)
                return
        match = self._cached_match(path) if method == "POST" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        route, project = match
        headers = dict(scope.get("headers") or [])
        if headers.get(self.opt_out_header, b"").strip().lower() in (b"off", b"false", b"0", b"no"):
            self.pipeline.metrics.skip("opted_out")
            await self.app(scope, receive, send)
            return
        context = self._context(scope, headers, route, project)
        handler = CaptureHandler(self.pipeline, context, max_chars=self.max_chars)
        token = current_handler.set(handler)
        extra = [(self.request_id_header, (context.request_id or "").encode())]
        wrapped = send
        if self.feedback is not None:
            feedback_token = self.feedback.issue(project.to_dict(), context.request_id or "", context.session_id)
            extra.append((self.feedback_header, feedback_token.encode()))
            if self.feedback_in_body and path.rsplit("/", 1)[-1] in ("invoke", "batch"):
                wrapped = _with_langserve_token(send, feedback_token, self.feedback.ttl_s)
        try:
            await self.app(scope, receive, _with_headers(wrapped, extra))
        finally:
            current_handler.reset(token)
            handler.finish()

    # -- routing ----------------------------------------------------------------------------
    def _cached_match(self, path: str) -> tuple[str, Project] | None:
        """``_match`` of a POST, remembered for the most recent paths."""
        try:
            return self._matches[path]
        except KeyError:
            pass
        match = self._match(path)
        if len(self._matches) >= _MATCH_CACHE_SIZE:
            self._matches.clear()
        self._matches[path] = match
        return match

    def _match(self, path: str) -> tuple[str, Project] | None:
        """The route and project a POST to ``path`` is captured into, if any."""
        for prefix, project in self.routes:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                rest = path[len(prefix) :].strip("/").split("/")
                if _NOT_RUNS.intersection(rest) or rest[-1].endswith("_schema"):
                    return None
                return prefix, project
        if self.default is not None and not path.startswith(self.prefix + "/"):
            return path, self.default
        return None

    # -- identity ---------------------------------------------------------------------------
    def _context(self, scope: Scope, headers: Mapping[bytes, bytes], route: str, project: Project) -> CaptureContext:
        incoming = headers.get(self.request_id_header, b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else new_id()
        recorded = {h.decode(): _header(headers, h) for h in self.record_headers if h in headers}
        context = CaptureContext(
            project=project,
            route=route,
            request_id=request_id,
            user_id=_header(headers, self.user_header),
            session_id=_header(headers, self.session_header),
            extra={"headers": recorded} if recorded else {},
            sample_rate=project.sample_rate if project.sample_rate is not None else self.sample_rate,
        )
        context.identity = lambda: self._late_identity(scope)
        return context

    def _late_identity(self, scope: Scope) -> dict[str, Any]:
        """Identity known only once inner middleware ran: the authenticated user, ``identify``."""
        found: dict[str, Any] = {}
        user = scope.get("user")
        if user is not None and getattr(user, "is_authenticated", False):
            name = getattr(user, "identity", None) or getattr(user, "display_name", None)
            if name:
                found["user_id"] = str(name)
        if self.identify is not None:
            found.update({k: v for k, v in (self.identify(scope) or {}).items() if v is not None})
        return found

    # -- lifespan and response -----------------------------------------------------------------
    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.pipeline.start()
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.pipeline.close, self.drain_timeout_s)
            return message

        return wrapped

    async def _feedback_endpoint(self, receive: Receive, send: Send) -> None:
        """``POST {prefix}/feedback`` with ``{"token", "score", "comment"}``: queued like any capture."""
        if self.feedback is None:
            await _send_json(send, 404, {"error": "feedback is not enabled on this server"})
            return
        try:
            body = await _read_body(receive, limit=16_384)
            try:
                parsed = json.loads(body)
            except ValueError:
                raise FeedbackError(400, "the body is not JSON") from None
            token, score, comment = parse_feedback(parsed)
            claims = self.feedback.verify(token)
            if not self._feedback_limit.allow(str(token)[-43:]):
                raise FeedbackError(429, "too much feedback for this token; try again later")
        except FeedbackError as exc:
            await _send_json(send, exc.status, {"error": str(exc)})
            return
        self.pipeline.submit(feedback_record(claims, score, comment))
        await _send_json(send, 202, {"status": "accepted"})


#: Headers never recorded, whatever ``record_headers`` says.
_SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
_SECRET_WORDS = ("auth", "cookie", "token", "secret", "key", "password", "session")


def _is_secret_header(name: str) -> bool:
    return name in _SECRET_HEADERS or any(word in name for word in _SECRET_WORDS)


async def _send_metrics(send: Send) -> None:
    try:
        from .prometheus import metrics_text
    except ImportError:
        await _send_json(send, 404, {"error": "install prometheus_client for /metrics"})
        return
    body = metrics_text()
    headers = [
        (b"content-type", b"text/plain; version=0.0.4; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """Add headers to the response start (unless the app set them); everything else passes."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers") or [])
            present = {k.lower() for k, _ in headers}
            headers += [(k, v) for k, v in extra if k not in present]
            message = {**message, "headers": headers}
        await send(message)

    return wrapped


def _with_langserve_token(send: Send, token: str, ttl_s: float) -> Send:
    """Add the feedback token to LangServe's ``metadata.feedback_tokens`` of a JSON answer.

    Only successful JSON responses that carry that list are changed (the body is buffered,
    which ``/invoke`` and ``/batch`` answers are anyway); everything else passes untouched.
    """
    start: Message | None = None
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers") or [])
            if message.get("status") == 200 and headers.get(b"content-type", b"").startswith(b"application/json"):
                start = message
                return
            await send(message)
            return
        if message["type"] != "http.response.body" or start is None:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = b"".join(chunks)
        try:
            payload = json.loads(body)
            meta = payload["metadata"]  # /invoke: one list; /batch: one per input
            lists = (
                [meta["feedback_tokens"]]
                if "feedback_tokens" in meta
                else [r["feedback_tokens"] for r in meta["responses"]]
            )
            expires = datetime.fromtimestamp(time.time() + ttl_s, timezone.utc).isoformat()
            for tokens in lists:
                tokens.append({"key": "label_studio", "token_url": None, "token": token, "expires_at": expires})
            body = json.dumps(payload).encode()
        except (ValueError, KeyError, TypeError, AttributeError):
            pass  # not a LangServe answer with feedback tokens: sent as it was
        headers = [(k, v) for k, v in start.get("headers") or [] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped


async def _read_body(receive: Receive, limit: int) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > limit:
            raise FeedbackError(413, f"the body is larger than {limit} bytes")
        if not message.get("more_body"):
            return body


def _path(scope: Scope) -> str:
    path = scope.get("path") or "/"
    root = scope.get("root_path") or ""
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


def _header(headers: Mapping[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name, b"").decode("utf-8", "replace").strip()
    return value[:256] or None


async def _send_json(send: Send, status: int, body: Any) -> None:
    payload = json.dumps(body, default=str).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})
