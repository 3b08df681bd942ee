"""Every code block of the README runs as written, against the test Label Studio.

Python blocks run in a fresh interpreter; the Quick start's app is written to an ``app.py``
and served by the README's own ``uvicorn`` line, and its ``curl`` lines run against it (the
port substituted). Bash blocks run in ``bash`` with the test server's environment
(``LABEL_STUDIO_URL``, ``LABEL_STUDIO_API_KEY``, a fresh state dir) and ``.venv/bin`` first on
``PATH``. Each check asserts what a user would look for in Label Studio afterwards.

They run against the test Label Studio on PostgreSQL: on SQLite, Label Studio drops the
pre-filled answers of imports that run beside other clients' writes (README Limits), and the
README's projects ("Jokes", "Support chats") are written by other tests too.

A block is named by the start of its first line. Every ``python`` and ``bash`` block must be in :data:`RUN`
(with the test that runs it) or in :data:`NOT_RUN` (with the reason): a new block that is in
neither fails :func:`test_every_block_is_run_or_listed`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FEEDBACK_SECRET, LS_PG_DATA, LS_PG_DATABASE, LS_PG_PORT, ROOT, tasks_where
from faults import free_port
from test_langgraph_server import langgraph_server  # noqa: F401  (the fixture)

from langchain_label_studio import local
from langchain_label_studio.client import LabelStudioClient
from langchain_label_studio.outbox import open_outbox
from langchain_label_studio.project import Project
from langchain_label_studio.record import CaptureRecord
from langchain_label_studio.settings import Settings

README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent

#: Blocks this module runs, by first line: the test that runs each.
RUN = {
    "import uuid": "quick_start (served as app.py by the next block's uvicorn line)",
    "uvicorn app:app --port 8000": "test_quick_start_lands_in_jokes_and_support_chats",
    "from langchain_label_studio import Project, capture": "test_capture_block",
    "from langchain_core.language_models.fake import FakeListLLM": "test_callback_handler_block",
    "from langgraph_sdk import get_sync_client": "test_langgraph_sdk_block (langgraph dev of the example app)",
    "from langchain_core.language_models.fake_chat_models import FakeListChatModel": "test_challenger_block",
    "langchain-label-studio local up": "test_local_block",
    'langchain-label-studio export --project "Support chats" --format sft --out sft.jsonl': "test_export_blocks",
    "from langchain_label_studio.export import export": "test_export_blocks",
    'langchain-label-studio export --project "Support chats" --format sft --out data/': "test_dataset_version_blocks",
    "from langchain_label_studio.export import merge_versions": "test_dataset_version_blocks",
    "curl -X POST http://your-app/label-studio/feedback \\": "test_feedback_block",
    "langchain-label-studio status": "test_operations_block",
}

#: Blocks that cannot run here, by first line, with the reason.
NOT_RUN = {
    "bash example_app/run.sh": "runs the whole demo and the whole test suite (this test is part of it)",
    'pip install -e ".[all]"': "installs the package; tests/test_wheel.py builds the wheel and installs it",
    "export LABEL_STUDIO_URL=http://localhost:8080": "placeholders for the user's server; the tests set both",
    "python3 -m venv .venv-langgraph": "a second virtualenv and langgraph dev (tests/test_langgraph_server.py)",
    'pip install -e ".[all,postgres]"': "an install and a placeholder database "
    "host; tests/test_replicas.py runs the PostgreSQL outbox",
}


@pytest.fixture(scope="module")
def label_studio(label_studio_pg: local.LocalServer) -> local.LocalServer:
    """The test Label Studio on PostgreSQL (see the module's docstring)."""
    return label_studio_pg


# -- the README's blocks ---------------------------------------------------------------------------
@dataclass
class Block:
    lang: str
    text: str
    line: int

    @property
    def key(self) -> str:
        """Its first line, without a trailing comment or option synopsis: blocks are named by a start of it."""
        first = self.text.splitlines()[0]
        first = first.split("  #", 1)[0].split(" [", 1)[0]
        return first.rstrip()


def blocks(langs: tuple[str, ...] = ("python", "bash")) -> list[Block]:
    text = README.read_text()
    found = []
    for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S):
        if m.group(1) in langs:
            found.append(Block(m.group(1), m.group(2), text[: m.start()].count("\n") + 1))
    return found


