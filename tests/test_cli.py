"""The operator's command line: status, dead letters (list, show, retry once fixed, drop), check,
and what every command shares: help, one-line errors, a closed stdout, the only server it talks to."""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import LS_DATA, LS_PORT, ROOT, eventually, project_tasks
from faults import FaultProxy

from langchain_label_studio import cli as cli_module
from langchain_label_studio import local, operations
from langchain_label_studio.label_config import CHAT_CONFIG, PROMPT_CONFIG
from langchain_label_studio.outbox import SQLiteOutbox, open_outbox
from langchain_label_studio.pipeline import Pipeline
from langchain_label_studio.project import Project
from langchain_label_studio.record import CaptureRecord
from langchain_label_studio.settings import Settings

CLI = [sys.executable, "-m", "langchain_label_studio.cli"]
#: The installed console script, which (unlike ``python -m``) does not put the current directory
#: on ``sys.path``.
SCRIPT = str(Path(sys.executable).parent / "langchain-label-studio")
NEEDS_CONTEXT = """<View>
<Text name="prompt" value="$prompt"/>
<Text name="context" value="$context"/>
<TextArea name="response" toName="prompt"/>
</View>"""


def cli(*args: str, env: dict[str, str], cwd: Path = ROOT, command: list[str] = CLI) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, cwd=cwd, env={**os.environ, **env}, timeout=300
    )


