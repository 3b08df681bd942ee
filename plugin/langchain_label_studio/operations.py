"""What operators ask of a deployment: the state of its outboxes, and whether its setup works."""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any

from .client import AuthError, LabelStudioClient, LabelStudioError, is_personal_access_token
from .label_config import check_mode, parse_layout
from .outbox import Outbox, SQLiteOutbox
from .project import Project
from .settings import Settings


def outboxes(settings: Settings) -> list[Outbox]:
    """The outboxes of a deployment, one per Label Studio server: the SQLite files in the
    state directory, or the servers' rows in the PostgreSQL outbox."""
    if settings.outbox:
        from .outbox.postgres import PostgresOutbox

        schema = settings.outbox_schema or "label_studio"
        return [
            PostgresOutbox(settings.outbox, server, schema=schema)
            for server in PostgresOutbox.servers(settings.outbox, schema)
        ]
    return [SQLiteOutbox(path) for path in sorted(Path(settings.state_dir or "").glob("outbox-*.db"))]


def server_of(outbox: Outbox) -> str | None:
    """The Label Studio URL an outbox's records are for."""
    return outbox.meta().get("label_studio_url") or getattr(outbox, "server", None)


def outbox_home(settings: Settings) -> str:
    """Where :func:`outboxes` looks, for messages."""
    if settings.outbox:
        from .outbox.postgres import redacted

        return f"{redacted(settings.outbox)} (schema {settings.outbox_schema})"
    return str(settings.state_dir)


def probe(url: str, api_key: str | None) -> dict[str, Any]:
    """Whether Label Studio answers, and whether the token is accepted (and its kind)."""
    client = LabelStudioClient(url, api_key, timeout=10)
    report: dict[str, Any] = {"url": url, "reachable": client.health(), "token": None}
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
            report["token"] = f"unknown: {exc}"
    client.close()
    return report


def status(settings: Settings) -> list[dict[str, Any]]:
    """Per outbox: its server, pending records per project, oldest age, dead letters, last error."""
    reports = []
    for outbox in outboxes(settings):
        stats, meta = outbox.stats(), outbox.meta()
        url = server_of(outbox) or "?"
        last_at = float(meta["last_error_at"]) if "last_error_at" in meta else None
        reports.append(
            {
                "outbox": outbox.location,
                "label_studio_url": url,
                "pending": stats.pending,
                "by_project": stats.by_project,
                "oldest_pending_s": stats.oldest_age_s,
                "dead_letters": stats.dead_letters,
                "last_error": meta.get("last_error"),
                "last_error_age_s": None if last_at is None else time.time() - last_at,
                "label_studio": probe(url, settings.api_key) if url != "?" else None,
            }
        )
        outbox.close()
    return reports


def projects_of_app(target: str) -> list[Project]:
    """The projects a ``module:attribute`` ASGI app maps its routes to (through the middleware)."""
    from .middleware import LabelStudioMiddleware, as_project

    module_name, _, attribute = target.partition(":")
    app = getattr(importlib.import_module(module_name), attribute or "app")
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
        return [f"Label Studio does not answer at {settings.url} (GET /health failed)"]
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
        problems.append(str(exc))
    finally:
        client.close()
    return problems
