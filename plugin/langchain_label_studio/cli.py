"""The ``langchain-label-studio`` command."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence

from . import local, operations
from .client import LabelStudioError
from .export import FORMATS, POLICIES, export
from .outbox import Outbox
from .pipeline import Pipeline
from .project import Project
from .settings import Settings


def _print_env(server: local.LocalServer, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps({**server.env(), "username": server.username, "password": server.password}))
        return
    print(f"# Label Studio {local.LABEL_STUDIO_VERSION} at {server.url} (pid {server.pid}, data {server.data_dir})")
    print(f"# log in as {server.username} / {server.password}")
    for key, value in server.env().items():
        print(f"export {key}={shlex.quote(value)}")


def _local_up(args: argparse.Namespace) -> int:
    server = local.up(args.port, args.data_dir, timeout=args.timeout)
    _print_env(server, args.format)
    return 0


def _local_down(args: argparse.Namespace) -> int:
    stopped = local.down(args.port, args.data_dir)
    print("stopped" if stopped else "not running")
    return 0


def _local_status(args: argparse.Namespace) -> int:
    server = local.status(args.port, args.data_dir)
    if server is None:
        print("not running")
        return 1
    _print_env(server, args.format)
    return 0


def _export(args: argparse.Namespace) -> int:
    rows = export(
        args.project,
        args.format,
        args.out,
        url=args.url,
        min_rating=args.min_rating,
        since=args.since,
        until=args.until,
        route=args.route,
        user=args.user,
        policy=args.policy,
        label_threshold=args.label_threshold,
    )
    print(f"wrote {rows} row(s) to {'stdout' if args.out == '-' else args.out}", file=sys.stderr)
    return 0


def _add_export(commands: argparse._SubParsersAction) -> None:
    help_text = "write the annotated tasks of a project as a JSONL training dataset (TRL formats)"
    p = commands.add_parser("export", help=help_text, description=help_text)
    p.add_argument("--project", required=True, help="project title or id")
    p.add_argument("--format", required=True, choices=FORMATS, help="sft, preference (edited answers) or rating")
    p.add_argument("--out", required=True, help="output file (- for stdout)")
    p.add_argument("--min-rating", type=float, default=None, help="leave out tasks rated lower (or not rated)")
    p.add_argument("--since", default=None, help="captured at or after this ISO 8601 time")
    p.add_argument("--until", default=None, help="captured before this ISO 8601 time")
    p.add_argument("--route", default=None, help="only captures of this route, e.g. /chat")
    p.add_argument("--user", default=None, help="only captures of this user id")
    p.add_argument(
        "--policy", choices=POLICIES, default="latest", help="which annotation of a task to use (default %(default)s)"
    )
    p.add_argument(
        "--label-threshold", type=float, default=None, help="rating format: label is rating >= this (default 4 of 5)"
    )
    p.add_argument(
        "--url", default=None, help="Label Studio URL (default $LABEL_STUDIO_URL); key: $LABEL_STUDIO_API_KEY"
    )
    p.set_defaults(func=_export)


# -- operations: status, dead letters, check -------------------------------------------------
def _settings(args: argparse.Namespace) -> Settings:
    return Settings(url=getattr(args, "url", None), state_dir=args.state_dir, outbox=getattr(args, "outbox", None))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return (
        f"{seconds:.0f} s"
        if seconds < 120
        else f"{seconds / 60:.0f} min"
        if seconds < 7200
        else f"{seconds / 3600:.1f} h"
    )


def _status(args: argparse.Namespace) -> int:
    reports = operations.status(_settings(args))
    if args.format == "json":
        print(json.dumps(reports, indent=2))
        return 0
    if not reports:
        print(f"no outbox in {operations.outbox_home(_settings(args))}")
        return 0
    for r in reports:
        ls = r["label_studio"] or {}
        print(f"outbox {r['outbox']}")
        print(
            f"  Label Studio   {r['label_studio_url']}: {'reachable' if ls.get('reachable') else 'NOT reachable'}"
            f", token {ls.get('token') or 'not checked'}"
        )
        print(f"  pending        {r['pending']} (oldest {_age(r['oldest_pending_s'])})")
        for project, count in sorted(r["by_project"].items()):
            print(f"    {project.split(':', 1)[1]:30} {count}")
        print(f"  dead letters   {r['dead_letters']}")
        last = r["last_error"]
        print(f"  last error     {last + ' (' + _age(r['last_error_age_s']) + ' ago)' if last else '-'}")
    return 0


def _outbox(args: argparse.Namespace) -> Outbox:
    settings = _settings(args)
    found = operations.outboxes(settings)
    if args.url:
        found = [o for o in found if operations.server_of(o) == args.url.rstrip("/")]
    if len(found) != 1:
        where = operations.outbox_home(settings)
        raise ValueError(
            f"{len(found)} outboxes in {where} match; name the server with --url" if found else f"no outbox in {where}"
        )
    return found[0]


def _dead_letters(args: argparse.Namespace) -> int:
    outbox = _outbox(args)
    action = args.dl_command
    if action == "list":
        rows = outbox.dead_letters()
        for seq, record, reason, at in rows:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
            print(f"{seq:6}  {when}  {record.project.get('title') or record.project.get('id')}  {reason[:160]}")
        print(f"{len(rows)} dead letter(s)")
    elif action == "show":
        match = [row for row in outbox.dead_letters() if row[0] == args.seq]
        if not match:
            raise ValueError(f"no dead letter {args.seq}")
        seq, record, reason, at = match[0]
        print(
            json.dumps(
                {"seq": seq, "reason": reason, "failed_at": at, "record": json.loads(record.to_json())},
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        seqs = None if args.all else args.seqs
        if not seqs and not args.all:
            raise ValueError("name dead letters by number, or pass --all")
        if action == "drop":
            print(f"dropped {outbox.drop_dead_letters(seqs)} dead letter(s)")
            return 0
        moved = outbox.requeue_dead_letters(seqs)
        print(f"{moved} dead letter(s) back in the queue")
        if moved and not args.no_deliver:
            url = operations.server_of(outbox)
            settings = _settings(args)
            pipeline = Pipeline(Settings(url=url, state_dir=settings.state_dir, outbox=settings.outbox))
            delivered = pipeline.flush(args.timeout)
            health = pipeline.health()
            pipeline.close(timeout=1)
            if not delivered or health["dead_lettered"]:
                raise ValueError(
                    f"not all delivered: {health['pending']} pending, {health['dead_lettered']} "
                    f"dead-lettered again; last error: {health['last_error']}"
                )
            print(f"delivered {health['delivered']} record(s) to {url}")
    return 0


def _deliver(args: argparse.Namespace) -> int:
    """Deliver the outbox until stopped (SIGTERM or Ctrl-C), for apps run with delivery off."""
    settings = _settings(args)
    settings.deliver = True
    pipeline = Pipeline(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    pipeline.start()
    print(f"delivering {pipeline.outbox.location} to {settings.url} (stop with Ctrl-C or SIGTERM)", file=sys.stderr)

    def report(prefix: str = "") -> None:
        health = pipeline.health()
        print(
            f"{prefix}pending {health['pending']}, delivered {health['delivered']}, "
            f"dead-lettered {health['dead_lettered']}"
            + (f", last error: {health['last_error']}" if health["last_error"] else ""),
            file=sys.stderr,
        )

    while not stop.wait(args.report_every or None):
        report()
    pipeline.close(timeout=args.drain_timeout)
    report("stopped: ")
    return 0


def _check(args: argparse.Namespace) -> int:
    projects = operations.projects_of_app(args.app) if args.app else []
    if args.project:
        projects.append(Project(name=args.project, mode=args.mode))
    settings = Settings(url=args.url, state_dir=None)
    problems = operations.check(settings, projects)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        return 1
    names = ", ".join(p.title() for p in projects) or "no projects named"
    print(f"ok: Label Studio at {settings.url} answers, the token is accepted; checked {names}")
    return 0


def _add_operations(commands: argparse._SubParsersAction) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--state-dir", default=None, help="outbox directory (default $LABEL_STUDIO_STATE_DIR or ~/.local/state/...)"
        )
        p.add_argument("--url", default=None, help="only the outbox of this Label Studio URL")
        p.add_argument(
            "--outbox", default=None, help="a PostgreSQL outbox URL (default $LABEL_STUDIO_OUTBOX_URL) instead"
        )

    help_text = "outbox depth per project, oldest pending, dead letters, last error, Label Studio reachability"
    p = commands.add_parser("status", help=help_text, description=help_text)
    common(p)
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=_status)

    help_text = "inspect, replay or drop the records Label Studio refused"
    dl = commands.add_parser("dead-letters", help=help_text, description=help_text)
    actions = dl.add_subparsers(dest="dl_command", required=True, metavar="ACTION")
    p = actions.add_parser("list", help="one line per dead letter", description="one line per dead letter")
    common(p)
    p = actions.add_parser("show", help="one dead letter in full", description="one dead letter in full")
    common(p)
    p.add_argument("seq", type=int)
    for name, text in (("retry", "put dead letters back in the queue and deliver them"), ("drop", "delete them")):
        p = actions.add_parser(name, help=text, description=text)
        common(p)
        p.add_argument("seqs", type=int, nargs="*", help="dead letter numbers (see list)")
        p.add_argument("--all", action="store_true", help="all dead letters")
        if name == "retry":
            p.add_argument("--no-deliver", action="store_true", help="only requeue; a running app delivers them")
            p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for delivery")
    dl.set_defaults(func=_dead_letters)

    help_text = "deliver the outbox to Label Studio until stopped (for apps run with LABEL_STUDIO_DELIVERY=off)"
    p = commands.add_parser("deliver", help=help_text, description=help_text)
    common(p)
    p.add_argument("--report-every", type=float, default=60.0, help="seconds between progress lines (0: none)")
    p.add_argument("--drain-timeout", type=float, default=10.0, help="seconds to finish delivery when stopped")
    p.set_defaults(func=_deliver)

    help_text = "check the URL, the token and each project's label config against its mode"
    p = commands.add_parser("check", help=help_text, description=help_text)
    p.add_argument(
        "--app", help="module:attribute of an ASGI app using LabelStudioMiddleware, e.g. example_app.app:app"
    )
    p.add_argument("--project", help="also check this project (name or title)")
    p.add_argument("--mode", choices=["prompt", "chat"], default="prompt", help="mode of --project")
    p.add_argument("--url", default=None, help="Label Studio URL (default $LABEL_STUDIO_URL)")
    p.set_defaults(func=_check)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="langchain-label-studio", description="Capture LangChain traffic into Label Studio."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    local_parser = commands.add_parser("local", help="run a local Label Studio for development and tests")
    local_commands = local_parser.add_subparsers(dest="local_command", required=True, metavar="ACTION")
    actions: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
        "up": ("install (once) and start Label Studio, print its URL and API key", _local_up),
        "down": ("stop it", _local_down),
        "status": ("say whether it runs, and print its URL and API key", _local_status),
    }
    for name, (help_text, func) in actions.items():
        p = local_commands.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--port", type=int, default=local.DEFAULT_PORT, help="port (default %(default)s)")
        p.add_argument("--data-dir", default=None, help="data directory (default ~/.local/share/...-PORT)")
        if name != "down":
            p.add_argument("--format", choices=["shell", "json"], default="shell", help="output format")
        if name == "up":
            p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for /health")
        p.set_defaults(func=func)
    _add_export(commands)
    _add_operations(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; errors are one line on stderr and a non-zero exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (local.LocalError, LabelStudioError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