def one_line_error(proc: subprocess.CompletedProcess, code: int = 1) -> str:
    """The error of a failed command, checked to be one line on stderr and nothing else."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr


def record(project: Project, text: str) -> CaptureRecord:
    return CaptureRecord(project=project.to_dict(), prompt=text, response=f"answer to {text}")


def test_status_and_dead_letters_then_retry_once_fixed(label_studio, admin, tmp_path: Path, project_name):
    env = {**label_studio.env(), "LABEL_STUDIO_STATE_DIR": str(tmp_path)}
    proxy = FaultProxy(label_studio.port).start()
    # a project whose config wants a "context" every capture lacks: Label Studio refuses them (400)
    refusing = admin.create_project(project_name, NEEDS_CONTEXT)
    project = Project(project_name, label_config=NEEDS_CONTEXT)
    pipeline = Pipeline(Settings(url=proxy.url, api_key=label_studio.api_key, state_dir=tmp_path))
    for text in ("one", "two"):
        pipeline.submit(record(project, text))
    assert pipeline.flush(30)
    assert pipeline.metrics.dead_lettered == 2
    proxy.stop()  # now Label Studio is unreachable: new captures wait
    waiting = Project(f"{project_name}-waiting")
    for text in ("three", "four", "five"):
        pipeline.submit(record(waiting, text))
    eventually(lambda: "cannot reach" in (pipeline.health()["last_error"] or ""), "a failed delivery attempt")
    pipeline.close(timeout=0.5)

    out = cli("status", env={**env, "LABEL_STUDIO_URL": proxy.url})
    assert out.returncode == 0, out.stderr
    assert "NOT reachable" in out.stdout
    assert "pending        3" in out.stdout and f"{project_name}-waiting" in out.stdout
    assert "dead letters   2" in out.stdout
    assert "cannot reach Label Studio" in out.stdout
    # configured for another server: the proxy's outbox is listed, its server not contacted
    report = json.loads(cli("status", "--format", "json", env=env).stdout)
    assert report[0]["pending"] == 3 and report[0]["dead_letters"] == 2
    assert report[0]["label_studio_url"] == proxy.url and report[0]["label_studio"] is None
    assert "not checked: another server" in cli("status", env=env).stdout
    assert json.loads(cli("status", "--json", "--url", proxy.url, env=env).stdout)[0]["configured"]
    assert json.loads(cli("status", "--json", "--url", label_studio.url, env=env).stdout) == []

    env["LABEL_STUDIO_URL"] = proxy.url  # the dead letters of the proxy's outbox
    listing = cli("dead-letters", "list", env=env)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.count(project_name) == 2 and "400" in listing.stdout and "context" in listing.stdout
    seqs = [int(line.split()[0]) for line in listing.stdout.splitlines() if project_name in line]
    shown = json.loads(cli("dead-letters", "show", str(seqs[0]), env=env).stdout)
    assert shown["record"]["prompt"] == "one" and "context" in shown["reason"]
    assert json.loads(cli("dead-letters", "show", "--json", str(seqs[0]), env=env).stdout) == shown
    rows = json.loads(cli("dead-letters", "list", "--json", env=env).stdout)
    assert [row["seq"] for row in rows] == seqs and {row["project"] for row in rows} == {project_name}

    # the operator fixes the project, then replays: delivered once
    admin._call("PATCH", f"/api/projects/{refusing['id']}", "fixing", json={"label_config": PROMPT_CONFIG})
    proxy.start()
    retried = cli("dead-letters", "retry", "--all", env=env)
    assert retried.returncode == 0, retried.stderr + retried.stdout
    assert "2 dead letter(s) back in the queue" in retried.stdout
    _, tasks = project_tasks(admin, project_name)
    assert sorted(t["data"]["prompt"] for t in tasks) == ["one", "two"]
    assert "0 dead letter(s)" in cli("dead-letters", "list", env=env).stdout
    proxy.close()


def test_drop_dead_letters(label_studio, admin, tmp_path, project_name):
    env = {**label_studio.env(), "LABEL_STUDIO_STATE_DIR": str(tmp_path)}
    admin.create_project(project_name, NEEDS_CONTEXT)
    pipeline = Pipeline(Settings(url=label_studio.url, api_key=label_studio.api_key, state_dir=tmp_path))
    pipeline.submit(record(Project(project_name, label_config=NEEDS_CONTEXT), "x"))
    assert pipeline.flush(30)
    pipeline.close()
    [(seq, _, _, _)] = pipeline.outbox.dead_letters()
    assert "dropped 1" in cli("dead-letters", "drop", str(seq), env=env).stdout
    assert pipeline.outbox.dead_letters() == []
    for command in ("show", "drop", "retry"):
        bad = cli("dead-letters", command, "999999", env=env)
        assert bad.returncode == 1 and bad.stderr.startswith("error: no dead letter 999999"), bad.stderr
        assert "Traceback" not in bad.stderr


def test_check(label_studio, admin, project_name):
    env = label_studio.env()
    ok = cli("check", "--app", "example_app.app:app", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "Jokes" in ok.stdout and "Support chats" in ok.stdout

    admin.create_project(project_name, PROMPT_CONFIG)
    misfit = cli("check", "--project", project_name, "--mode", "chat", env=env)
    assert misfit.returncode == 1
    assert f"project '{project_name}'" in misfit.stderr and "cannot take chat captures" in misfit.stderr
    as_json = cli("check", "--json", "--project", project_name, "--mode", "chat", env=env)
    report = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and not report["ok"] and report["url"] == label_studio.url
    assert report["projects"] == [project_name] and "cannot take chat captures" in report["problems"][0]
    ok_json = json.loads(cli("check", "--json", "--app", "example_app.app:app", env=env).stdout)
    assert ok_json["ok"] and ok_json["problems"] == [] and "Support chats" in ok_json["projects"]
    admin.create_project(f"{project_name}-chat", CHAT_CONFIG)
    assert cli("check", "--project", f"{project_name}-chat", "--mode", "chat", env=env).returncode == 0

    refused = cli("check", env={**env, "LABEL_STUDIO_API_KEY": "wrong-token"})
    assert refused.returncode == 1 and "refused" in refused.stderr and "wrong-token" not in refused.stderr
    down = cli("check", "--url", "http://127.0.0.1:9", env=env)
    assert down.returncode == 1 and "does not answer" in down.stderr
    assert "Traceback" not in refused.stderr + down.stderr


# -- without Label Studio --------------------------------------------------------------------
class Recorder(ThreadingHTTPServer):
    """A fake Label Studio that records every request (method, path, Authorization header).

    ``/health`` and ``whoami`` answer as Label Studio does; anything else is a 500.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str | None]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                recorder.requests.append((self.command, self.path, self.headers.get("Authorization")))
                if self.path == "/health":
                    status, body = 200, b'{"status": "UP"}'
                elif self.path.startswith("/api/current-user/whoami"):
                    status, body = 200, b'{"email": "fake@example.com"}'
                else:
                    status, body = 500, b'{"detail": "fake"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def good():
    server = Recorder()
    yield server
    server.close()


