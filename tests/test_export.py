"""Export of annotated captures as TRL datasets, against a real Label Studio annotated through its API."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import ROOT, prefilled, project_tasks, tasks_where, wait_delivered
from langchain_core.language_models.fake import FakeListLLM

from langchain_label_studio import LabelStudioCallbackHandler
from langchain_label_studio.export import export

CHATS = "Support chats"
JOKES = "Jokes"
ANNOTATOR = "export-annotator@example.com"
CLI = str(ROOT / ".venv" / "bin" / "langchain-label-studio")


def chat(app, user: str, session: str, text: str) -> None:
    body = {"input": {"messages": [{"type": "human", "content": text}]}}
    resp = app.post("/chat/invoke", json=body, headers={"X-User-ID": user, "X-Session-ID": session})
    assert resp.status_code == 200, resp.text


def annotate(
    admin,
    task: dict,
    text: str | None = None,
    rating: int | None = None,
    *,
    to_name: str = "dialogue",
    cancelled: bool = False,
    completed_by: int | None = None,
) -> int:
    """Submit an annotation as an annotator would; returns its id."""
    result = []
    if text is not None:
        result.append({"from_name": "response", "to_name": to_name, "type": "textarea", "value": {"text": [text]}})
    if rating is not None:
        result.append({"from_name": "rating", "to_name": to_name, "type": "rating", "value": {"rating": rating}})
    body: dict = {"result": result, "was_cancelled": cancelled}
    if completed_by is not None:
        body["completed_by"] = completed_by
    resp = admin._call("POST", f"/api/tasks/{task['id']}/annotations/", "annotating", json=body)
    assert resp.status_code == 201, resp.text
    annotation = resp.json()
    assert annotation["completed_by"] == (completed_by or annotation["completed_by"])
    return annotation["id"]


@pytest.fixture
def annotator(admin) -> int:
    """A second Label Studio user (created once through ``/api/users/``); returns its id."""
    users = admin._call("GET", "/api/users/", "listing users").json()
    found = [u["id"] for u in users if u["email"] == ANNOTATOR]
    if found:
        return found[0]
    body = {"email": ANNOTATOR, "username": "export-annotator", "first_name": "Second"}
    return admin._call("POST", "/api/users/", "creating a user", json=body).json()["id"]


def cli(label_studio, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **label_studio.env(), **(env or {})}
    return subprocess.run([CLI, "export", *args], env=full_env, capture_output=True, text=True, timeout=120)


def lines(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def trace(task: dict, annotation_id: int, turn: int = 1) -> dict:
    """What every row carries to trace it back: the turn it cuts at (1-based), task, annotation, capture."""
    data = task["data"]
    return {
        "turn": turn,
        "task_id": task["id"],
        "annotation_id": annotation_id,
        "capture_id": data["capture_id"],
        "session_id": data["session_id"],
        "user_id": data["user_id"],
        "route": data["route"],
    }


def assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


@pytest.fixture
def annotated_chats(admin, example_app, annotator):
    """Six captured chats of one user, annotated six ways."""
    user = f"exp-{uuid.uuid4().hex[:8]}"
    texts = {
        "edit": "What is the weather in Paris?",
        "keep": "Hi",
        "skip": "Skip me",
        "two": "Two annotators",
        "rating_only": "Only a rating",
        "none": "Nobody looks at me",
    }
    sessions = {name: f"{user}-{name}" for name in texts}
    for name, text in texts.items():
        chat(example_app, user, sessions[name], text)
        wait_delivered(example_app)
    tasks = {name: tasks_where(admin, CHATS, session_id=session)[0] for name, session in sessions.items()}
    assert {t["data"]["user_id"] for t in tasks.values()} == {user}

    edit = tasks["edit"]
    feedback = [{"score": 1, "comment": "spot on"}]
    admin.update_task(edit["id"], {**edit["data"], "feedback": feedback})
    ids = {
        "edit": annotate(admin, edit, "It is sunny and 21°C in Paris today.", 5),
        "keep": annotate(admin, tasks["keep"], prefilled(tasks["keep"]), 3),
        "skip": annotate(admin, tasks["skip"], cancelled=True),
        "two_first": annotate(admin, tasks["two"], "The admin's answer", 5),
        "two_latest": annotate(admin, tasks["two"], "The annotator's answer", 2, completed_by=annotator),
        "rating_only": annotate(admin, tasks["rating_only"], rating=4),
    }
    annotate(admin, tasks["two"], cancelled=True)
    return user, tasks, ids, feedback


def test_chat_export_all_formats(label_studio, admin, annotated_chats, tmp_path):
    user, tasks, ids, feedback = annotated_chats
    edit, keep, two, rating_only = tasks["edit"], tasks["keep"], tasks["two"], tasks["rating_only"]
    weather = edit["data"]["prompt"]
    call_id = weather[1]["tool_calls"][0]["id"]
    assert weather == [
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": '→ get_weather({"city": "Paris"})',
            "tool_calls": [{"id": call_id, "name": "get_weather", "args": {"city": "Paris"}}],
        },
        {
            "role": "tool",
            "content": "[get_weather] Sunny and 21°C in Paris.",
            "tool_call_id": call_id,
            "name": "get_weather",
        },
    ]
    original = {name: prefilled(t) for name, t in tasks.items()}
    assert original["edit"] == "Here is what I found: Sunny and 21°C in Paris."
    assert original["two"] == "(turn 1) You said: Two annotators"

    sft = [
        {
            "messages": [*weather, *assistant("It is sunny and 21°C in Paris today.")],
            **trace(edit, ids["edit"]),
        },
        {
            "messages": [{"role": "user", "content": "Hi"}, *assistant("(turn 1) You said: Hi")],
            **trace(keep, ids["keep"]),
        },
        {
            "messages": [{"role": "user", "content": "Two annotators"}, *assistant("The annotator's answer")],
            **trace(two, ids["two_latest"]),
        },
        {
            "messages": [{"role": "user", "content": "Only a rating"}, *assistant("(turn 1) You said: Only a rating")],
            **trace(rating_only, ids["rating_only"]),
        },
    ]
    preference = [
        {
            "prompt": weather,
            "chosen": assistant("It is sunny and 21°C in Paris today."),
            "rejected": assistant("Here is what I found: Sunny and 21°C in Paris."),
            **trace(edit, ids["edit"]),
        },
        {
            "prompt": [{"role": "user", "content": "Two annotators"}],
            "chosen": assistant("The annotator's answer"),
            "rejected": assistant("(turn 1) You said: Two annotators"),
            **trace(two, ids["two_latest"]),
        },
    ]
    rating = [
        {
            "prompt": weather,
            "completion": assistant("Here is what I found: Sunny and 21°C in Paris."),  # the answer rated
            "rating": 5,
            "label": True,
            "user_feedback": feedback,
            **trace(edit, ids["edit"]),
        },
        {
            "prompt": [{"role": "user", "content": "Hi"}],
            "completion": assistant("(turn 1) You said: Hi"),
            "rating": 3,
            "label": False,
            "user_feedback": None,
            **trace(keep, ids["keep"]),
        },
        {
            "prompt": [{"role": "user", "content": "Two annotators"}],
            "completion": assistant("(turn 1) You said: Two annotators"),
            "rating": 2,
            "label": False,
            "user_feedback": None,
            **trace(two, ids["two_latest"]),
        },
        {
            "prompt": [{"role": "user", "content": "Only a rating"}],
            "completion": assistant("(turn 1) You said: Only a rating"),
            "rating": 4,
            "label": True,
            "user_feedback": None,
            **trace(rating_only, ids["rating_only"]),
        },
    ]
    for fmt, expected in {"sft": sft, "preference": preference, "rating": rating}.items():
        out = tmp_path / f"{fmt}.jsonl"
        assert export(CHATS, fmt, out, user=user, page_size=2, **_server(label_studio)) == len(expected)
        assert lines(out) == expected, fmt

        cli_out = tmp_path / f"cli-{fmt}.jsonl"
        proc = cli(label_studio, "--project", CHATS, "--format", fmt, "--out", str(cli_out), "--user", user)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == f"wrote {len(expected)} row(s) to {cli_out}; manifest {cli_out}.manifest.json\n"
        assert cli_out.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")

    proc = cli(label_studio, "--project", CHATS, "--format", "rating", "--out", "-", "--user", user)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line) for line in proc.stdout.splitlines()] == rating

    proc = cli(
        label_studio, "--project", CHATS, "--format", "rating", "--out", "-", "--user", user, "--label-threshold", "3"
    )
    assert [json.loads(line)["label"] for line in proc.stdout.splitlines()] == [True, True, False, True]


def test_chat_export_policies_and_filters(label_studio, admin, annotated_chats, tmp_path):
    user, tasks, ids, _ = annotated_chats
    edit, keep, two, rating_only = tasks["edit"], tasks["keep"], tasks["two"], tasks["rating_only"]
    out = tmp_path / "out.jsonl"

    def run(*args: str) -> list[tuple[int, int, str]]:
        """(task id, annotation id, answer) of each row of a CLI export of the test user's chats."""
        proc = cli(label_studio, "--project", CHATS, "--format", "sft", "--out", str(out), "--user", user, *args)
        assert proc.returncode == 0, proc.stderr
        return [(r["task_id"], r["annotation_id"], r["messages"][-1]["content"]) for r in lines(out)]

    latest = [
        (edit["id"], ids["edit"], "It is sunny and 21°C in Paris today."),
        (keep["id"], ids["keep"], "(turn 1) You said: Hi"),
        (two["id"], ids["two_latest"], "The annotator's answer"),
        (rating_only["id"], ids["rating_only"], "(turn 1) You said: Only a rating"),
    ]
    admins = (two["id"], ids["two_first"], "The admin's answer")
    assert run() == latest
    assert run("--policy", "latest") == latest
    assert run("--policy", "first") == [latest[0], latest[1], admins, latest[3]]
    assert run("--policy", "best") == [latest[0], latest[1], admins, latest[3]]
    assert run("--min-rating", "4") == [latest[0], latest[3]]
    assert run("--min-rating", "4", "--policy", "best") == [latest[0], admins, latest[3]]
    assert run("--route", "/chat") == latest
    assert run("--route", "/joke") == []

    assert run("--since", keep["data"]["captured_at"], "--until", two["data"]["captured_at"]) == [latest[1]]
    assert run("--since", two["data"]["captured_at"]) == latest[2:]
    assert run("--until", keep["data"]["captured_at"]) == latest[:1]
    assert run("--since", "2999-01-01") == []
    since_z = two["data"]["captured_at"].replace("+00:00", "Z")
    assert run("--since", since_z) == latest[2:]

    rows = tmp_path / "py.jsonl"
    assert export(CHATS, "sft", rows, user=user, policy="best", min_rating=5, **_server(label_studio)) == 2
    assert [(r["task_id"], r["annotation_id"]) for r in lines(rows)] == [latest[0][:2], admins[:2]]