def block(name: str) -> Block:
    """The README block whose first line starts with ``name`` (failing unless exactly one does)."""
    found = [b for b in blocks() if b.key.startswith(name)]
    assert len(found) == 1, f"{len(found)} README blocks start with {name!r}"
    return found[0]


def commands(text: str) -> list[str]:
    """The shell commands of a block: continuation lines joined, blank lines dropped."""
    return [c.strip() for c in re.sub(r"\\\n\s*", " ", text).splitlines() if c.strip()]


def test_every_block_is_run_or_listed():
    names = [*RUN, *NOT_RUN]
    for b in blocks():
        matching = [n for n in names if b.key.startswith(n)]
        assert matching, f"README line {b.line} ({b.key}): a block neither run here nor listed in NOT_RUN"
        assert len(matching) == 1, f"README line {b.line}: named by {matching}"
    for name in names:
        assert len([b for b in blocks() if b.key.startswith(name)]) == 1, f"{name!r}: no longer one README block"


def test_langgraph_json_block_is_the_example_apps():
    [shown] = [json.loads(b.text) for b in blocks(("json",))]
    real = json.loads((ROOT / "example_app" / "langgraph.json").read_text())
    assert {k: real[k] for k in shown} == shown


# -- running them ----------------------------------------------------------------------------------
def shell_env(server: local.LocalServer, state_dir: Path, **extra: str) -> dict[str, str]:
    """The environment a user would have: the server's URL and key, a state dir, .venv/bin first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_") and k != "OPENAI_API_KEY"}
    env.update(server.env(), LABEL_STUDIO_STATE_DIR=str(state_dir), **extra)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def bash(command: str, cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def python(code: str, cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def wait_for(find: Callable[[], list[dict]], what: str, timeout: float = 60.0) -> list[dict]:
    """Poll ``find`` until it returns something."""
    deadline = time.monotonic() + timeout
    while not (found := find()):
        assert time.monotonic() < deadline, f"{what}: not in Label Studio after {timeout:.0f}s"
        time.sleep(0.5)
    return found


def captured_after(task: dict, since: float) -> bool:
    at = task["data"].get("captured_at")
    stamp = at if isinstance(at, (int, float)) else datetime.fromisoformat(str(at)).timestamp()
    return stamp >= since - 1


def new_tasks(admin: LabelStudioClient, title: str, since: float, **where: Any) -> Callable[[], list[dict]]:
    return lambda: [t for t in tasks_where(admin, title, **where) if captured_after(t, since)]


def answers(task: dict) -> list[str]:
    """The texts pre-filled into the task's TextAreas."""
    return [
        "\n".join(r["value"]["text"]) for p in task["predictions"] for r in p["result"] if r.get("type") == "textarea"
    ]


# -- the Quick start -------------------------------------------------------------------------------
@dataclass
class QuickStart:
    folder: Path
    base: str
    env: dict[str, str]
    curls: list[str]


@pytest.fixture(scope="module")
def quick_start(label_studio: local.LocalServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuickStart]:
    """The Quick start's ``app.py``, served by the README's ``uvicorn`` line on a free port."""
    folder = tmp_path_factory.mktemp("quick-start")
    (folder / "app.py").write_text(block("import uuid").text)
    text = block("uvicorn app:app --port 8000").text
    port = free_port()
    assert "--port 8000" in text and "localhost:8000" in text
    serve, *curls = commands(
        text.replace("--port 8000", f"--port {port}").replace("localhost:8000", f"localhost:{port}")
    )
    assert serve.startswith("uvicorn app:app"), serve
    env = shell_env(label_studio, folder / "state", LABEL_STUDIO_FEEDBACK_SECRET=FEEDBACK_SECRET)
    with served(folder, serve, env, port) as base:
        yield QuickStart(folder, base, env, curls)