@pytest.fixture
def evil():
    server = Recorder()
    yield server
    server.close()


def plant(state: Path, url: str, recorded: str, project: str, dead: int = 1, pending: int = 0) -> Path:
    """An outbox file named for server ``url`` whose meta says it is for ``recorded``."""
    path = operations.sqlite_outbox_path(state, url)
    outbox = SQLiteOutbox(path)
    records = [record(Project(project), f"{project} {i}") for i in range(dead + pending)]
    outbox.put_many(records)
    for claimed in outbox.claim(dead, 60) if dead else []:
        outbox.dead_letter(claimed.seq, f"400 refused {claimed.record.prompt}")
    outbox.set_meta(label_studio_url=recorded)
    outbox.close()
    return path


def test_outboxes_are_named_as_the_pipeline_names_them(tmp_path: Path):
    for url in ("http://localhost:8080", "https://ls.example.com/sub"):
        outbox = open_outbox(Settings(url=url, state_dir=tmp_path))
        assert outbox.location == str(operations.sqlite_outbox_path(tmp_path, url))
        outbox.close()


def test_status_contacts_only_the_configured_server(tmp_path: Path, good: Recorder, evil: Recorder):
    plant(tmp_path, evil.url, evil.url, "theirs", dead=2, pending=3)
    plant(tmp_path, good.url, evil.url, "ours")  # a planted file naming another server
    env = {"LABEL_STUDIO_STATE_DIR": str(tmp_path), "LABEL_STUDIO_URL": good.url, "LABEL_STUDIO_API_KEY": "s3cret"}

    out = cli("status", env=env)
    assert out.returncode == 0, out.stderr
    assert f"Label Studio   {evil.url}: not checked: another server" in out.stdout
    assert f"Label Studio   {good.url}: reachable, token valid legacy token of fake@example.com" in out.stdout
    assert f"recorded URL   {evil.url} (ignored" in out.stdout
    assert "NOT reachable" not in out.stdout
    reports = {r["label_studio_url"]: r for r in json.loads(cli("status", "--json", env=env).stdout)}
    assert reports[evil.url]["pending"] == 3 and reports[evil.url]["dead_letters"] == 2
    assert reports[evil.url]["label_studio"] is None and not reports[evil.url]["configured"]
    assert reports[good.url]["configured"] and reports[good.url]["label_studio"]["reachable"]
    only = json.loads(cli("status", "--json", "--url", good.url, env=env).stdout)
    assert [r["label_studio_url"] for r in only] == [good.url]

    assert evil.requests == []
    assert ("GET", "/api/current-user/whoami", "Token s3cret") in good.requests

    env["LABEL_STUDIO_URL"] = "http://127.0.0.1:9"  # no outbox of its own: all listed, none contacted
    out = cli("status", env=env)
    assert out.stdout.count("not checked: another server") == 2 and "no outbox for http://127.0.0.1:9" in out.stdout
    assert "no outbox for http://127.0.0.1:9" in cli("status", "--url", "http://127.0.0.1:9", env=env).stdout


