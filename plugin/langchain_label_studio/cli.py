"""The ``langchain-label-studio`` command."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import local, operations
from .client import LabelStudioError
from .export import FORMATS, MANIFEST_SUFFIX, POLICIES, export_dataset, manifest_location
from .outbox import Outbox, open_outbox
from .pipeline import Pipeline
from .project import Project
from .record import CaptureRecord
from .settings import DEFAULT_URL, Settings
from .urls import public_url, strip_credentials

#: The exit code of a command whose standard output was closed early (128 + SIGPIPE), as a
#: shell reports it for Unix tools.
EXIT_BROKEN_PIPE = 141


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def one_line(text: str) -> str:
    """``text`` on one line (a message that spans lines, from a library or a server)."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def env_lines(server: local.LocalServer, password_path: Path) -> list[str]:
    """What ``local up`` prints: a comment on the server and how to log in, then the lines that
    point the plugin at it. The password itself is never printed, only the file holding it."""
    return [
        f"# Label Studio {local.LABEL_STUDIO_VERSION} at {server.url} "
        f"(listening on {server.host}, pid {server.pid}, data {server.data_dir}, database {server.database_label})",
        f"# log in as {server.username} with the password in {password_path}",
        *(f"export {key}={shlex.quote(value)}" for key, value in server.env().items()),
    ]


def env_json(server: local.LocalServer, password_path: Path) -> dict[str, str]:
    """``local up --format json``: the environment, the login and the password's file."""
    return {
        **server.env(),
        "username": server.username,
        "password_file": str(password_path),
        "host": server.host,
        "database": server.database_label,
    }


def _print_env(server: local.LocalServer, fmt: str) -> None:
    path = local.password_file(server)
    if fmt == "json":
        print(json.dumps(env_json(server, path)))
    else:
        print("\n".join(env_lines(server, path)))


def _local_up(args: argparse.Namespace) -> int:
    server = local.up(args.port, args.data_dir, host=args.host, timeout=args.timeout, database=args.database)
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
    manifest = export_dataset(
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
        manifest=args.manifest,
        since_last=args.since_last,
        cursor=args.cursor,
    )
    print(export_summary(args, manifest), file=sys.stderr)
    return 0


def export_summary(args: argparse.Namespace, manifest: dict[str, Any]) -> str:
    """The one line an export prints: rows written, where, since which export, where its manifest is."""
    line = f"wrote {manifest['counts']['rows']} row(s) to {'stdout' if args.out == '-' else args.out}"
    incremental = manifest.get("incremental")
    if incremental is not None:
        previous = incremental.get("previous")
        line += f", new or changed since {previous['file']}" if previous else ", everything (no earlier export)"
    where = manifest_location(args.out, args.manifest)
    return f"{line}; manifest {where}" if where is not None else line


def _add_export(commands: argparse._SubParsersAction[Any]) -> None:
    help_text = "write the annotated tasks of a project as a JSONL training dataset (TRL formats)"
    p = commands.add_parser("export", help=help_text, description=help_text)
    p.add_argument("--project", required=True, help="project title or id")
    p.add_argument("--format", required=True, choices=FORMATS, help="sft, preference (edited answers) or rating")
    p.add_argument("--out", required=True, help="output file (- for stdout)")
    p.add_argument("--min-rating", type=_number, default=None, help="leave out tasks rated lower (or not rated)")
    p.add_argument("--since", default=None, help="captured at or after this ISO 8601 time")
    p.add_argument("--until", default=None, help="captured before this ISO 8601 time")
    p.add_argument("--route", default=None, help="only captures of this route, e.g. /chat")
    p.add_argument("--user", default=None, help="only captures of this user id")
    p.add_argument(
        "--policy", choices=POLICIES, default="latest", help="which annotation of a task to use (default %(default)s)"
    )
    p.add_argument(
        "--label-threshold", type=_number, default=None, help="rating format: label is rating >= this (default 4 of 5)"
    )
    p.add_argument(
        "--manifest",
        default=None,
        metavar="PATH",
        help=f"where to write the manifest (default: OUT{MANIFEST_SUFFIX}; none for --out - unless given)",
    )
    versions = p.add_mutually_exclusive_group()
    versions.add_argument(
        "--since-last",
        action="store_true",
        help="only annotations new or changed since the latest export of this project, format and options "
        "whose manifest is in the same directory",
    )
    versions.add_argument(
        "--cursor",
        default=None,
        metavar="FILE",
        help="only annotations new or changed since the export that last wrote FILE; FILE is updated",
    )
    p.add_argument(
        "--url", default=None, help="Label Studio URL (default $LABEL_STUDIO_URL); key: $LABEL_STUDIO_API_KEY"
    )
    p.set_defaults(func=_export)