@contextlib.contextmanager
def served(folder: Path, command: str, env: dict[str, str], port: int) -> Iterator[str]:
    """Run ``command`` (a uvicorn line serving the Quick start's routes on ``port``) in
    ``folder`` until the app answers; yields its URL, then stops it with SIGTERM."""
    with open(folder / "uvicorn.log", "wb") as log:
        proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=folder, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/joke/input_schema").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, (folder / "uvicorn.log").read_text()[-3000:]
        time.sleep(0.2)
    try:
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_quick_start_lands_in_jokes_and_support_chats(quick_start: QuickStart, admin: LabelStudioClient):
    since = time.time()
    outputs = []
    for curl in quick_start.curls:
        out = bash(curl, quick_start.folder, quick_start.env)
        assert out.returncode == 0, out.stderr
        outputs.append(json.loads(out.stdout)["output"])
    assert len(outputs) == 2
    assert outputs[0] == "Why did the owl...? It was a hoot."
    assert outputs[1]["messages"][-1]["content"] == "Happy to help!"

    [joke] = wait_for(new_tasks(admin, "Jokes", since, user_id="alice", route="/joke"), "the joke")
    assert "owls" in json.dumps(joke["data"]["prompt"])
    assert answers(joke) == ["Why did the owl...? It was a hoot."]
    [chat] = wait_for(new_tasks(admin, "Support chats", since, user_id="alice", session_id="s-1"), "the chat")
    assert chat["data"]["route"] == "/chat"
    assert "Hi!" in json.dumps(chat["data"]) and "Happy to help!" in answers(chat)


def test_feedback_block(quick_start: QuickStart, admin: LabelStudioClient):
    user = f"fb-{uuid.uuid4().hex[:8]}"
    resp = httpx.post(
        f"{quick_start.base}/joke/invoke", json={"input": {"topic": "feedback"}}, headers={"X-User-ID": user}
    )
    assert resp.status_code == 200, resp.text
    token, request_id = resp.headers["X-Label-Studio-Feedback-Token"], resp.headers["X-Request-ID"]
    text = block("curl -X POST http://your-app/label-studio/feedback \\").text
    assert "http://your-app" in text and "<X-Label-Studio-Feedback-Token>" in text
    [curl] = commands(
        text.replace("http://your-app", quick_start.base).replace("<X-Label-Studio-Feedback-Token>", token)
    )
    out = bash(f"{curl} --fail-with-body", quick_start.folder, quick_start.env)
    assert out.returncode == 0, out.stdout + out.stderr

    def rated() -> list[dict]:
        return [t for t in tasks_where(admin, "Jokes", request_id=request_id) if t["data"].get("feedback_count")]

    [task] = wait_for(rated, "the feedback")
    assert task["data"]["user_id"] == user
    assert task["data"]["feedback_score"] == 1 and task["data"]["feedback_count"] == 1
    assert "Spot on" in json.dumps(task["data"]["feedback"])


