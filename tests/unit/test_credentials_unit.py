"""A password in a Label Studio or outbox URL never reaches a log line, the outbox or the command's output."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from langchain_label_studio import cli
from langchain_label_studio.pipeline import Pipeline
from langchain_label_studio.record import CaptureRecord
from langchain_label_studio.settings import Settings
from langchain_label_studio.urls import public_url, strip_credentials

PASSWORD = "S3cr3tpw"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "url",
    [
        "http://admin:S3cr3tpw@127.0.0.1:9/x",
        "postgresql://postgres:S3cr%23t%3Fpw@127.0.0.1:5999/db",
        "postgresql://postgres:S3cr@t@pw@127.0.0.1:5999/db",
        "postgresql://127.0.0.1:5999/db?user=postgres&password=S3cr#t@pw",
    ],
)
def test_public_url_and_messages_keep_no_password(url: str) -> None:
    assert "127.0.0.1" in public_url(url)
    assert "pw" not in public_url(url)
    assert "pw" not in strip_credentials(f"cannot reach {url.split('?')[0]}: refused")


def test_an_unreachable_server_with_a_password_in_its_url(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://admin:{PASSWORD}@127.0.0.1:{closed_port()}"
    pipeline = Pipeline(Settings(url=url, api_key="k", state_dir=tmp_path, timeout_s=1))
    caplog.set_level(logging.DEBUG, logger="langchain_label_studio")
    project = {"title": "Jokes", "id": None, "mode": "prompt", "label_config": None}
    pipeline.submit(CaptureRecord(project=project, prompt="q", response="a"))
    assert not pipeline.flush(timeout=3)  # nothing can be delivered
    meta = pipeline.outbox.meta()
    pipeline.close(timeout=0.5)

    assert "cannot reach Label Studio" in (meta.get("last_error") or "")
    assert PASSWORD not in str(meta) and "admin" not in str(meta)
    assert caplog.records and not any(PASSWORD in r.getMessage() for r in caplog.records)
    assert PASSWORD not in str(pipeline.health())
    assert pipeline.outbox.stats().pending == 1


def test_status_and_errors_print_no_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://admin:{PASSWORD}@127.0.0.1:{closed_port()}"
    assert cli.main(["status", "--state-dir", str(tmp_path), "--url", url]) in (0, 1)
    assert cli.main(["status", "--outbox", f"mysql://root:{PASSWORD}@db/app"]) == 1
    assert cli.main(["status", "--outbox", f"postgresql://root:{PASSWORD}@127.0.0.1:{closed_port()}/app"]) == 1
    assert cli.main(["status", "--outbox", f"postgresql://root:p@{PASSWORD}@127.0.0.1:{closed_port()}/app"]) == 1
    out = capsys.readouterr()
    assert "127.0.0.1" in out.out + out.err
    assert PASSWORD not in out.out + out.err
    assert "write it as %40" in out.err


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("postgresql://host?password=p@ss", "postgresql://host?password=***"),
        ("http://ls:8080/?next=a@b.c", "http://ls:8080/?next=a%40b.c"),
    ],
)
def test_an_at_sign_in_a_query_is_not_taken_for_credentials(text: str, kept: str) -> None:
    assert public_url(text) == kept
    log = '{"url": "http://ls:8080", "email": "a@b.c"}'
    assert strip_credentials(log) == log


@pytest.mark.parametrize(
    "text", ["'x' * 300_000", "'http://' + 'a' * 300_000", "'http://' + 'a@' * 150_000 + '/'", "'http://a' * 40_000"]
)
def test_credentials_are_stripped_from_any_long_text_in_linear_time(text: str) -> None:
    """Error messages may quote what Label Studio answered: no text makes the search quadratic
    (300,000 characters took minutes when the scheme's length was unbounded). A process of its
    own, as a search holds the GIL: it is stopped if it runs on."""
    import subprocess
    import sys

    code = f"from langchain_label_studio.urls import strip_credentials; strip_credentials({text})"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