# -- operations: status, dead letters, check -------------------------------------------------
def _settings(args: argparse.Namespace) -> Settings:
    """The configured server (``--url``, else ``LABEL_STUDIO_URL``, else the default), outboxes, key."""
    return Settings(url=getattr(args, "url", None), state_dir=args.state_dir, outbox=getattr(args, "outbox", None))


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


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


def server_line(report: dict[str, Any]) -> str:
    """The Label Studio line of one outbox: reachability and token of the configured server;
    another server's is never contacted."""
    ls = report["label_studio"]
    if ls is None:
        return f"  Label Studio   {report['label_studio_url']}: not checked: another server"
    reachable = "reachable" if ls.get("reachable") else "NOT reachable"
    return f"  Label Studio   {report['label_studio_url']}: {reachable}, token {ls.get('token') or 'not checked'}"


def status_lines(reports: list[dict[str, Any]], url: str, home: str) -> list[str]:
    """``status`` as text: per outbox its server, pending records per project, dead letters, last error."""
    lines = []
    for r in reports:
        lines += [f"outbox {r['outbox']}", server_line(r)]
        if r["configured"] and r["recorded_url"] and r["recorded_url"] != r["label_studio_url"]:
            lines.append(f"  recorded URL   {r['recorded_url']} (ignored: only {url} is contacted)")
        lines.append(f"  pending        {r['pending']} (oldest {_age(r['oldest_pending_s'])})")
        lines += [f"    {project.split(':', 1)[-1]:30} {count}" for project, count in sorted(r["by_project"].items())]
        lines.append(f"  dead letters   {r['dead_letters']}")
        last = r["last_error"]
        lines.append(f"  last error     {last + ' (' + _age(r['last_error_age_s']) + ' ago)' if last else '-'}")
    if not any(r["configured"] for r in reports):
        lines.append(f"no outbox for {url} in {home}")
    return lines


def _status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    reports = operations.status(settings, only_configured=bool(args.url))
    if args.format == "json":
        _print_json(reports)
    else:
        print("\n".join(status_lines(reports, public_url(settings.url), operations.outbox_home(settings))))
    return 0


def dead_letter_json(seq: int, record: CaptureRecord, reason: str, at: float, full: bool = False) -> dict[str, Any]:
    """One dead letter for ``--json``: the whole record with ``full``, else its project and capture id."""
    row: dict[str, Any] = {"seq": seq, "reason": reason, "failed_at": at}
    if full:
        return {**row, "record": json.loads(record.to_json())}
    project = record.project.get("title") or record.project.get("id")
    return {**row, "project": project, "capture_id": record.capture_id}


def dead_letter_line(seq: int, record: CaptureRecord, reason: str, at: float) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
    return f"{seq:6}  {when}  {record.project.get('title') or record.project.get('id')}  {one_line(reason)[:160]}"


def _dead_letters(args: argparse.Namespace) -> int:
    """Dead letters of the configured server's outbox; ``retry`` delivers to that server only."""
    settings = _settings(args)
    outbox = operations.configured_outbox(settings)
    try:
        return _dead_letter_action(args, settings, outbox)
    finally:
        outbox.close()


