"""The local Label Studio on PostgreSQL (``local up --database``), and why it matters: Label Studio
on SQLite drops the predictions of imports that run beside other writes (README Limits)."""

from __future__ import annotations

import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from conftest import LS_PG_DATA, LS_PG_DATABASE, LS_PG_PORT
from faults import free_port
from test_cli import cli, one_line_error

from langchain_label_studio import local
from langchain_label_studio.client import LabelStudioClient

#: A label config of the test's own: a prompt and its pre-filled answer.
CONFIG = '<View><Text name="prompt" value="$prompt"/><TextArea name="response" toName="prompt"/></View>'


# -- the database URL ----------------------------------------------------------------------------
def test_a_postgresql_url_becomes_label_studios_environment():
    assert local.database_env("postgresql://ls:p%40ss@db.internal:6543/label_studio") == {
        "DJANGO_DB": "default",
        "POSTGRE_NAME": "label_studio",
        "POSTGRE_USER": "ls",
        "POSTGRE_PASSWORD": "p@ss",
        "POSTGRE_HOST": "db.internal",
        "POSTGRE_PORT": "6543",
    }
    defaults = local.database_env("postgres:///ls")
    assert (defaults["POSTGRE_USER"], defaults["POSTGRE_HOST"], defaults["POSTGRE_PORT"]) == (
        "postgres",
        "localhost",
        "5432",
    )
    assert defaults["POSTGRE_PASSWORD"] == ""
    assert local.database_env("sqlite") == local.database_env("") == {"DJANGO_DB": "sqlite"}


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root@db/ls",
        "postgresql://postgres@db",
        "postgresql://postgres@db/ls?sslmode=require",
        "postgresql://db:x/ls",
    ],
)
def test_a_database_url_label_studio_cannot_use_is_refused(url: str):
    with pytest.raises(local.LocalError, match="--database"):
        local.database_env(url)


def test_the_database_password_is_never_shown():
    assert local.redact_database("postgresql://ls:secret@db:5432/x") == "postgresql://ls:***@db:5432/x"
    assert local.redact_database("postgresql://ls@db/x") == "postgresql://ls@db/x"
    with pytest.raises(local.LocalError) as refused:
        local.database_env("mysql://ls:secret@db/x")
    assert "secret" not in str(refused.value)
    server = local.LocalServer(
        "http://localhost:1", 1, "/d", 1, "a", "pw", "t", "k", "127.0.0.1", "postgresql://u:secret@h/n"
    )
    assert server.database_label == "postgresql://u:***@h/n"


def test_inherited_database_settings_never_reach_label_studio():
    for name in ("DJANGO_DB", "LABEL_STUDIO_POSTGRE_HOST", "POSTGRE_NAME", "HEARTEX_DATABASE_NAME"):
        assert local._label_studio_db_var(name), name
    for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "PGHOST", "POSTGRES_PASSWORD"):
        assert not local._label_studio_db_var(name), name


@pytest.mark.ls  # installs Label Studio (once) before it reaches the database
def test_an_unreachable_database_is_one_line_before_anything_starts(tmp_path: Path):
    port = free_port()
    out = cli(
        "local",
        "up",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "ls"),
        "--database",
        f"postgresql://postgres:secret@127.0.0.1:{free_port()}/nothing",
        env={},
    )
    error = one_line_error(out)
    assert "cannot connect to PostgreSQL" in error and "secret" not in error
    assert local.status(port, tmp_path / "ls") is None


# -- the server on PostgreSQL ----------------------------------------------------------------------
def test_label_studio_keeps_its_data_in_postgresql(label_studio_pg: local.LocalServer):
    assert label_studio_pg.database == LS_PG_DATABASE
    assert not list(Path(label_studio_pg.data_dir).glob("*.sqlite3")), "Label Studio made a SQLite database"
    title = f"pg-{uuid.uuid4().hex[:8]}"
    admin = LabelStudioClient(label_studio_pg.url, label_studio_pg.legacy_token)
    try:
        project = admin.create_project(title, CONFIG)
    finally:
        admin.close()
    with psycopg.connect(LS_PG_DATABASE) as conn:
        row = conn.execute("SELECT id FROM project WHERE title = %s", (title,)).fetchone()
    assert row == (project["id"],)


