"""The ``langchain-label-studio`` command."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable, Sequence

from . import local


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; errors are one line on stderr and a non-zero exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (local.LocalError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
