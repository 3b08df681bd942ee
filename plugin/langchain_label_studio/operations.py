"""What operators ask of a deployment: the state of its outboxes, and whether its setup works."""

from __future__ import annotations

import copy
import importlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .client import AuthError, LabelStudioClient, LabelStudioError, is_personal_access_token
from .label_config import check_mode, parse_layout
from .outbox import Outbox, SQLiteOutbox, sqlite_outbox_path
from .pipeline import Pipeline
from .project import Project, as_project
from .settings import Settings
from .urls import public_url, strip_credentials


class AppImportError(ValueError):
    """The ``--app`` of ``check`` could not be imported."""


def outboxes(settings: Settings, only_configured: bool = False) -> list[Outbox]:
    """The outboxes of a deployment, one per Label Studio server: the SQLite files in the
    state directory, or the servers' rows in the PostgreSQL outbox. With ``only_configured``,
    only that of the configured server (``settings.url``), if it has one."""
    url = settings.url or ""
    if settings.outbox:
        from .outbox.postgres import PostgresOutbox

        schema = settings.outbox_schema or "label_studio"
        servers = PostgresOutbox.servers(settings.outbox, schema)
        return [
            PostgresOutbox(settings.outbox, server, schema=schema)
            for server in servers
            if not only_configured or server == public_url(url)
        ]
    paths = sorted(Path(settings.state_dir or "").expanduser().glob("outbox-*.db"))
    if only_configured:
        paths = [p for p in paths if p == sqlite_outbox_path(settings.state_dir or "", url)]
    return [SQLiteOutbox(path) for path in paths]


def is_configured(outbox: Outbox, settings: Settings) -> bool:
    """Whether ``outbox`` is the configured server's: by its file name (SQLite) or its server
    column (PostgreSQL), never by the URL recorded inside it, which anyone who can write the
    file could change."""
    if isinstance(outbox, SQLiteOutbox):
        return outbox.path == sqlite_outbox_path(settings.state_dir or "", settings.url or "")
    return getattr(outbox, "server", None) == public_url(settings.url)


def configured_outbox(settings: Settings) -> Outbox:
    """The outbox of the configured Label Studio server (``settings.url``).

    Raises:
        ValueError: it has none (naming where it looked).
    """
    found = outboxes(settings, only_configured=True)
    if not found:
        raise ValueError(
            f"no outbox for {public_url(settings.url)} in {outbox_home(settings)}; name its server with --url or "
            "LABEL_STUDIO_URL (`langchain-label-studio status` lists the outboxes)"
        )
    return found[0]


def server_of(outbox: Outbox) -> str | None:
    """The Label Studio URL recorded in an outbox (for people: not trusted to pick a server)."""
    return outbox.meta().get("label_studio_url") or getattr(outbox, "server", None)


def outbox_home(settings: Settings) -> str:
    """Where :func:`outboxes` looks, for messages."""
    if settings.outbox:
        return f"{public_url(settings.outbox)} (schema {settings.outbox_schema})"
    return str(settings.state_dir)


def probe(url: str, api_key: str | None) -> dict[str, Any]:
    """Whether Label Studio answers, and whether the token is accepted (and its kind)."""
    client = LabelStudioClient(url, api_key, timeout=10)
    report: dict[str, Any] = {"url": public_url(url), "reachable": client.health(), "token": None}
    if not api_key:
        report["token"] = "missing: set LABEL_STUDIO_API_KEY"
    elif report["reachable"]:
        kind = "Personal Access Token" if is_personal_access_token(api_key) else "legacy token"
        try:
            user = client.whoami()
            report["token"] = f"valid {kind} of {user.get('email') or user.get('username')}"
        except AuthError as exc:
            report["token"] = f"refused {kind}: {exc}"
        except LabelStudioError as exc:
            report["token"] = f"unknown: {strip_credentials(str(exc))}"
    client.close()
    return report


def outbox_report(outbox: Outbox, settings: Settings) -> dict[str, Any]:
    """One outbox's state. Only the configured server's outbox has its server probed (with the
    configured URL and key); another server's is listed, never contacted."""
    stats, meta = outbox.stats(), outbox.meta()
    recorded = public_url(server_of(outbox)) or None
    mine = is_configured(outbox, settings)
    last_at = float(meta["last_error_at"]) if "last_error_at" in meta else None
    return {
        "outbox": outbox.location,
        "label_studio_url": public_url(settings.url) if mine else recorded or "?",
        "recorded_url": recorded,
        "configured": mine,
        "pending": stats.pending,
        "by_project": stats.by_project,
        "oldest_pending_s": stats.oldest_age_s,
        "dead_letters": stats.dead_letters,
        "last_error": strip_credentials(meta["last_error"]) if meta.get("last_error") else None,
        "last_error_age_s": None if last_at is None else time.time() - last_at,
        "label_studio": probe(settings.url or "", settings.api_key) if mine else None,
    }