def test_status_line_of_each_kind_of_outbox():
    report = {"label_studio_url": "http://a", "label_studio": None}
    assert cli_module.server_line(report) == "  Label Studio   http://a: not checked: another server"
    report["label_studio"] = {"reachable": False, "token": None}
    assert cli_module.server_line(report) == "  Label Studio   http://a: NOT reachable, token not checked"


def test_dead_letters_are_those_of_the_configured_server(tmp_path: Path, good: Recorder, evil: Recorder):
    for i in range(4):  # more outboxes than one: no longer "name the server with --url"
        plant(tmp_path, f"http://127.0.0.1:{10 + i}", f"http://127.0.0.1:{10 + i}", f"other-{i}")
    plant(tmp_path, good.url, good.url, "ours", dead=2)
    plant(tmp_path, evil.url, evil.url, "theirs", dead=1)
    env = {"LABEL_STUDIO_STATE_DIR": str(tmp_path), "LABEL_STUDIO_URL": good.url, "LABEL_STUDIO_API_KEY": "s3cret"}

    listing = cli("dead-letters", "list", env=env)
    assert listing.returncode == 0, listing.stderr
    assert (
        listing.stdout.count("refused ours") == 2
        and "theirs" not in listing.stdout
        and "2 dead letter(s)" in listing.stdout
    )
    rows = json.loads(cli("dead-letters", "list", "--json", "--url", evil.url, env=env).stdout)
    assert [(r["project"], r["reason"]) for r in rows] == [("theirs", "400 refused theirs 0")]
    shown = json.loads(cli("dead-letters", "show", str(rows[0]["seq"]), "--url", evil.url, env=env).stdout)
    assert shown["record"]["prompt"] == "theirs 0"
    assert "dropped 1" in cli("dead-letters", "drop", str(rows[0]["seq"]), "--url", evil.url, env=env).stdout

    missing = one_line_error(cli("dead-letters", "list", env={**env, "LABEL_STUDIO_URL": "http://127.0.0.1:9"}))
    assert f"no outbox for http://127.0.0.1:9 in {tmp_path}" in missing
    assert good.requests == [] and evil.requests == []  # listing, showing, dropping: no network


def test_retry_delivers_only_to_the_configured_server(tmp_path: Path, good: Recorder, evil: Recorder):
    path = plant(tmp_path, good.url, evil.url, "ours", dead=2)  # the file names another server
    env = {"LABEL_STUDIO_STATE_DIR": str(tmp_path), "LABEL_STUDIO_URL": good.url, "LABEL_STUDIO_API_KEY": "s3cret"}
    retried = cli("dead-letters", "retry", "--all", "--timeout", "3", env=env)
    assert "2 dead letter(s) back in the queue" in retried.stdout
    assert "not all delivered" in one_line_error(retried)  # the fake server refuses everything
    assert evil.requests == []
    assert good.requests and all(auth in (None, "Token s3cret") for _, _, auth in good.requests)
    assert SQLiteOutbox(path).stats().pending == 2  # still queued for the configured server


def test_every_command_has_help(capsys: pytest.CaptureFixture):
    def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
        yield path
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from commands(sub, (*path, name))

    found = list(commands(cli_module.build_parser()))
    assert ("local", "up") in found and ("dead-letters", "retry") in found and ("check",) in found
    for path in found:
        with pytest.raises(SystemExit) as done:
            cli_module.main([*path, "--help"])
        assert done.value.code == 0, path
        assert capsys.readouterr().out.startswith("usage: langchain-label-studio"), path
    top = subprocess.run([SCRIPT, "--help"], capture_output=True, text=True, timeout=60)
    assert top.returncode == 0
    for name in ("local", "export", "status", "dead-letters", "deliver", "check"):
        assert f"    {name}" in top.stdout