def test_challenger_block(label_studio: local.LocalServer, admin: LabelStudioClient, tmp_path: Path):
    """The block's projects on the Quick start's routes (its last line, the middleware, mapping
    them instead), their ``challenger_rate`` raised to 1 so that one request of each makes a
    comparison: both answers land side by side in "Jokes (A/B)" and "Support chats (A/B)"."""
    app = block("import uuid").text
    plugin_line = app.rstrip().splitlines()[-1]
    assert plugin_line.startswith("app.add_middleware(LabelStudioMiddleware"), plugin_line
    wiring = """
import dataclasses
always = {"challenger_rate": 1.0}
routes = {"/joke": dataclasses.replace(jokes, **always), "/chat": dataclasses.replace(chats, **always)}
app.add_middleware(LabelStudioMiddleware, routes=routes)
"""
    challenger = block("from langchain_core.language_models.fake_chat_models import FakeListChatModel").text
    (tmp_path / "app.py").write_text(app.replace(plugin_line, "") + challenger + wiring)
    port, user, since = free_port(), f"ab-{uuid.uuid4().hex[:8]}", time.time()
    with served(tmp_path, f"uvicorn app:app --port {port}", shell_env(label_studio, tmp_path / "state"), port) as base:
        headers = {"X-User-ID": user, "X-Session-ID": f"s-{user}"}
        joke = httpx.post(f"{base}/joke/invoke", json={"input": {"topic": "ducks"}}, headers=headers)
        hi = {"input": {"messages": [{"type": "human", "content": "Hi"}]}}
        chat = httpx.post(f"{base}/chat/invoke", json=hi, headers=headers)
        assert joke.status_code == chat.status_code == 200
        for title, answer in (
            ("Jokes", joke.json()["output"]),
            ("Support chats", chat.json()["output"]["messages"][-1]["content"]),
        ):
            [task] = wait_for(new_tasks(admin, f"{title} (A/B)", since, user_id=user), f"the {title} comparison")
            data = task["data"]
            sides = {data["left_source"]: data["answer_left"], data["right_source"]: data["answer_right"]}
            assert sides == {"model": answer, "challenger": "A second opinion."}


# -- the other Python blocks -----------------------------------------------------------------------
def test_capture_block(label_studio: local.LocalServer, admin: LabelStudioClient, tmp_path: Path):
    """``capture(builder.compile(checkpointer=saver), ...)``, with the Quick start's ``builder``."""
    prelude = block("import uuid").text + "\nsaver = MemorySaver()\n"
    run = """
import sys
from langgraph.graph.state import CompiledStateGraph
assert isinstance(graph, CompiledStateGraph)
config = {"configurable": {"thread_id": sys.argv[1]}, "metadata": {"user_id": "carol"}}
state = graph.invoke({"messages": [{"role": "user", "content": "Hello graph"}]}, config)
print(state["messages"][-1].content)
"""
    thread = f"thread-{uuid.uuid4().hex[:8]}"
    since = time.time()
    out = python(
        prelude + block("from langchain_label_studio import Project, capture").text + run,
        tmp_path,
        shell_env(label_studio, tmp_path / "state"),
        thread,
    )
    assert out.stdout.strip() == "Why did the owl...? It was a hoot."
    [task] = wait_for(new_tasks(admin, "Support chats", since, session_id=thread), "the captured thread")
    assert task["data"]["user_id"] == "carol"
    assert "Hello graph" in json.dumps(task["data"]) and answers(task)[-1] == "Why did the owl...? It was a hoot."


def test_callback_handler_block(label_studio: local.LocalServer, admin: LabelStudioClient, tmp_path: Path):
    since = time.time()
    python(
        block("from langchain_core.language_models.fake import FakeListLLM").text,
        tmp_path,
        shell_env(label_studio, tmp_path / "state"),
    )
    [prompt] = wait_for(new_tasks(admin, "My Project", since), "the prompt-mode task")
    assert prompt["data"]["prompt"] == "Tell me a joke" and answers(prompt) == ["Why did the chicken..."]
    [chat] = wait_for(new_tasks(admin, "New Project with Chat", since), "the chat-mode task")
    assert "Always use a lot of emojis" in json.dumps(chat["data"]) and answers(chat)[-1] == "😀 A joke! 🎉"


def test_langgraph_sdk_block(
    langgraph_server,  # noqa: F811
    label_studio: local.LocalServer,
    admin: LabelStudioClient,
    tmp_path: Path,
):
    """The client calls, against ``langgraph dev`` serving example_app/langgraph.json (as the
    block before it starts it), its port in place of 2024."""
    text = block("from langgraph_sdk import get_sync_client").text
    assert "http://127.0.0.1:2024" in text
    code = text.replace("http://127.0.0.1:2024", langgraph_server.url) + "\nprint(thread)\n"
    thread = python(code, tmp_path, shell_env(label_studio, tmp_path / "state")).stdout.strip()

    def answered() -> list[dict]:
        return [t for t in tasks_where(admin, "Support chats", session_id=thread) if answers(t)]

    [task] = wait_for(answered, "the thread's task")
    assert task["data"]["user_id"] == "alice" and task["data"]["run_id"] and task["data"]["graph_id"] == "chat"
    assert "weather in Oslo?" in json.dumps(task["data"]["prompt"])