def status(settings: Settings, only_configured: bool = False) -> list[dict[str, Any]]:
    """Per outbox (or only the configured server's): its server, pending records per project,
    oldest age, dead letters, last error; reachability and token of the configured server."""
    reports = []
    for outbox in outboxes(settings, only_configured):
        try:
            reports.append(outbox_report(outbox, settings))
        finally:
            outbox.close()
    return reports


@dataclass(frozen=True)
class Retried:
    """What :func:`retry_dead_letters` did: dead letters put back in the queue, and records
    delivered (None when it did not deliver: nothing requeued, or ``deliver=False``)."""

    requeued: int
    delivered: int | None


def retry_dead_letters(
    settings: Settings,
    outbox: Outbox,
    seqs: list[int] | None = None,
    *,
    deliver: bool = True,
    timeout: float = 120.0,
    client: LabelStudioClient | None = None,
    on_requeued: Callable[[int], None] | None = None,
) -> Retried:
    """Put dead letters of the configured server's ``outbox`` back in its queue (those numbered
    ``seqs``, or all), then, with ``deliver``, deliver that outbox to that server
    (:func:`deliver_outbox`). ``on_requeued(n)`` hears how many went back before delivery starts.

    Raises:
        ValueError: not everything was delivered within ``timeout`` seconds, or some records
            were refused again (with the counts and the last error).
    """
    requeued = outbox.requeue_dead_letters(seqs)
    if on_requeued is not None:
        on_requeued(requeued)
    if not requeued or not deliver:
        return Retried(requeued, None)
    health = deliver_outbox(settings, timeout, client=client)
    return Retried(requeued, int(health["delivered"]))


def deliver_outbox(settings: Settings, timeout: float, *, client: LabelStudioClient | None = None) -> dict[str, Any]:
    """Deliver the configured server's outbox to that server (``settings.url``, or ``client``)
    until it is empty; returns the health of the pipeline that delivered it.

    Raises:
        ValueError: not everything was delivered within ``timeout`` seconds, or some records
            were refused again (with the counts and the last error).
    """
    settings = copy.copy(settings)
    settings.deliver = True
    pipeline = Pipeline(settings, client=client)
    try:
        delivered = pipeline.flush(timeout)
        health = pipeline.health()
    finally:
        pipeline.close(timeout=1)
    if not delivered or health["dead_lettered"]:
        raise ValueError(
            f"not all delivered: {health['pending']} pending, {health['dead_lettered']} "
            f"dead-lettered again; last error: {health['last_error']}"
        )
    return health


def load_app(target: str) -> Any:
    """The ASGI app named ``module:attribute`` (attribute ``app`` by default), imported as uvicorn
    does: with the current directory first on ``sys.path``.

    Raises:
        AppImportError: the target is malformed, the module cannot be imported (whatever it
            raised), or it has no such attribute.
    """
    module_name, _, attribute = target.partition(":")
    attribute = attribute or "app"
    if not all(part.isidentifier() for part in (*module_name.split("."), *attribute.split("."))):
        raise AppImportError(f"--app {target!r}: expected module:attribute, e.g. example_app.app:app")
    cwd = os.getcwd()
    if not sys.path or sys.path[0] not in ("", cwd):
        sys.path.insert(0, cwd)
    try:
        app: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise AppImportError(f"cannot import {module_name} (from {cwd}): {type(exc).__name__}: {exc}") from exc
    try:
        for name in attribute.split("."):
            app = getattr(app, name)
    except AttributeError:
        raise AppImportError(f"module {module_name} has no attribute {attribute!r}") from None
    return app


def projects_of_app(target: str) -> list[Project]:
    """The projects a ``module:attribute`` ASGI app maps its routes to (through the middleware)."""
    from .middleware import LabelStudioMiddleware

    app = load_app(target)
    found: list[Project] = []
    for middleware in getattr(app, "user_middleware", []):
        if middleware.cls is LabelStudioMiddleware:
            options = middleware.kwargs
            found += [as_project(p) for p in (options.get("routes") or {}).values()]
            if options.get("default") is not None:
                found.append(as_project(options["default"]))
    if not found:
        raise ValueError(f"{target} has no LabelStudioMiddleware with routes")
    return found


def check(settings: Settings, projects: list[Project]) -> list[str]:
    """Problems with the setup, each said plainly; an empty list means all is well."""
    problems = []
    report = probe(settings.url or "", settings.api_key)
    if not report["reachable"]:
        return [f"Label Studio does not answer at {public_url(settings.url)} (GET /health failed)"]
    if not str(report["token"]).startswith("valid"):
        return [f"token {report['token']}"]
    client = LabelStudioClient(settings.url or "", settings.api_key)
    try:
        for project in projects:
            title = project.title()
            found = client.get_project(project.id) if project.id is not None else client.find_project(title)
            if found is None:
                continue  # created with the right config on first delivery
            try:
                check_mode(parse_layout(found.get("label_config") or ""), project.mode)
            except ValueError as exc:
                problems.append(
                    f"project {found.get('title')!r} (id {found['id']}) cannot take {project.mode} captures: {exc}"
                )
    except LabelStudioError as exc:
        problems.append(strip_credentials(str(exc)))
    finally:
        client.close()
    return problems
