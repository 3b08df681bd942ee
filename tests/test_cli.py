"""The operator's command line: status, dead letters (list, show, retry once fixed, drop), check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, project_tasks
from faults import FaultProxy

from langchain_label_studio.label_config import CHAT_CONFIG, PROMPT_CONFIG
from langchain_label_studio.pipeline import Pipeline
from langchain_label_studio.project import Project
from langchain_label_studio.record import CaptureRecord
from langchain_label_studio.settings import Settings

CLI = [sys.executable, "-m", "langchain_label_studio.cli"]
NEEDS_CONTEXT = """<View>
<Text name="prompt" value="$prompt"/>
<Text name="context" value="$context"/>
<TextArea name="response" toName="prompt"/>
</View>"""


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, timeout=300
    )


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
    assert not pipeline.flush(2)
    pipeline.close(timeout=0.5)

    out = cli("status", env={**env, "LABEL_STUDIO_URL": proxy.url})
    assert out.returncode == 0, out.stderr
    assert "NOT reachable" in out.stdout
    assert "pending        3" in out.stdout and f"{project_name}-waiting" in out.stdout
    assert "dead letters   2" in out.stdout
    assert "cannot reach Label Studio" in out.stdout
    report = json.loads(cli("status", "--format", "json", env=env).stdout)
    assert report[0]["pending"] == 3 and report[0]["dead_letters"] == 2

    listing = cli("dead-letters", "list", env=env)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.count(project_name) == 2 and "400" in listing.stdout and "context" in listing.stdout
    seqs = [int(line.split()[0]) for line in listing.stdout.splitlines() if project_name in line]
    shown = json.loads(cli("dead-letters", "show", str(seqs[0]), env=env).stdout)
    assert shown["record"]["prompt"] == "one" and "context" in shown["reason"]

    # the operator fixes the project, then replays: delivered once
    admin._call("PATCH", f"/api/projects/{refusing['id']}", "fixing", json={"label_config": PROMPT_CONFIG})
    proxy.start()
    retried = cli("dead-letters", "retry", "--all", env={**env, "LABEL_STUDIO_URL": proxy.url})
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
    bad = cli("dead-letters", "show", "999999", env=env)
    assert bad.returncode == 1 and bad.stderr.startswith("error: no dead letter") and "Traceback" not in bad.stderr


def test_check(label_studio, admin, project_name):
    env = label_studio.env()
    ok = cli("check", "--app", "example_app.app:app", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "Jokes" in ok.stdout and "Support chats" in ok.stdout

    admin.create_project(project_name, PROMPT_CONFIG)
    misfit = cli("check", "--project", project_name, "--mode", "chat", env=env)
    assert misfit.returncode == 1
    assert f"project '{project_name}'" in misfit.stderr and "cannot take chat captures" in misfit.stderr
    admin.create_project(f"{project_name}-chat", CHAT_CONFIG)
    assert cli("check", "--project", f"{project_name}-chat", "--mode", "chat", env=env).returncode == 0

    refused = cli("check", env={**env, "LABEL_STUDIO_API_KEY": "wrong-token"})
    assert refused.returncode == 1 and "refused" in refused.stderr and "wrong-token" not in refused.stderr
    down = cli("check", "--url", "http://127.0.0.1:9", env=env)
    assert down.returncode == 1 and "does not answer" in down.stderr
    assert "Traceback" not in refused.stderr + down.stderr
