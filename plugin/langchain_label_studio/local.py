"""A local Label Studio for development, demos and tests, in one call.

Label Studio is installed into a virtualenv of its own (its pins clash with LangChain
stacks), cached under ``~/.cache/langchain-label-studio``. ``up`` starts it on a port
and data directory, creates an admin user and a Personal Access Token without any
prompt, waits for ``/health`` and returns the URL and token. A second ``up`` on the same
data directory reuses the running server. Its database is SQLite in the data directory, or a
PostgreSQL database (``up(database="postgresql://...")``), as production servers run.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from .state_dir import lock_file, open_private, private_dir

LABEL_STUDIO_VERSION = "1.23.2"
DEFAULT_PORT = 8080
#: The address Label Studio listens on: this machine only, unless ``up(host=...)`` says otherwise.
DEFAULT_HOST = "127.0.0.1"
ADMIN_EMAIL = "admin@example.com"
#: The file in the data directory holding the admin's password (0600).
PASSWORD_FILE = "admin-password"


class LocalError(RuntimeError):
    """The local Label Studio could not be installed or started."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "langchain-label-studio"


def default_data_dir(port: int) -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "langchain-label-studio" / f"label-studio-{port}"


@dataclass
class LocalServer:
    """A running local Label Studio and how to reach it."""

    url: str
    port: int
    data_dir: str
    pid: int
    username: str
    password: str
    legacy_token: str
    api_key: str
    #: The address it listens on (servers started before this was recorded listen on all).
    host: str = "0.0.0.0"
    #: Its PostgreSQL database (a ``postgresql://`` URL), or ``""`` for SQLite in the data directory.
    database: str = ""

    def env(self) -> dict[str, str]:
        """The environment variables that point the plugin at this server."""
        return {"LABEL_STUDIO_URL": self.url, "LABEL_STUDIO_API_KEY": self.api_key}

    @property
    def database_label(self) -> str:
        """Its database for display: ``sqlite`` or the PostgreSQL URL without its password."""
        return redact_database(self.database) if self.database else SQLITE

    @property
    def password_path(self) -> Path:
        """Where the admin's password is kept (see :func:`password_file`)."""
        return Path(self.data_dir) / PASSWORD_FILE


SQLITE = "sqlite"


def database_env(database: str) -> dict[str, str]:
    """Label Studio's environment for ``database``: ``sqlite`` (or empty), or a PostgreSQL URL
    ``postgresql://USER:PASSWORD@HOST:PORT/NAME`` (user ``postgres``, host ``localhost`` and port
    5432 unless given)."""
    if database in ("", SQLITE):
        return {"DJANGO_DB": "sqlite"}
    parts = urlsplit(database)
    name = unquote(parts.path.lstrip("/"))
    if parts.scheme not in ("postgresql", "postgres") or not name or "/" in name:
        raise LocalError(
            f"--database must be {SQLITE} or postgresql://USER@HOST:PORT/NAME, not {redact_database(database)}"
        )
    if parts.query or parts.fragment:
        raise LocalError(
            "--database takes no query parameters (Label Studio reads only user, password, host, port, name)"
        )
    try:
        port = parts.port or 5432
    except ValueError as exc:
        raise LocalError(f"--database has a bad port: {exc}") from None
    return {
        "DJANGO_DB": "default",
        "POSTGRE_NAME": name,
        "POSTGRE_USER": unquote(parts.username or "postgres"),
        "POSTGRE_PASSWORD": unquote(parts.password or ""),
        "POSTGRE_HOST": parts.hostname or "localhost",
        "POSTGRE_PORT": str(port),
    }


def redact_database(database: str) -> str:
    """A database URL without its password."""
    parts = urlsplit(database)
    if parts.password is None:
        return database
    netloc = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username}:***@{netloc}").geturl()


#: Run in Label Studio's virtualenv (which has psycopg): create the database named by the
#: ``POSTGRE_*`` variables unless it exists, connecting to the server's ``postgres`` database.
#: Prints ``admin`` when the database exists and already has the admin user.
_CREATE_DATABASE = """
import os, sys
import psycopg
from psycopg import sql
env = os.environ
args = dict(user=env["POSTGRE_USER"], host=env["POSTGRE_HOST"], port=env["POSTGRE_PORT"], connect_timeout=10)
if env["POSTGRE_PASSWORD"]:
    args["password"] = env["POSTGRE_PASSWORD"]
name = env["POSTGRE_NAME"]
def why(exc):
    return " ".join(str(exc).split())
try:
    with psycopg.connect(dbname=name, **args) as conn:
        users = conn.execute("SELECT to_regclass('htx_user')").fetchone()[0]
        query = "SELECT 1 FROM htx_user WHERE email = %s"
        admin = users and conn.execute(query, (env["LABEL_STUDIO_USERNAME"],)).fetchone()
    print("admin" if admin else "no admin")
    sys.exit(0)
except psycopg.OperationalError as exc:
    if "does not exist" not in str(exc):
        sys.exit(f"cannot connect to PostgreSQL at {args['host']}:{args['port']}: {why(exc)}")
try:
    with psycopg.connect(dbname="postgres", autocommit=True, **args) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
except psycopg.Error as exc:
    sys.exit(f"cannot create database {name}: {why(exc)}")
"""