# -- the local Label Studio ------------------------------------------------------------------------
def test_local_block(label_studio: local.LocalServer, tmp_path: Path):
    """``up`` and ``status`` on the test server (its port and data dir in place of the synopsis'
    optional arguments, each checked to exist), ``down`` where nothing runs (stopping the test
    server would stop the other tests)."""
    env = shell_env(label_studio, tmp_path / "state")
    lines = commands(block("langchain-label-studio local up").text)
    assert [line.split()[2] for line in lines] == ["up", "status", "down"]
    for line in lines:
        action = line.split()[2]
        helptext = bash(f"langchain-label-studio local {action} --help", tmp_path, env).stdout
        for option in re.findall(r"\[(--[\w-]+)", line):
            assert f"{option} " in helptext, f"local {action} has no {option}"
        command = re.sub(r"\s*\[[^]]*\]", "", line.split("  #", 1)[0])
        if action == "down":
            out = bash(f"{command} --port {free_port()} --data-dir {tmp_path / 'none'}", tmp_path, env)
            assert (out.returncode, out.stdout) == (0, "not running\n"), out.stderr
            continue
        server = f"--port {LS_PG_PORT} --data-dir {LS_PG_DATA}"
        if action == "up" and "[--database" in line:
            server += f" --database {LS_PG_DATABASE}"
        out = bash(f"{command} {server}", tmp_path, env)
        assert out.returncode == 0, out.stderr
        assert f"export LABEL_STUDIO_URL={label_studio.url}\n" in out.stdout
        assert f"export LABEL_STUDIO_API_KEY={label_studio.api_key}\n" in out.stdout
        assert label_studio.password not in out.stdout
    assert local.status(LS_PG_PORT, LS_PG_DATA) is not None


# -- export and the operator's commands -------------------------------------------------------------
@dataclass
class Annotated:
    task_id: int
    user: str
    model_answer: str
    edited: str


@pytest.fixture(scope="module")
def annotated_chat(quick_start: QuickStart, admin_module: LabelStudioClient) -> Annotated:
    """A chat captured through the Quick start app, rated 5 with its answer corrected, as an
    annotator would in Label Studio."""
    user, session = f"erin-{uuid.uuid4().hex[:6]}", f"s-{uuid.uuid4().hex[:6]}"
    resp = httpx.post(
        f"{quick_start.base}/chat/invoke",
        json={"input": {"messages": [{"type": "human", "content": "What is 2 + 2?"}]}},
        headers={"X-User-ID": user, "X-Session-ID": session},
    )
    assert resp.status_code == 200, resp.text
    model_answer = resp.json()["output"]["messages"][-1]["content"]
    [task] = wait_for(lambda: tasks_where(admin_module, "Support chats", user_id=user, session_id=session), "the chat")
    edited = "2 + 2 = 4."
    admin_module._call(
        "POST",
        f"/api/tasks/{task['id']}/annotations/",
        "annotating",
        json={"result": annotation(admin_module, task, edited)},
    )
    return Annotated(task["id"], user, model_answer, edited)


@pytest.fixture(scope="module")
def admin_module(label_studio: local.LocalServer) -> Iterator[LabelStudioClient]:
    client = LabelStudioClient(label_studio.url, label_studio.legacy_token)
    yield client
    client.close()


def annotation(admin: LabelStudioClient, task: dict, edited: str) -> list[dict]:
    """The task's pre-filled latest answer, edited, and a rating of 5 on the same object."""
    [prediction] = task["predictions"]
    [answer, *_] = [r for r in reversed(prediction["result"]) if r["type"] == "textarea"]
    config = admin.get_project(task["project"])["label_config"]
    rating = re.search(rf'<Rating name="([^"]+)" toName="{re.escape(answer["to_name"])}"', config)
    assert rating, "no Rating on the answer's object"
    return [
        {**answer, "id": uuid.uuid4().hex[:10], "value": {"text": [edited]}, "origin": "manual"},
        {
            "id": uuid.uuid4().hex[:10],
            "from_name": rating.group(1),
            "to_name": answer["to_name"],
            "type": "rating",
            "value": {"rating": 5},
        },
    ]