def _dead_letter_action(args: argparse.Namespace, settings: Settings, outbox: Outbox) -> int:
    action = args.dl_command
    if action == "list":
        rows = outbox.dead_letters()
        if args.format == "json":
            _print_json([dead_letter_json(*row) for row in rows])
        else:
            print("\n".join([*(dead_letter_line(*row) for row in rows), f"{len(rows)} dead letter(s)"]))
        return 0
    if action == "show":
        match = [row for row in outbox.dead_letters() if row[0] == args.seq]
        if not match:
            raise ValueError(f"no dead letter {args.seq}")
        _print_json(dead_letter_json(*match[0], full=True))
        return 0
    if not args.seqs and not args.all:
        raise ValueError("name dead letters by number, or pass --all")
    seqs = None if args.all else args.seqs
    known = {row[0] for row in outbox.dead_letters()}
    if seqs is not None:  # every one named must exist, as for ``show``: nothing is done otherwise
        missing = [str(seq) for seq in seqs if seq not in known]
        if missing:
            done = "dropped" if action == "drop" else "retried"
            raise ValueError(f"no dead letter {', '.join(missing)}: none {done}")
        empty = [str(seq) for seq in seqs if seq < 0]
        if action == "retry" and empty:
            raise ValueError(
                f"dead letter {', '.join(empty)} kept no content (quarantined): nothing to deliver; "
                "drop it once its reason is dealt with"
            )
    if action == "drop":
        print(f"dropped {outbox.drop_dead_letters(seqs)} dead letter(s)")
        return 0
    with _library_logs_off():  # delivery errors are in the command's one error line
        retried = operations.retry_dead_letters(
            settings,
            outbox,
            seqs,
            deliver=not args.no_deliver,
            timeout=args.timeout,
            on_requeued=lambda n: print(f"{n} dead letter(s) back in the queue", flush=True),
        )
    if retried.delivered is not None:
        print(f"delivered {retried.delivered} record(s) to {public_url(settings.url)}")
    kept = sum(1 for seq in known if seq < 0)  # quarantined: a retry leaves them where they were
    if kept:
        print(f"{kept} quarantined dead letter(s) kept no content and stay: drop them once their reason is dealt with")
    return 0


@contextlib.contextmanager
def _library_logs_off() -> Iterator[None]:
    """The plugin's log lines off (they would be printed on stderr beside the command's own error)."""
    logger = logging.getLogger("langchain_label_studio")
    previous, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = previous