def ensure_database(exe: Path, env: dict[str, str]) -> bool:
    """Create the PostgreSQL database of ``env`` (``POSTGRE_*``) unless it exists, with the
    Python of Label Studio's virtualenv (``exe`` is its ``label-studio``). True when it
    existed and already holds the admin user."""
    python = exe.parent / "python"
    result = subprocess.run([str(python), "-c", _CREATE_DATABASE], env=env, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["unknown error"]
        raise LocalError(lines[-1])
    return result.stdout.strip() == "admin"


def url_for(host: str, port: int) -> str:
    """The URL of a server listening on ``host``: ``localhost`` for the loopback and
    all-interfaces addresses, else the address itself."""
    if host in ("127.0.0.1", "localhost", "0.0.0.0", "::", "::1", ""):
        return f"http://localhost:{port}"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def start_command(exe: str | os.PathLike[str], port: int, host: str, url: str) -> list[str]:
    """Label Studio's command line: listen on ``host`` (``--internal-host``; Label Studio's own
    default is every interface) and build links with ``url`` (``--host``)."""
    return [str(exe), "start", "--port", str(port), "--no-browser", "--internal-host", host, "--host", url]


def password_file(server: LocalServer) -> Path:
    """The file holding the admin's password, written (0600) if missing; returns its path."""
    path = server.password_path
    if not path.exists():
        _write_private(path, server.password + "\n")
    return path


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``: 0600, never through a symbolic link."""
    with os.fdopen(open_private(path, os.O_WRONLY | os.O_TRUNC), "w") as fh:
        fh.write(text)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (a private file in a private directory, never a symlink)."""
    fd = open_private(private_dir(path.parent) / path.name)
    try:
        lock_file(fd)
        yield
    finally:
        os.close(fd)  # releases the lock


def venv_dir(version: str = LABEL_STUDIO_VERSION) -> Path:
    return cache_dir() / f"label-studio-{version}"


def install(version: str = LABEL_STUDIO_VERSION, log: bool = True) -> Path:
    """Install Label Studio ``version`` into its cached virtualenv; returns its executable."""
    venv = venv_dir(version)
    exe = venv / "bin" / "label-studio"
    marker = venv / ".installed"
    with _file_lock(cache_dir() / f"install-{version}.lock"):
        if marker.exists() and exe.exists():
            return exe
        if log:
            print(f"Installing Label Studio {version} into {venv} (once; a few minutes)...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip_log = cache_dir() / f"install-{version}.log"
        result = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"label-studio=={version}"],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            _write_private(pip_log, result.stdout + result.stderr)
            raise LocalError(f"pip could not install label-studio=={version}; see {pip_log}")
        marker.write_text(version)
    return exe


def _state_path(data_dir: Path) -> Path:
    return data_dir / "langchain-label-studio.json"


def _load(data_dir: Path) -> LocalServer | None:
    try:
        return LocalServer(**json.loads(_state_path(data_dir).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _save(server: LocalServer) -> None:
    _write_private(_state_path(Path(server.data_dir)), json.dumps(asdict(server), indent=2))
    _write_private(server.password_path, server.password + "\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def _mint_pat(url: str, legacy_token: str) -> str:
    """A Personal Access Token for the admin (the legacy token if one exists already)."""
    resp = httpx.post(f"{url}/api/token/", headers={"Authorization": f"Token {legacy_token}"}, timeout=30)
    if resp.status_code in (200, 201):
        return str(resp.json()["token"])
    if resp.status_code == 409:  # a token exists whose secret we no longer have
        return legacy_token
    raise LocalError(f"Label Studio refused to create a Personal Access Token ({resp.status_code}): {resp.text[:200]}")


def _token_works(url: str, token: str) -> bool:
    from .client import LabelStudioClient, LabelStudioError

    client = LabelStudioClient(url, token, timeout=10)
    try:
        client.whoami()
        return True
    except LabelStudioError:
        return False
    finally:
        client.close()


def recorded(data_dir: str | os.PathLike[str]) -> LocalServer | None:
    """The server last started on this data directory, running or not (None if none was)."""
    return _load(Path(data_dir).expanduser().resolve())


def status(port: int = DEFAULT_PORT, data_dir: str | os.PathLike[str] | None = None) -> LocalServer | None:
    """The server started on this data dir, if it is running and healthy."""
    server = _load(Path(data_dir) if data_dir else default_data_dir(port))
    if server and _alive(server.pid) and _healthy(server.url):
        return server
    return None


def up(
    port: int = DEFAULT_PORT,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    host: str = DEFAULT_HOST,
    version: str = LABEL_STUDIO_VERSION,
    timeout: float = 300.0,
    database: str | None = None,
) -> LocalServer:
    """Start (or reuse) a local Label Studio listening on ``host`` and return how to reach it.
    The admin's password is kept in :func:`password_file`. A server already running on this
    data directory is reused as it is (whatever address it listens on).

    ``database`` is ``"sqlite"`` (a file in the data directory) or a ``postgresql://`` URL (the
    database is created if missing). ``None``: the database this data directory used last,
    else SQLite.

    Raises:
        LocalError: the install failed, the port is taken by another server, the server on
            this data directory runs on another database, the PostgreSQL database cannot be
            reached or created, or the server did not become healthy within ``timeout`` seconds.
    """
    data = Path(data_dir).expanduser().resolve() if data_dir else default_data_dir(port)
    private_dir(data)
    with _file_lock(data / ".up.lock"):
        wanted = wanted_database(database)
        database_env(wanted or "")  # checks the URL before anything starts
        running = status(port, data)
        if running:
            return _reuse(running, wanted, data)
        url = url_for(host, port)
        if _healthy(url, timeout=1.0):
            raise LocalError(f"port {port} already serves another Label Studio; pick another --port")
        exe = install(version)
        previous = _load(data)
        if wanted is None:
            wanted = previous.database if previous else ""
        password, legacy = _credentials(previous)
        env = server_env(dict(os.environ), wanted, data, password, legacy)
        if wanted and ensure_database(exe, env) and not (previous and previous.database == wanted):
            raise LocalError(
                f"{redact_database(wanted)} holds a Label Studio made with another data directory (its admin's "
                f"password and tokens are not in {data}): pass that --data-dir, or use a new database"
            )
        proc = _start(start_command(exe, port, host, url), env, data)
        _wait_healthy(proc, url, timeout, data / "label-studio.log")
        try:
            api_key = previous.api_key if previous and _token_works(url, previous.api_key) else _mint_pat(url, legacy)
        except (LocalError, httpx.HTTPError):
            _stop_pid(proc.pid)
            raise
        server = LocalServer(url, port, str(data), proc.pid, ADMIN_EMAIL, password, legacy, api_key, host, wanted)
        _save(server)
        return server


def wanted_database(database: str | None) -> str | None:
    """The database ``up`` was asked for, as :class:`LocalServer` records it: ``""`` for SQLite,
    a PostgreSQL URL, or None for "the one this data directory used last"."""
    if database is None:
        return None
    return "" if database == SQLITE else database


def _reuse(running: LocalServer, wanted: str | None, data: Path) -> LocalServer:
    """The server already running on ``data``, unless it runs on another database than ``wanted``."""
    if wanted is not None and wanted != running.database:
        raise LocalError(
            f"the Label Studio of {data} runs on {running.database_label}; "
            "stop it (local down) to start it on another database"
        )
    password_file(running)
    return running


def _credentials(previous: LocalServer | None) -> tuple[str, str]:
    """The admin's password and legacy token: those of the server last started on the data
    directory (its database knows them), else new ones."""
    if previous is not None:
        return previous.password, previous.legacy_token
    return secrets.token_urlsafe(12), secrets.token_hex(20)


def server_env(environ: dict[str, str], database: str, data: Path, password: str, legacy: str) -> dict[str, str]:
    """Label Studio's environment: ``environ`` without the variables that would choose its
    database, then ``database``'s, the data directory, and the admin created without a prompt."""
    return {
        **{k: v for k, v in environ.items() if not _label_studio_db_var(k)},
        **database_env(database),
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "LABEL_STUDIO_USERNAME": ADMIN_EMAIL,
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_USER_TOKEN": legacy,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
    }


def _start(command: list[str], env: dict[str, str], data: Path) -> subprocess.Popen[bytes]:
    """Start Label Studio in a session of its own, in ``data``, logging to ``label-studio.log`` there."""
    with open(data / "label-studio.log", "ab") as log:
        return subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=data,
        )


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, timeout: float, log: Path) -> None:
    """Wait until the server at ``url`` answers ``/health``; LocalError if its process exits
    first, or (the process stopped) if ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not _healthy(url):
        if proc.poll() is not None:
            raise LocalError(f"Label Studio exited with {proc.returncode}; see {log}")
        if time.monotonic() > deadline:
            _stop_pid(proc.pid)
            raise LocalError(f"Label Studio did not answer /health within {timeout:.0f}s")
        time.sleep(1.0)


def _label_studio_db_var(name: str) -> bool:
    """An environment variable that would choose Label Studio's database (``up`` decides it)."""
    for prefix in ("LABEL_STUDIO_", "HEARTEX_", ""):
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            if rest in ("DJANGO_DB", "DATABASE_NAME") or rest.startswith("POSTGRE_"):
                return True
    return False


def _stop_pid(pid: int, timeout: float = 20.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if _alive(pid):
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


def down(port: int = DEFAULT_PORT, data_dir: str | os.PathLike[str] | None = None) -> bool:
    """Stop the server started on this data dir. True if one was running."""
    data = Path(data_dir).expanduser().resolve() if data_dir else default_data_dir(port)
    server = _load(data)
    if server is None or not _alive(server.pid):
        return False
    _stop_pid(server.pid)
    return True