def rows_of(path: Path, task_id: int) -> list[dict]:
    return [row for line in path.read_text().splitlines() if (row := json.loads(line))["task_id"] == task_id]


def test_export_blocks(label_studio: local.LocalServer, annotated_chat: Annotated, tmp_path: Path):
    env = shell_env(label_studio, tmp_path / "state")
    for command in commands(
        block('langchain-label-studio export --project "Support chats" --format sft --out sft.jsonl').text
    ):
        out = bash(command, tmp_path, env)
        assert out.returncode == 0, out.stderr
    [sft] = rows_of(tmp_path / "sft.jsonl", annotated_chat.task_id)
    assert sft["messages"][-1] == {"role": "assistant", "content": annotated_chat.edited}
    assert sft["user_id"] == annotated_chat.user and sft["route"] == "/chat"
    [dpo] = rows_of(tmp_path / "dpo.jsonl", annotated_chat.task_id)
    assert dpo["chosen"][-1]["content"] == annotated_chat.edited
    assert dpo["rejected"][-1]["content"] == annotated_chat.model_answer
    [kto] = rows_of(tmp_path / "kto.jsonl", annotated_chat.task_id)
    assert kto["rating"] == 5 and kto["label"] is True

    in_python = tmp_path / "python"
    in_python.mkdir()
    python(block("from langchain_label_studio.export import export").text, in_python, env)
    [row] = rows_of(in_python / "sft.jsonl", annotated_chat.task_id)
    assert row == sft