def test_prompt_route_export(label_studio, admin, example_app, tmp_path):
    user = f"exp-{uuid.uuid4().hex[:8]}"
    for topic in ["owls", "bees", "ants"]:
        resp = example_app.post("/joke/invoke", json={"input": {"topic": topic}}, headers={"X-User-ID": user})
        assert resp.status_code == 200
    wait_delivered(example_app)
    by_prompt = {t["data"]["prompt"]: t for t in tasks_where(admin, JOKES, user_id=user)}
    owls, bees = by_prompt["Tell me a joke about owls"], by_prompt["Tell me a joke about bees"]
    owl_joke = "Why did the owls cross the road? To get to the other side!"
    assert prefilled(owls) == owl_joke
    edited = annotate(admin, owls, "What do you call an owl magician? Hoo-dini.", 5, to_name="prompt")
    kept = annotate(admin, bees, prefilled(bees), 2, to_name="prompt")

    def prompt(topic: str) -> list[dict]:
        return [{"role": "user", "content": f"Tell me a joke about {topic}"}]

    better = "What do you call an owl magician? Hoo-dini."
    expected = {
        "sft": [
            {"messages": [*prompt("owls"), *assistant(better)], **trace(owls, edited)},
            {"messages": [*prompt("bees"), *assistant(prefilled(bees))], **trace(bees, kept)},
        ],
        "preference": [
            {
                "prompt": prompt("owls"),
                "chosen": assistant(better),
                "rejected": assistant(owl_joke),
                **trace(owls, edited),
            }
        ],
        "rating": [
            {
                "prompt": prompt("owls"),
                "completion": assistant(owl_joke),  # the model's answer is what the rating judges
                "rating": 5,
                "label": True,
                "user_feedback": None,
                **trace(owls, edited),
            },
            {
                "prompt": prompt("bees"),
                "completion": assistant(prefilled(bees)),
                "rating": 2,
                "label": False,
                "user_feedback": None,
                **trace(bees, kept),
            },
        ],
    }
    assert (owls["data"]["session_id"], owls["data"]["route"]) == (None, "/joke")
    for fmt, rows in expected.items():
        want = sorted(rows, key=lambda r: r["task_id"])
        out = tmp_path / f"{fmt}.jsonl"
        proc = cli(label_studio, "--project", JOKES, "--format", fmt, "--out", str(out), "--user", user)
        assert proc.returncode == 0, proc.stderr
        assert lines(out) == want, fmt
        assert export(JOKES, fmt, tmp_path / "py.jsonl", user=user, **_server(label_studio)) == len(want)
        assert lines(tmp_path / "py.jsonl") == want


