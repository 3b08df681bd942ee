"""The steps of ``local.up`` that need no Label Studio: the database asked for, the server's
environment and credentials, reusing a running server, starting a process and waiting for it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from faults import free_port

from langchain_label_studio import local

PG = "postgresql://ls:secret@db.test:5433/labels"


def server(data: Path, database: str = "") -> local.LocalServer:
    return local.LocalServer(
        "http://localhost:1", 1, str(data), os.getpid(), "a", "pw", "tok", "key", "127.0.0.1", database
    )


def test_wanted_database() -> None:
    assert local.wanted_database(None) is None  # whatever the data directory used last
    assert local.wanted_database("sqlite") == ""
    assert local.wanted_database(PG) == PG


def test_server_env_chooses_the_database_and_the_admin(tmp_path: Path) -> None:
    inherited = {"PATH": "/bin", "DJANGO_DB": "default", "POSTGRE_HOST": "elsewhere", "LABEL_STUDIO_URL": "u"}
    env = local.server_env(inherited, "", tmp_path, "pw", "legacy")
    assert env["DJANGO_DB"] == "sqlite" and "POSTGRE_HOST" not in env
    assert env["PATH"] == "/bin" and env["LABEL_STUDIO_URL"] == "u"
    assert env["LABEL_STUDIO_BASE_DATA_DIR"] == str(tmp_path)
    assert (env["LABEL_STUDIO_USERNAME"], env["LABEL_STUDIO_PASSWORD"], env["LABEL_STUDIO_USER_TOKEN"]) == (
        local.ADMIN_EMAIL,
        "pw",
        "legacy",
    )
    assert env["LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK"] == "true"
    pg = local.server_env(inherited, PG, tmp_path, "pw", "legacy")
    assert {k: pg[k] for k in ("DJANGO_DB", "POSTGRE_HOST", "POSTGRE_PORT", "POSTGRE_NAME", "POSTGRE_USER")} == {
        "DJANGO_DB": "default",
        "POSTGRE_HOST": "db.test",
        "POSTGRE_PORT": "5433",
        "POSTGRE_NAME": "labels",
        "POSTGRE_USER": "ls",
    }


def test_credentials_are_kept_for_a_data_directory(tmp_path: Path) -> None:
    assert local._credentials(server(tmp_path)) == ("pw", "tok")
    password, legacy = local._credentials(None)
    assert len(password) >= 16 and len(legacy) == 40 and local._credentials(None) != (password, legacy)


def test_a_running_server_is_reused_on_its_own_database(tmp_path: Path) -> None:
    running = server(tmp_path, PG)
    assert local._reuse(running, None, tmp_path) is running
    assert local._reuse(running, PG, tmp_path) is running
    assert (tmp_path / local.PASSWORD_FILE).read_text() == "pw\n"
    with pytest.raises(local.LocalError, match="runs on postgresql://ls:\\*\\*\\*@db.test:5433/labels") as refused:
        local._reuse(running, "", tmp_path)
    assert "secret" not in str(refused.value)


def test_start_logs_into_the_data_directory(tmp_path: Path) -> None:
    code = "import os; print(os.getcwd(), os.getsid(0) == os.getpid())"  # a session of its own: stopped as a group
    proc = local._start([sys.executable, "-c", code], dict(os.environ), tmp_path)
    assert proc.wait(30) == 0
    assert (tmp_path / "label-studio.log").read_text().strip() == f"{tmp_path} True"


def test_waiting_ends_when_the_process_exits(tmp_path: Path) -> None:
    proc = local._start([sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ), tmp_path)
    with pytest.raises(local.LocalError, match="exited with 3; see .*label-studio.log"):
        local._wait_healthy(proc, f"http://127.0.0.1:{free_port()}", 60, tmp_path / "label-studio.log")


def test_waiting_stops_the_server_at_the_timeout(tmp_path: Path) -> None:
    proc = local._start([sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ), tmp_path)
    try:
        with pytest.raises(local.LocalError, match="did not answer /health within 0s"):
            local._wait_healthy(proc, f"http://127.0.0.1:{free_port()}", 0, tmp_path / "label-studio.log")
        assert proc.wait(30) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