def test_usage_and_unexpected_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    one_line_error(cli("dead-letters", "lst", env={}), code=2)
    one_line_error(cli("status", "--no-such-option", env={}), code=2)
    one_line_error(cli("dead-letters", "retry", env={"LABEL_STUDIO_STATE_DIR": str(tmp_path)}))

    def boom(args: argparse.Namespace) -> int:
        raise RuntimeError("first line\nsecond line")

    monkeypatch.setattr(cli_module, "_status", boom)
    assert cli_module.main(["status"]) == 1
    assert capsys.readouterr().err == "error: RuntimeError: first line second line\n"


def test_an_unsafe_state_dir_is_one_line_naming_the_fix(tmp_path: Path):
    state = tmp_path / "state"
    plant(state, "http://127.0.0.1:9", "http://127.0.0.1:9", "p")
    os.chmod(state, 0o777)
    error = one_line_error(cli("status", env={"LABEL_STUDIO_STATE_DIR": str(state)}))
    assert f"chmod 700 {state}" in error


def test_check_imports_the_app_from_the_current_directory():
    """As uvicorn does: the console script finds example_app from the repository root."""
    down = cli("check", "--app", "example_app.app:app", "--url", "http://127.0.0.1:9", env={}, command=[SCRIPT])
    assert down.returncode == 1 and "No module named" not in down.stderr
    assert down.stderr == "problem: Label Studio does not answer at http://127.0.0.1:9 (GET /health failed)\n"
    report = json.loads(
        cli(
            "check", "--json", "--app", "example_app.app:app", "--url", "http://127.0.0.1:9", env={}, command=[SCRIPT]
        ).stdout
    )
    assert report["projects"] == ["Jokes", "Support chats"] and not report["ok"]


@pytest.mark.parametrize(
    ("target", "source", "message"),
    [
        ("nosuch.module:app", None, "cannot import nosuch.module (from {cwd}): ModuleNotFoundError: No module named"),
        ("broken:app", "raise RuntimeError('at import\\nmore')", "cannot import broken (from {cwd}): RuntimeError: at"),
        ("broken:app", "def app(:\n", "cannot import broken (from {cwd}): SyntaxError"),
        ("broken:app", "import no_such_dependency\n", "No module named 'no_such_dependency'"),
        ("broken:nothing", "app = 1\n", "module broken has no attribute 'nothing'"),
        ("broken", "app = 1\n", "has no LabelStudioMiddleware with routes"),
        ("not a target", None, "expected module:attribute"),
    ],
)
def test_app_import_errors_are_one_line(tmp_path: Path, target: str, source: str | None, message: str):
    if source is not None:
        (tmp_path / "broken.py").write_text(source)
    proc = cli("check", "--app", target, env={}, cwd=tmp_path, command=[SCRIPT])
    assert message.format(cwd=tmp_path) in one_line_error(proc)