def _deliver(args: argparse.Namespace) -> int:
    """Deliver the outbox until stopped (SIGTERM or Ctrl-C), for apps run with delivery off."""
    settings = _settings(args)
    settings.deliver = True
    open_outbox(settings).close()  # an outbox that cannot be opened is this command's error, at once
    pipeline = Pipeline(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    pipeline.start()
    target = public_url(settings.url)
    print(f"delivering {pipeline.outbox.location} to {target} (stop with Ctrl-C or SIGTERM)", file=sys.stderr)

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
    titles = [p.title() for p in projects]
    if args.format == "json":
        _print_json({"ok": not problems, "url": public_url(settings.url), "projects": titles, "problems": problems})
        return 1 if problems else 0
    for problem in problems:
        print(f"problem: {one_line(problem)}", file=sys.stderr)
    if problems:
        return 1
    names = ", ".join(titles) or "no projects named"
    print(f"ok: Label Studio at {public_url(settings.url)} answers, the token is accepted; checked {names}")
    return 0


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", dest="format", action="store_const", const="json", help="output JSON, for scripts")
    p.set_defaults(format="text")


def _add_operations(commands: argparse._SubParsersAction[Any]) -> None:
    def common(p: argparse.ArgumentParser, url_help: str = "its outbox, and the only server contacted") -> None:
        p.add_argument(
            "--state-dir", default=None, help="outbox directory (default $LABEL_STUDIO_STATE_DIR or ~/.local/state/...)"
        )
        p.add_argument(
            "--url", default=None, help=f"Label Studio URL (default $LABEL_STUDIO_URL or {DEFAULT_URL}): {url_help}"
        )
        p.add_argument(
            "--outbox", default=None, help="a PostgreSQL outbox URL (default $LABEL_STUDIO_OUTBOX_URL) instead"
        )

    help_text = (
        "outbox depth per project, oldest pending, dead letters, last error; reachability and token of the "
        "configured Label Studio (other servers' outboxes are listed, never contacted)"
    )
    p = commands.add_parser("status", help=help_text, description=help_text)
    common(p, "the only server contacted; given, only its outbox is listed")
    p.add_argument("--format", choices=["text", "json"], default="text", help="output format (default %(default)s)")
    p.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    p.set_defaults(func=_status)

    help_text = "inspect, replay or drop the records Label Studio refused (in the configured server's outbox)"
    dl = commands.add_parser("dead-letters", help=help_text, description=help_text)
    actions = dl.add_subparsers(dest="dl_command", required=True, metavar="ACTION")
    p = actions.add_parser("list", help="one line per dead letter", description="one line per dead letter")
    common(p)
    _json_flag(p)
    p = actions.add_parser("show", help="one dead letter in full (JSON)", description="one dead letter in full (JSON)")
    common(p)
    _json_flag(p)
    p.add_argument("seq", type=int, help="dead letter number (see list)")
    for name, text in (
        ("retry", "put dead letters back in the queue and deliver them to the configured server"),
        ("drop", "delete them"),
    ):
        p = actions.add_parser(name, help=text, description=text)
        common(p)
        p.add_argument("seqs", type=int, nargs="*", help="dead letter numbers (see list)")
        p.add_argument("--all", action="store_true", help="all dead letters")
        if name == "retry":
            p.add_argument("--no-deliver", action="store_true", help="only requeue; a running app delivers them")
            p.add_argument("--timeout", type=_seconds, default=120.0, help="seconds to wait for delivery")
    dl.set_defaults(func=_dead_letters)

    help_text = "deliver the outbox to Label Studio until stopped (for apps run with LABEL_STUDIO_DELIVERY=off)"
    p = commands.add_parser("deliver", help=help_text, description=help_text)
    common(p, "the server delivered to, and its outbox")
    p.add_argument("--report-every", type=_seconds, default=60.0, help="seconds between progress lines (0: none)")
    p.add_argument("--drain-timeout", type=_seconds, default=10.0, help="seconds to finish delivery when stopped")
    p.set_defaults(func=_deliver)

    help_text = "check the URL, the token and each project's label config against its mode"
    p = commands.add_parser("check", help=help_text, description=help_text)
    p.add_argument(
        "--app", help="module:attribute of an ASGI app using LabelStudioMiddleware, e.g. example_app.app:app"
    )
    p.add_argument("--project", help="also check this project (name or title)")
    p.add_argument("--mode", choices=["prompt", "chat"], default="prompt", help="mode of --project")
    p.add_argument("--url", default=None, help=f"Label Studio URL (default $LABEL_STUDIO_URL or {DEFAULT_URL})")
    _json_flag(p)
    p.set_defaults(func=_check)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="langchain-label-studio", description="Capture LangChain traffic into Label Studio.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    help_text = "run a local Label Studio for development and tests"
    local_parser = commands.add_parser("local", help=help_text, description=help_text)
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
            p.add_argument(
                "--host",
                default=local.DEFAULT_HOST,
                help="address to listen on (default %(default)s: this machine only)",
            )
            p.add_argument("--timeout", type=_seconds, default=300.0, help="seconds to wait for /health")
            p.add_argument(
                "--database",
                default=None,
                metavar="URL",
                help="postgresql://USER:PASSWORD@HOST:PORT/NAME to run on PostgreSQL (the database is created "
                "if missing), or 'sqlite' (a file in the data directory); default: what the data directory "
                "used last, else sqlite",
            )
        p.set_defaults(func=func)
    _add_export(commands)
    _add_operations(commands)
    return parser


def _number(text: str) -> float:
    """A finite number (``nan`` and ``inf`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _seconds(text: str) -> float:
    """A duration: a finite number of seconds, not negative."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"a duration cannot be negative: {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; errors are one line on stderr and a non-zero exit code. A closed
    standard output (``... | head``) ends the command quietly."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        return _stdout_closed()
    except KeyboardInterrupt:
        return 130
    except (local.LocalError, LabelStudioError, OSError, ValueError) as exc:
        print(f"error: {one_line(strip_credentials(str(exc)))}", file=sys.stderr)
        return 1
    except Exception as exc:  # anything else is still one line, not a traceback
        print(f"error: {type(exc).__name__}: {one_line(strip_credentials(str(exc)))}", file=sys.stderr)
        return 1


def _stdout_closed() -> int:
    """The reader of stdout is gone: point stdout at /dev/null (so the interpreter's last flush
    is silent) and exit as a Unix tool killed by SIGPIPE would."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
