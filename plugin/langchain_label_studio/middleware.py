"""``LabelStudioMiddleware``: one line in a LangServe/FastAPI app captures its routes' traffic.

>>> app.add_middleware(
...     LabelStudioMiddleware,
...     routes={"/joke": "Jokes", "/chat": Project("Support chats", mode="chat")},
... )

A pure ASGI middleware: it never buffers or changes a response (it only adds the
request-id and feedback-token headers), so streaming is untouched. While a mapped
request is served, a context variable holds a
:class:`~langchain_label_studio.capture.CaptureHandler` that LangChain attaches to every
run (no route code changes). The delivery worker starts and drains with the app's
lifespan.

The request id is always made by the server; a client's own ``X-Request-ID`` is kept
only as the ``client_request_id`` column. A feedback token is issued when a captured
request's answer starts with a 2xx status, and names that request (and, on chat routes,
its user's session), this deployment and the route: never anything the client chose
but its identity headers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hmac
import inspect
import json
import logging
import os
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .capture import CaptureContext, CaptureHandler, current_handler, sampled
from .feedback import (
    DEFAULT_ROUTE,
    DEFAULT_TTL_S,
    MAX_BODY_BYTES,
    FeedbackError,
    FeedbackTokens,
    RateLimiter,
    deployment_id,
    feedback_record,
    parse_feedback,
)
from .identity import authenticated_name, clean_id
from .pipeline import Pipeline, get_pipeline
from .project import Project, ProjectLike, as_project
from .prometheus import metrics_text
from .prometheus import register as register_metrics
from .record import new_id
from .sanitize import DEFAULT_MAX_CHARS
from .settings import OFF, Settings

logger = logging.getLogger("langchain_label_studio")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: ``identify(scope)`` returns ``{"user_id": ..., "session_id": ...}`` (either may be missing).
Identify = Callable[[Scope], Mapping[str, Any] | None]
#: ``health_guard``: a bearer token, or ``guard(scope) -> bool`` (may be async).
HealthGuard = str | Callable[[Scope], bool | Awaitable[bool]]

#: LangServe endpoints under a route that never run the chain for a user.
_NOT_RUNS = {"feedback", "token_feedback", "public_trace_link", "playground", "config_hashes"}
#: A client's request id kept as ``client_request_id`` (the whole value must match).
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: Paths whose route is remembered (the last ones served), so routing runs once per path.
_MATCH_CACHE_SIZE = 256
#: How long one computed health view (or metrics page) is served to every poller.
HEALTH_CACHE_S = 1.0


@dataclass(frozen=True)
class _Route:
    """A captured route: its key (the token's route claim), its project, its deployment id."""

    key: str
    project: Project
    deployment: str


class LabelStudioMiddleware:
    """Capture the LangChain runs of mapped routes into their Label Studio projects.

    Args:
        app: the ASGI app.
        routes: route prefix -> project (name, id or :class:`Project`). A LangServe
            prefix covers ``/invoke``, ``/batch``, ``/stream``, ``/stream_log`` and
            ``/stream_events``; playground, schema and feedback endpoints are skipped.
        default: project for POST requests on unmapped routes (default: not captured).
        api_key, url, state_dir: as for :class:`Settings` (env vars when unset).
        user_header, session_header: request headers naming the user and the session
            (``user_header=None``: no header names the user, e.g. where every user authenticates).
        request_id_header: response header carrying the server's request id; a safe id the
            client sends in it is kept as ``client_request_id``.
        identify: ``identify(scope)`` -> ``{"user_id", "session_id"}``, overriding the rest.
        prefix: where the plugin's own endpoints live (``{prefix}/health``, ``{prefix}/feedback``).
        health: serve ``GET {prefix}/health`` with the pipeline's counters (JSON) and, with
            ``prometheus_client`` installed, ``GET {prefix}/metrics`` in Prometheus format.
            Both are computed off the event loop, at most once a second.
        health_guard: who may read them: a bearer token (``Authorization: Bearer <token>``)
            or ``guard(scope) -> bool``; refused requests get 401. Default: anyone.
        drain_timeout_s: how long shutdown waits for delivery; the rest stays queued.
        max_chars: longest string kept in a capture (longer ones are truncated).
        sample_rate, record_headers, opt_out_header: whole-session sampling, headers kept in
            ``data.headers`` (credentials never), the header that opts a request out.
        redact, redact_patterns, before_capture: redaction before anything is stored.
        feedback_secret, feedback_ttl_s, feedback_header: signed feedback tokens on captured
            2xx responses (``LABEL_STUDIO_FEEDBACK_SECRET``); ``feedback_in_body`` also adds the
            token to LangServe's ``metadata.feedback_tokens`` of ``/invoke`` and ``/batch`` answers.
        feedback_client_limit, feedback_target_limit, feedback_token_limit: feedback posts
            accepted per minute from one client address, onto one request or session, and with
            one token (``None``: no limit of that kind).
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
        user_header: str | None = "X-User-ID",
        session_header: str = "X-Session-ID",
        request_id_header: str = "X-Request-ID",
        identify: Identify | None = None,
        prefix: str = "/label-studio",
        health: bool = False,
        health_guard: HealthGuard | None = None,
        drain_timeout_s: float = 10.0,
        max_chars: int = DEFAULT_MAX_CHARS,
        sample_rate: float = 1.0,
        record_headers: Iterable[str] = (),
        opt_out_header: str = "X-Label-Studio-Capture",
        redact: bool | None = None,
        redact_patterns: Mapping[str, str] | None = None,
        before_capture: Callable[[Any], Any] | None = None,
        feedback_secret: str | None = None,
        feedback_ttl_s: float = DEFAULT_TTL_S,
        feedback_header: str = "X-Label-Studio-Feedback-Token",
        feedback_in_body: bool = False,
        feedback_client_limit: int | None = 30,
        feedback_target_limit: int | None = 5,
        feedback_token_limit: int | None = 5,
    ) -> None:
        self.app = app
        self.sample_rate = _sample_rate(sample_rate)
        settings = Settings.resolve(
            settings,
            type(self).__name__,
            url=url,
            api_key=api_key,
            state_dir=state_dir,
            outbox=outbox,
            redact=redact,
            redact_patterns=redact_patterns,
            before_capture=before_capture,
        )
        self.pipeline: Pipeline = get_pipeline(settings)
        register_metrics()
        self.routes = _routes(routes or {}, settings.url)
        self._default_route = _route(DEFAULT_ROUTE, default, settings.url) if default is not None else None
        self.default = self._default_route.project if self._default_route is not None else None
        self.record_headers = _recorded_headers(record_headers)
        self.opt_out_header = _header_key(opt_out_header)
        self._setup_feedback(
            feedback_secret or Settings.feedback_secret_from_env(),
            feedback_ttl_s,
            feedback_header,
            feedback_in_body,
            client_limit=feedback_client_limit,
            target_limit=feedback_target_limit,
            token_limit=feedback_token_limit,
        )
        self.user_header = _header_key(user_header) if user_header else None
        self.session_header = _header_key(session_header)
        self.request_id_header = _header_key(request_id_header)
        self.identify = identify
        self.prefix = prefix.rstrip("/")
        self.health = health
        self._health_view = _HealthView(self.pipeline, health_guard)
        self.drain_timeout_s = drain_timeout_s
        self.max_chars = max_chars
        #: Captures one request may make: a tenth of the hand-over buffer (1,000 by default).
        self._max_records = max(1, self.pipeline.settings.max_buffer // 10)
        self._matches: dict[str, tuple[str, _Route] | None] = {}

    def _setup_feedback(
        self,
        secret: str | None,
        ttl_s: float,
        header: str,
        in_body: bool,
        *,
        client_limit: int | None,
        target_limit: int | None,
        token_limit: int | None,
    ) -> None:
        """Feedback tokens and ``POST {prefix}/feedback`` when there is a secret; a warning when not."""
        self.feedback = FeedbackTokens(secret.encode(), ttl_s) if secret else None
        self.feedback_header = _header_key(header)
        self.feedback_in_body = in_body
        self._feedback_endpoint = (
            _FeedbackEndpoint(
                self.feedback,
                self.pipeline,
                {r.key: r for r in [*self.routes, self._default_route] if r is not None},
                client_limit=client_limit,
                target_limit=target_limit,
                token_limit=token_limit,
            )
            if self.feedback is not None
            else None
        )
        if self.feedback is None:
            logger.warning(
                "Label Studio feedback is disabled: set LABEL_STUDIO_FEEDBACK_SECRET (or feedback_secret=) "
                "to give each captured response a feedback token"
            )

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
            if self.health and method == "GET" and path == f"{self.prefix}/health":
                await self._health_view.health(scope, send)
                return
            if self.health and method == "GET" and path == f"{self.prefix}/metrics":
                await self._health_view.metrics(scope, send)
                return
            if path == f"{self.prefix}/feedback" and method == "POST":
                if self._feedback_endpoint is None:
                    await _send_json(send, 404, {"error": "feedback is not enabled on this server"})
                else:
                    await self._feedback_endpoint(scope, receive, send)
                return
        match = self._cached_match(path) if method == "POST" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        path_route, route = match
        # A repeated header counts by its first value, as Starlette's ``request.headers`` reads it.
        headers = dict(reversed(list(scope.get("headers") or ())))
        if headers.get(self.opt_out_header, b"").decode("latin-1").strip().lower() in OFF:
            self.pipeline.metrics.skip("opted_out")
            await self.app(scope, receive, send)
            return
        context = self._context(scope, headers, path_route, route.project)
        handler = CaptureHandler(self.pipeline, context, max_chars=self.max_chars, max_records=self._max_records)
        token = current_handler.set(handler)
        in_body = self.feedback_in_body and path.rsplit("/", 1)[-1] in ("invoke", "batch")
        try:
            streams = path.rsplit("/", 1)[-1] in _STREAMS
            await self.app(scope, receive, _Responder(self, send, handler, route, in_body, streams))
        finally:
            current_handler.reset(token)
            handler.finish()

    # -- routing ----------------------------------------------------------------------------
    def _cached_match(self, path: str) -> tuple[str, _Route] | None:
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

    def _match(self, path: str) -> tuple[str, _Route] | None:
        """The route (as recorded) and the captured route a POST to ``path`` belongs to, if any."""
        for route in self.routes:
            prefix = route.key
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                rest = path[len(prefix) :].strip("/").split("/")
                if _NOT_RUNS.intersection(rest) or rest[-1].endswith("_schema"):
                    return None
                return prefix, route
        if self._default_route is not None and not path.startswith(self.prefix + "/"):
            return path, self._default_route
        return None

    # -- identity ---------------------------------------------------------------------------
    def _context(self, scope: Scope, headers: Mapping[bytes, bytes], route: str, project: Project) -> CaptureContext:
        extra: dict[str, Any] = {}
        incoming = headers.get(self.request_id_header, b"").decode("latin-1")
        if _SAFE_ID.fullmatch(incoming):
            extra["client_request_id"] = incoming
        recorded = {h.decode(): value for h in self.record_headers if (value := _header(headers, h)) is not None}
        if recorded:
            extra["headers"] = recorded
        context = CaptureContext(
            project=project,
            route=route,
            request_id=new_id(),
            user_id=_header(headers, self.user_header) if self.user_header else None,
            session_id=_header(headers, self.session_header),
            extra=extra,
            sample_rate=project.sample_rate if project.sample_rate is not None else self.sample_rate,
        )
        context.identity = lambda: self._late_identity(scope)
        return context

    def _late_identity(self, scope: Scope) -> dict[str, Any]:
        """Identity known only once inner middleware ran: the authenticated user, ``identify``."""
        found: dict[str, Any] = {}
        name = authenticated_name(scope.get("user"))
        if name:
            found["user_id"] = name
        if self.identify is not None:
            for key, value in (self.identify(scope) or {}).items():
                cleaned = clean_id(value) if key in ("user_id", "session_id") else value
                if cleaned is not None:
                    found[key] = cleaned
        return found

    def _feedback_token(self, context: CaptureContext, route: _Route) -> str | None:
        """A token for a request whose 2xx answer starts now, if it is captured (in the sample)."""
        if self.feedback is None:
            return None
        try:
            late = context.identity() if context.identity is not None else {}
        except Exception:  # the user's identify failed: the capture will say so; no token
            logger.exception("identify failed: no feedback token for this response")
            return None
        user = late.get("user_id") or context.user_id
        session = late.get("session_id") or context.session_id
        request_id = context.request_id or ""
        if not sampled(session or request_id, context.sample_rate):
            return None
        return self.feedback.issue(
            request_id=request_id,
            route=route.key,
            deployment=route.deployment,
            user_id=user,
            session_id=session if route.project.mode == "chat" else None,
        )

    # -- lifespan -----------------------------------------------------------------------------
    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.pipeline.start()
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.pipeline.close, self.drain_timeout_s)
            return message

        return wrapped


#: LangServe endpoints whose response starts before the run does.
_STREAMS = frozenset({"stream", "stream_log", "stream_events"})


class _Responder:
    """The ``send`` of one captured request.

    At the response start it adds the server's request id and, when the status is 2xx and
    the request is captured (in the sample, and a LangChain run of it is recorded), a
    feedback token. With ``in_body`` it also puts the token into LangServe's
    ``metadata.feedback_tokens`` of a 200 JSON answer (buffering that answer, as ``/invoke``
    and ``/batch`` answers are anyway); everything else passes untouched.
    """

    def __init__(
        self,
        middleware: LabelStudioMiddleware,
        send: Send,
        handler: CaptureHandler,
        route: _Route,
        in_body: bool,
        streams: bool,
    ) -> None:
        self.middleware = middleware
        self.send = send
        self.handler = handler
        self.context = handler.context
        self.route = route
        self.in_body = in_body
        #: A LangServe stream: its response starts before its run does.
        self.streams = streams
        self.token: str | None = None
        self._held: Message | None = None
        self._chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            await self._start(message)
        elif kind == "http.response.body" and self._held is not None:
            await self._body(message)
        else:
            await self.send(message)

    async def _start(self, message: Message) -> None:
        mw = self.middleware
        status = int(message.get("status", 200))
        headers = list(message.get("headers") or [])
        present = {k.lower() for k, _ in headers}
        extra = [(mw.request_id_header, (self.context.request_id or "").encode())]
        if 200 <= status < 300 and self.handler.records_runs(expected=self.streams):  # no run: no task, no token
            self.token = mw._feedback_token(self.context, self.route)
            if self.token is not None:
                extra.append((mw.feedback_header, self.token.encode()))
        headers += [(k, v) for k, v in extra if k not in present]
        message = {**message, "headers": headers}
        if self.token is not None and self.in_body and status == 200 and _is_json(headers):
            self._held = message
            return
        await self.send(message)

    async def _body(self, message: Message) -> None:
        assert self._held is not None and self.token is not None
        self._chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = _add_langserve_token(b"".join(self._chunks), self.token, self.middleware.feedback)
        headers = [(k, v) for k, v in self._held.get("headers") or [] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send({**self._held, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    content_type = dict((k.lower(), v) for k, v in headers).get(b"content-type", b"")
    return content_type.startswith(b"application/json")


def _add_langserve_token(body: bytes, token: str, tokens: FeedbackTokens | None) -> bytes:
    """``body`` with the token in its ``metadata.feedback_tokens`` list(s), or as it was."""
    try:
        payload = json.loads(body)
        meta = payload["metadata"]  # /invoke: one list; /batch: one per input
        lists = (
            [meta["feedback_tokens"]]
            if "feedback_tokens" in meta
            else [r["feedback_tokens"] for r in meta["responses"]]
        )
        ttl_s = tokens.ttl_s if tokens is not None else DEFAULT_TTL_S
        expires = datetime.fromtimestamp(time.time() + ttl_s, UTC).isoformat()
        for entries in lists:
            entries.append({"key": "label_studio", "token_url": None, "token": token, "expires_at": expires})
        return json.dumps(payload).encode()
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return body  # not a LangServe answer with feedback tokens: sent as it was


class _FeedbackEndpoint:
    """``POST {prefix}/feedback`` with ``{"token", "score", "comment"}``: queued like any capture.

    Checked in order: the client's rate (every post counts), the body, the token (its
    signature, expiry, and that it was issued by this deployment for one of its routes),
    then the rates of the token and of its target (the request, or the user's session).
    """

    def __init__(
        self,
        tokens: FeedbackTokens,
        pipeline: Pipeline,
        routes: Mapping[str, _Route],
        *,
        client_limit: int | None,
        target_limit: int | None,
        token_limit: int | None,
    ) -> None:
        self.tokens = tokens
        self.pipeline = pipeline
        self.routes = dict(routes)
        self.per_client = RateLimiter(client_limit) if client_limit else None
        self.per_target = RateLimiter(target_limit) if target_limit else None
        self.per_token = RateLimiter(token_limit) if token_limit else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            record = await self._record(scope, receive)
        except FeedbackError as exc:
            extra = [(b"retry-after", b"60")] if exc.status == 429 else []
            await _send_json(send, exc.status, {"error": str(exc)}, extra)
            return
        if not self.pipeline.submit(record):
            await _send_json(send, 503, {"error": "feedback cannot be queued now; try again later"})
            return
        await _send_json(send, 202, {"status": "accepted"})

    async def _record(self, scope: Scope, receive: Receive) -> Any:
        client = scope.get("client")
        host = str(client[0]) if client else "unknown"
        if self.per_client is not None and not self.per_client.allow(host):
            raise FeedbackError(429, "too much feedback from this address; try again later")
        feedback = parse_feedback(await _read_body(receive, MAX_BODY_BYTES))
        claims = self.tokens.verify(feedback.token)
        route = self.routes.get(claims.route)
        if route is None or route.deployment != claims.deployment:  # the token is authentic: no secret here
            raise FeedbackError(403, "this feedback token was issued by another deployment")
        if self.per_token is not None and not self.per_token.allow(feedback.token.rsplit(".", 1)[-1]):
            raise FeedbackError(429, "too much feedback for this token; try again later")
        if self.per_target is not None and not self.per_target.allow(claims.target_key()):
            raise FeedbackError(429, "too much feedback for this answer; try again later")
        project = route.project.to_dict(datetime.fromtimestamp(claims.issued_at))
        return feedback_record(claims, project, feedback)


class _SharedView:
    """A slow view computed in one background thread, reused for up to ``HEALTH_CACHE_S``.

    Pollers that arrive while it is being computed wait for that computation (on their own
    event loop) instead of starting another; none of them blocks the loop. A reused view
    is one whose ``version`` (the pipeline's counters) has not moved since it was computed,
    so a capture or a delivery in this process shows at once.
    """

    def __init__(
        self,
        compute: Callable[[], Any],
        executor: Callable[[], concurrent.futures.Executor],
        version: Callable[[], Any],
    ) -> None:
        self._compute = compute
        self._executor = executor
        self._version = version
        self._value: Any = None
        self._value_version: Any = None
        self._expires = 0.0
        self._running: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future[Any]] = (
            weakref.WeakKeyDictionary()
        )

    async def get(self) -> Any:
        if time.monotonic() < self._expires and self._version() == self._value_version:
            return self._value
        loop = asyncio.get_running_loop()
        running = self._running.get(loop)
        if running is None:
            running = self._running[loop] = loop.run_in_executor(self._executor(), self._refresh)
            running.add_done_callback(lambda f: self._done(loop, f))
        return await asyncio.shield(running)

    def _refresh(self) -> Any:
        version = self._version()  # before: a change while computing makes the next poll compute again
        value = self._compute()
        self._value, self._value_version, self._expires = value, version, time.monotonic() + HEALTH_CACHE_S
        return value

    def _done(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self._running.pop(loop, None)
        if not future.cancelled():
            future.exception()  # retrieved, even when every poller has gone


def _counters(pipeline: Pipeline) -> tuple[Any, ...]:
    """What moves when this process captures, delivers or fails (read without a lock: a hint)."""
    m = pipeline.metrics
    skipped = sum(list(m.skipped.values()))
    counts = (m.captured, m.committed, m.delivered, m.updated, m.retried, m.dead_lettered, m.dropped)
    return (*counts, skipped, m.last_error_at)


class _HealthView:
    """``GET {prefix}/health`` and ``{prefix}/metrics``: off the event loop, cached, optionally guarded."""

    def __init__(self, pipeline: Pipeline, guard: HealthGuard | None) -> None:
        if isinstance(guard, str) and not guard:
            raise ValueError("health_guard must be a non-empty token or a callable")
        self.guard = guard
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool_pid = -1
        counters = functools.partial(_counters, pipeline)
        self._health = _SharedView(pipeline.health, self._executor, counters)
        self._metrics = _SharedView(_metrics_text, self._executor, counters)

    def _executor(self) -> concurrent.futures.Executor:
        """One thread of its own (per process), so a stuck outbox never holds the app's threads."""
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="label-studio-health")
            self._pool_pid = os.getpid()
        return self._pool

    async def allowed(self, scope: Scope) -> bool:
        guard = self.guard
        if guard is None:
            return True
        if isinstance(guard, str):
            return _bearer_matches(scope, guard.encode())
        try:
            verdict = guard(scope)
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except Exception:
            logger.exception("health_guard failed: the request is refused")
            return False
        return verdict is True

    async def health(self, scope: Scope, send: Send) -> None:
        if not await self.allowed(scope):
            await _refuse(send)
            return
        try:
            view = await self._health.get()
        except Exception as exc:
            await _send_json(send, 503, {"error": f"the health view failed: {type(exc).__name__}"})
            return
        await _send_json(send, 200, view)

    async def metrics(self, scope: Scope, send: Send) -> None:
        if not await self.allowed(scope):
            await _refuse(send)
            return
        try:
            body = await self._metrics.get()
        except Exception as exc:
            await _send_json(send, 503, {"error": f"the metrics failed: {type(exc).__name__}"})
            return
        if body is None:
            await _send_json(send, 404, {"error": "install prometheus_client for /metrics"})
            return
        headers = [
            (b"content-type", b"text/plain; version=0.0.4; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _metrics_text() -> bytes | None:
    """The Prometheus page, or None without ``prometheus_client``."""
    try:
        return metrics_text()
    except ImportError:
        return None


def _bearer_matches(scope: Scope, expected: bytes) -> bool:
    """Whether the request's ``Authorization: Bearer <token>`` is ``expected`` (constant time)."""
    value = next((v for k, v in scope.get("headers") or [] if k.lower() == b"authorization"), b"")
    scheme, _, given = value.strip().partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), expected)


async def _refuse(send: Send) -> None:
    await _send_json(send, 401, {"error": "not allowed"}, [(b"www-authenticate", b"Bearer")])


def _sample_rate(rate: float) -> float:
    """``rate`` if it is a share of sessions (0 to 1); ValueError otherwise."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"sample_rate must be between 0 and 1, not {rate!r}")
    return rate


def _route(key: str, project: ProjectLike, url: str) -> _Route:
    """A captured route: its key, its project, and the deployment id its feedback tokens name."""
    resolved = as_project(project)
    return _Route(key, resolved, deployment_id(url, key, resolved))


def _routes(routes: Mapping[str, ProjectLike], url: str) -> list[_Route]:
    """The captured routes of ``routes`` (prefix -> project), the longest prefix first, so that
    the first match is the most specific; prefixes lose their trailing ``/`` (``/`` stays)."""
    found = [_route(prefix.rstrip("/") or "/", project, url) for prefix, project in routes.items()]
    return sorted(found, key=lambda route: len(route.key), reverse=True)


def _header_key(name: str) -> bytes:
    """A header name as ASGI scopes carry it (lower case, bytes)."""
    return name.lower().encode()


def _recorded_headers(names: Iterable[str]) -> list[bytes]:
    """The headers ``record_headers`` names, without those that may hold credentials."""
    return [_header_key(name) for name in names if not _is_secret_header(name.lower())]


#: Headers never recorded, whatever ``record_headers`` says.
_SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
_SECRET_WORDS = ("auth", "cookie", "token", "secret", "key", "password", "session")


def _is_secret_header(name: str) -> bool:
    return name in _SECRET_HEADERS or any(word in name for word in _SECRET_WORDS)


async def _read_body(receive: Receive, limit: int) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise FeedbackError(400, "the client went away")
        body += message.get("body", b"")
        if len(body) > limit:
            raise FeedbackError(413, f"the body is larger than {limit} bytes")
        if not message.get("more_body"):
            return bytes(body)


def _path(scope: Scope) -> str:
    path = scope.get("path") or "/"
    root = scope.get("root_path") or ""
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


def _header(headers: Mapping[bytes, bytes], name: bytes) -> str | None:
    """A header's value as a printable id (control and format characters removed), or None."""
    return clean_id(headers.get(name, b"").decode("utf-8", "replace"))


async def _send_json(send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = json.dumps(body, default=str).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