def closed_stdout(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run the command with its stdout closed before it writes, as ``| head`` does."""
    proc = subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, **env}
    )
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    proc.wait(120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)


def test_a_closed_stdout_ends_quietly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    url = "http://127.0.0.1:9"
    plant(tmp_path, url, url, "many", dead=50)
    done = closed_stdout("dead-letters", "list", env={"LABEL_STUDIO_STATE_DIR": str(tmp_path), "LABEL_STUDIO_URL": url})
    assert (done.returncode, done.stderr) == (cli_module.EXIT_BROKEN_PIPE, "")

    def closed(args: argparse.Namespace) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli_module, "_status", closed)
    monkeypatch.setattr(cli_module, "_stdout_closed", lambda: cli_module.EXIT_BROKEN_PIPE)
    assert cli_module.main(["status"]) == cli_module.EXIT_BROKEN_PIPE


def test_export_to_a_closed_stdout_ends_quietly(label_studio, admin, ls_env, project_name):
    from test_export import annotate

    pipeline = Pipeline(Settings(state_dir=ls_env))
    project = Project(project_name)
    for text in ("one", "two"):
        pipeline.submit(record(project, text))
    assert pipeline.flush(30)
    _, tasks = project_tasks(admin, project_name)
    for task in tasks:
        annotate(admin, task, "edited", 5, to_name="prompt")
    done = closed_stdout("export", "--project", project_name, "--format", "sft", "--out", "-", env={})
    assert (done.returncode, done.stderr) == (cli_module.EXIT_BROKEN_PIPE, "")


# -- local Label Studio --------------------------------------------------------------------------
def test_local_label_studio_listens_on_this_machine_only_by_default():
    assert local.DEFAULT_HOST == "127.0.0.1"
    command = local.start_command("/ls/bin/label-studio", 8080, local.DEFAULT_HOST, "http://localhost:8080")
    assert command[command.index("--internal-host") + 1] == "127.0.0.1"
    assert command[command.index("--host") + 1] == "http://localhost:8080"
    assert local.url_for("127.0.0.1", 8080) == local.url_for("0.0.0.0", 8080) == "http://localhost:8080"
    assert local.url_for("10.0.0.5", 8080) == "http://10.0.0.5:8080"
    assert local.url_for("fd00::5", 8080) == "http://[fd00::5]:8080"
    up = cli_module.build_parser().parse_args(["local", "up"])
    assert up.host == "127.0.0.1"
    assert cli_module.build_parser().parse_args(["local", "up", "--host", "0.0.0.0"]).host == "0.0.0.0"


def test_local_up_prints_the_password_file_not_the_password(tmp_path: Path):
    server = local.LocalServer(
        "http://localhost:8080", 8080, str(tmp_path), 1, local.ADMIN_EMAIL, "pw-secret", "legacy", "key", "127.0.0.1"
    )
    path = local.password_file(server)
    assert path == tmp_path / "admin-password" and path.read_text() == "pw-secret\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    lines = cli_module.env_lines(server, path)
    assert not any("pw-secret" in line for line in lines)
    assert f"# log in as {local.ADMIN_EMAIL} with the password in {path}" in lines
    assert lines[-2:] == ["export LABEL_STUDIO_URL=http://localhost:8080", "export LABEL_STUDIO_API_KEY=key"]
    as_json = cli_module.env_json(server, path)
    assert as_json["password_file"] == str(path) and "pw-secret" not in json.dumps(as_json)


def test_local_status_prints_no_password(label_studio):
    out = cli("local", "status", "--port", str(LS_PORT), "--data-dir", str(LS_DATA), env={})
    assert out.returncode == 0, out.stderr
    assert label_studio.password not in out.stdout
    assert f"password in {LS_DATA / 'admin-password'}" in out.stdout
    assert (LS_DATA / "admin-password").read_text().strip() == label_studio.password
    assert f"export LABEL_STUDIO_API_KEY={label_studio.api_key}" in out.stdout


def test_retry_leaves_quarantined_dead_letters_which_kept_no_content(tmp_path):
    from langchain_label_studio.outbox.base import placeholder

    env = {"LABEL_STUDIO_URL": "http://127.0.0.1:9", "LABEL_STUDIO_STATE_DIR": str(tmp_path)}
    outbox = open_outbox(Settings(url=env["LABEL_STUDIO_URL"], state_dir=tmp_path))
    broken = CaptureRecord(project={"title": "Jokes", "id": None, "mode": "prompt", "label_config": None}, prompt="x")
    outbox.quarantine(placeholder(broken, "before_capture failed: ValueError"), "before_capture failed: ValueError")
    [(seq, _, _, _)] = outbox.dead_letters()
    outbox.close()

    named = cli("dead-letters", "retry", str(seq), env=env)
    assert named.returncode == 1 and "kept no content (quarantined)" in named.stderr, named.stderr
    every = cli("dead-letters", "retry", "--all", "--no-deliver", env=env)
    assert every.returncode == 0, every.stderr
    assert "0 dead letter(s) back in the queue" in every.stdout
    assert "1 quarantined dead letter(s) kept no content and stay" in every.stdout
    assert "dropped 1" in cli("dead-letters", "drop", str(seq), env=env).stdout
