"""A local Label Studio for development, demos and tests, in one call.

Label Studio is installed into a virtualenv of its own (its pins clash with LangChain
stacks), cached under ``~/.cache/langchain-label-studio``. ``up`` starts it on a port
and data directory, creates an admin user and a Personal Access Token without any
prompt, waits for ``/health`` and returns the URL and token. A second ``up`` on the same
data directory reuses the running server.
"""

from __future__ import annotations

import contextlib
import fcntl
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

import httpx

from .state_dir import open_private, private_dir

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

    def env(self) -> dict[str, str]:
        """The environment variables that point the plugin at this server."""
        return {"LABEL_STUDIO_URL": self.url, "LABEL_STUDIO_API_KEY": self.api_key}

    @property
    def password_path(self) -> Path:
        """Where the admin's password is kept (see :func:`password_file`)."""
        return Path(self.data_dir) / PASSWORD_FILE


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
        fcntl.flock(fd, fcntl.LOCK_EX)
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
) -> LocalServer:
    """Start (or reuse) a local Label Studio listening on ``host`` and return how to reach it.
    The admin's password is kept in :func:`password_file`. A server already running on this
    data directory is reused as it is (whatever address it listens on).

    Raises:
        LocalError: the install failed, the port is taken by another server, or the
            server did not become healthy within ``timeout`` seconds.
    """
    data = Path(data_dir).expanduser().resolve() if data_dir else default_data_dir(port)
    private_dir(data)
    with _file_lock(data / ".up.lock"):
        running = status(port, data)
        if running:
            password_file(running)
            return running
        url = url_for(host, port)
        if _healthy(url, timeout=1.0):
            raise LocalError(f"port {port} already serves another Label Studio; pick another --port")
        exe = install(version)
        previous = _load(data)
        legacy = previous.legacy_token if previous else secrets.token_hex(20)
        password = previous.password if previous else secrets.token_urlsafe(12)
        env = {
            **os.environ,
            "LABEL_STUDIO_BASE_DATA_DIR": str(data),
            "LABEL_STUDIO_USERNAME": ADMIN_EMAIL,
            "LABEL_STUDIO_PASSWORD": password,
            "LABEL_STUDIO_USER_TOKEN": legacy,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        }
        log = open(data / "label-studio.log", "ab")
        proc = subprocess.Popen(
            start_command(exe, port, host, url),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=data,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not _healthy(url):
            if proc.poll() is not None:
                raise LocalError(f"Label Studio exited with {proc.returncode}; see {data / 'label-studio.log'}")
            if time.monotonic() > deadline:
                _stop_pid(proc.pid)
                raise LocalError(f"Label Studio did not answer /health within {timeout:.0f}s")
            time.sleep(1.0)
        api_key = previous.api_key if previous and _token_works(url, previous.api_key) else _mint_pat(url, legacy)
        server = LocalServer(url, port, str(data), proc.pid, ADMIN_EMAIL, password, legacy, api_key, host)
        _save(server)
        return server


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