def test_export_by_project_id_with_the_handler(label_studio, admin, ls_env, project_name, tmp_path, capsys):
    handler = LabelStudioCallbackHandler(project_name=project_name, mode="prompt")
    llm = FakeListLLM(responses=["Paris.", "Four."], callbacks=[handler])
    llm.invoke("Capital of France?")
    llm.invoke("2 + 2?")
    assert handler.flush(60), handler.pipeline.health()
    project, [paris, four] = project_tasks(admin, project_name)
    a1 = annotate(admin, paris, "Paris is the capital of France.", 4, to_name="prompt")
    annotate(admin, four, cancelled=True)

    expected = [
        {
            "prompt": [{"role": "user", "content": "Capital of France?"}],
            "chosen": assistant("Paris is the capital of France."),
            "rejected": assistant("Paris."),
            "task_id": paris["id"],
            "annotation_id": a1,
            "capture_id": paris["data"]["capture_id"],
            "session_id": None,
            "user_id": None,
            "route": None,
            "turn": 1,
        }
    ]
    out = tmp_path / "pref.jsonl"
    assert export(project["id"], "preference", out) == 1
    assert lines(out) == expected
    proc = cli(label_studio, "--project", str(project["id"]), "--format", "preference", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert lines(out) == expected
    assert export(project_name, "sft", out, min_rating=5) == 0
    assert lines(out) == []
    capsys.readouterr()
    assert export(project["id"], "sft", out, progress=True) == 1
    assert capsys.readouterr().err == "\rexport: 1 annotated task(s) read, 1 row(s) written\n"


def test_cli_errors_are_one_line(label_studio, tmp_path):
    out = tmp_path / "never.jsonl"
    base = ["--format", "sft", "--out", str(out)]
    cases = {
        "no Label Studio project named 'No such project": (["--project", "No such project", *base], {}),
        "not an ISO 8601 time: 'yesterday'": (["--project", CHATS, "--since", "yesterday", *base], {}),
        "Label Studio refused the API key": (["--project", CHATS, *base], {"LABEL_STUDIO_API_KEY": "not-a-key"}),
        "cannot reach Label Studio at http://127.0.0.1:9": (
            ["--project", CHATS, *base],
            {"LABEL_STUDIO_URL": "http://127.0.0.1:9"},
        ),
        "no Label Studio API key": (["--project", CHATS, *base], {"LABEL_STUDIO_API_KEY": ""}),
    }
    for message, (args, env) in cases.items():
        proc = cli(label_studio, *args, env=env)
        assert proc.returncode == 1, (message, proc.stderr)
        assert proc.stderr.startswith(f"error: {message}"), proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stdout == ""
    assert not out.exists() and list(tmp_path.iterdir()) == []


def _server(label_studio) -> dict[str, str]:
    return {"url": label_studio.url, "api_key": label_studio.api_key}