def test_status_names_the_database_and_up_keeps_it(label_studio_pg: local.LocalServer):
    env = {"LS_UNRELATED": "1"}
    shown = cli(
        "local", "status", "--port", str(LS_PG_PORT), "--data-dir", str(LS_PG_DATA), "--format", "json", env=env
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["database"] == LS_PG_DATABASE
    again = local.up(LS_PG_PORT, LS_PG_DATA)  # no --database: the one it runs on
    assert (again.pid, again.database) == (label_studio_pg.pid, LS_PG_DATABASE)
    with pytest.raises(local.LocalError, match="local down"):
        local.up(LS_PG_PORT, LS_PG_DATA, database="sqlite")


# -- concurrent imports ----------------------------------------------------------------------------
def task(name: str) -> dict:
    """A task with its pre-filled answer, as the plugin imports it."""
    result = {"from_name": "response", "to_name": "prompt", "type": "textarea", "value": {"text": [f"answer {name}"]}}
    return {"data": {"prompt": f"question {name}"}, "predictions": [{"model_version": "test", "result": [result]}]}


def import_concurrently(server: local.LocalServer, threads: int = 4, imports: int = 5, batch: int = 50) -> list[dict]:
    """``threads`` clients each importing ``imports`` batches of tasks with predictions into one
    new project at once; returns the project's tasks."""
    admin = LabelStudioClient(server.url, server.legacy_token, timeout=300)
    project = admin.create_project(f"concurrent-{uuid.uuid4().hex[:8]}", CONFIG)

    def client(t: int) -> None:
        own = LabelStudioClient(server.url, server.legacy_token, timeout=300)
        try:
            for i in range(imports):
                own.import_tasks(project["id"], [task(f"{t}-{i}-{k}") for k in range(batch)])
        finally:
            own.close()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(client, range(threads)))
    tasks, page = [], 1
    while found := admin.list_tasks(project["id"], page):
        tasks += found
        page += 1
    admin.close()
    return tasks


BY_HAND = "by hand (LS_TEST_SQLITE_LOSS=1): Label Studio on SQLite loses predictions here (README Limits)"


@pytest.mark.parametrize(
    "database",
    [
        "postgresql",
        pytest.param("sqlite", marks=pytest.mark.skipif(not os.environ.get("LS_TEST_SQLITE_LOSS"), reason=BY_HAND)),
    ],
)
def test_concurrent_imports_keep_every_prediction(database: str, request: pytest.FixtureRequest):
    server = request.getfixturevalue("label_studio_pg" if database == "postgresql" else "label_studio")
    tasks = import_concurrently(server)
    assert len(tasks) == 4 * 5 * 50
    lost = [t["data"]["prompt"] for t in tasks if not t["predictions"]]
    assert lost == [], f"{len(lost)} of {len(tasks)} tasks lost their prediction"
    for t in tasks:
        [prediction] = t["predictions"]
        assert prediction["result"][0]["value"]["text"] == [t["data"]["prompt"].replace("question", "answer")]


def test_a_database_made_with_another_data_directory_is_refused_before_starting(
    label_studio_pg: local.LocalServer, tmp_path: Path
):
    port = free_port()
    out = cli("local", "up", "--port", str(port), "--data-dir", str(tmp_path), "--database", LS_PG_DATABASE, env={})
    assert "holds a Label Studio made with another data directory" in one_line_error(out)
    assert local.status(port, tmp_path) is None and local.recorded(tmp_path) is None
    assert local.recorded(LS_PG_DATA).database == LS_PG_DATABASE