def test_dataset_version_blocks(
    label_studio: local.LocalServer, annotated_chat: Annotated, admin_module: LabelStudioClient, tmp_path: Path
):
    """The first version holds the annotated chat; after an edit, the next (--since-last) holds
    only that edit; merging the versions keeps the newest row."""
    env = shell_env(label_studio, tmp_path / "state")
    versions = block('langchain-label-studio export --project "Support chats" --format sft --out data/')
    first, second = commands(versions.text)
    out = bash(first, tmp_path, env)  # in a directory without data/: the export makes it
    assert out.returncode == 0, out.stderr
    [row] = rows_of(tmp_path / "data/sft-2026-12-01.jsonl", annotated_chat.task_id)
    manifest = json.loads((tmp_path / "data/sft-2026-12-01.jsonl.manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256((tmp_path / "data/sft-2026-12-01.jsonl").read_bytes()).hexdigest()

    [annotation_of] = admin_module.get_task(annotated_chat.task_id)["annotations"]
    result = [
        {**r, "value": {"text": ["2 + 2 = 4, always."]}} if r["type"] == "textarea" else r
        for r in annotation_of["result"]
    ]
    edit = f"/api/annotations/{annotation_of['id']}/"
    admin_module._call("PATCH", edit, "editing", json={"result": result})
    try:
        out = bash(second, tmp_path, env)
        assert out.returncode == 0, out.stderr
        [newer] = rows_of(tmp_path / "data/sft-2026-12-08.jsonl", annotated_chat.task_id)
        assert newer["messages"][-1]["content"] == "2 + 2 = 4, always."
        assert row["messages"][-1]["content"] == annotated_chat.edited

        show = f"\nimport json; print(json.dumps([r for r in rows if r['task_id'] == {annotated_chat.task_id}]))\n"
        merged = python(block("from langchain_label_studio.export import merge_versions").text + show, tmp_path, env)
        assert json.loads(merged.stdout) == [newer]
    finally:  # the annotation as the other tests of this module expect it
        admin_module._call("PATCH", edit, "restoring", json={"result": annotation_of["result"]})


def operations_outbox(server: local.LocalServer, state: Path, title: str) -> None:
    """An outbox of this server in ``state`` whose records 12 and 13 are dead letters."""
    store = open_outbox(Settings(url=server.url, api_key=server.api_key, state_dir=state))
    project = Project(title).to_dict()
    store.put_many([CaptureRecord(project, f"ops prompt {i}", f"ops answer {i}") for i in range(1, 14)])
    claimed = store.claim(100, 60)
    assert [c.seq for c in claimed] == list(range(1, 14))
    store.done(list(range(1, 12)))
    for seq in (12, 13):
        store.dead_letter(seq, "Label Studio said 400: a field is missing")
    store.close()


def test_operations_block(
    label_studio: local.LocalServer, admin: LabelStudioClient, annotated_chat: Annotated, tmp_path: Path
):
    """Each command of the block, in its order, on an outbox with two dead letters (12 and 13)."""
    title = f"readme-ops-{uuid.uuid4().hex[:8]}"
    state = tmp_path / "state"
    operations_outbox(label_studio, state, title)
    env = shell_env(label_studio, state)
    ran = []
    for command in commands(block("langchain-label-studio status").text):
        words = command.split("  #", 1)[0].split()[1:3]
        name = " ".join(w for w in words if not w.startswith("-") and not w[0].isdigit())
        ran.append(name)
        if name == "deliver":
            run_deliver(command, state, env, admin, title)
            continue
        assert name in OPERATION_CHECKS, f"a command of the block without a check here: {command}"
        out = bash(command, ROOT if name == "check" else tmp_path, env)
        assert out.returncode == 0, f"{command}: {out.stderr}"
        OPERATION_CHECKS[name](out.stdout, admin, title, tmp_path, annotated_chat)
    assert sorted(ran) == sorted([*OPERATION_CHECKS, "deliver"]), ran


def run_deliver(command: str, state: Path, env: dict[str, str], admin: LabelStudioClient, title: str) -> None:
    """``deliver`` runs until stopped: three captures waiting are delivered, then SIGTERM ends it."""
    store = open_outbox(Settings(url=env["LABEL_STUDIO_URL"], api_key=env["LABEL_STUDIO_API_KEY"], state_dir=state))
    project = Project(title).to_dict()
    store.put_many([CaptureRecord(project, f"waiting {i}", "delivered by deliver") for i in range(3)])
    store.close()
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        cwd=state.parent,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: [t for t in tasks_where(admin, title) if t["data"]["prompt"].startswith("waiting")][2:], "deliver"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr


def _status(out: str, admin: LabelStudioClient, title: str, *_: Any) -> None:
    assert "dead letters   2" in out and "reachable" in out and "NOT reachable" not in out


def _list(out: str, *_: Any) -> None:
    assert "a field is missing" in out and re.search(r"^\s*12\s", out, re.M) and re.search(r"^\s*13\s", out, re.M)


def _show(out: str, *_: Any) -> None:
    shown = json.loads(out)
    assert shown["record"]["prompt"] == "ops prompt 12" and "a field is missing" in shown["reason"]


def _retry(out: str, admin: LabelStudioClient, title: str, *_: Any) -> None:
    assert "1 dead letter(s) back in the queue" in out
    prompts = sorted(t["data"]["prompt"] for t in tasks_where(admin, title))
    assert prompts == ["ops prompt 13"]  # 12 was dropped before


def _drop(out: str, *_: Any) -> None:
    assert out.startswith("dropped 1 dead letter(s)")


def _check(out: str, *_: Any) -> None:
    assert out.startswith("ok: ") and "the token is accepted" in out and "Jokes, Support chats" in out


def _export(out: str, admin: LabelStudioClient, title: str, folder: Path, annotated: Annotated) -> None:
    [row] = rows_of(folder / "sft.jsonl", annotated.task_id)
    assert row["messages"][-1]["content"] == annotated.edited


OPERATION_CHECKS: dict[str, Callable[..., None]] = {
    "status": _status,
    "dead-letters list": _list,
    "dead-letters show": _show,
    "dead-letters retry": _retry,
    "dead-letters drop": _drop,
    "check": _check,
    "export": _export,
}
