"""Versioned exports against a real Label Studio: the manifest beside each JSONL, ``--since-last``
and ``--cursor`` exporting only annotations new or changed since, and exports that Hugging Face
``datasets`` loads with the columns TRL reads."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import prefilled, project_tasks, tasks_where, wait_delivered
from langchain_core.language_models.fake import FakeListLLM
from test_export import CHATS, annotate, annotator, assistant, chat, cli, lines  # noqa: F401 (annotator: a fixture)

import langchain_label_studio
from langchain_label_studio import LabelStudioCallbackHandler
from langchain_label_studio.export import SUPERSEDES, Cursor, export_dataset, manifest_location, merge_versions
from langchain_label_studio.urls import public_url

QUESTIONS = {"France": "Capital of France?", "Sum": "2 + 2?", "Sky": "Colour of the sky?", "Owls": "Owls?"}
ANSWERS = ["Paris.", "Four.", "Blue.", "Hoot."]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_of(path: Path) -> dict:
    return json.loads(Path(f"{path}.manifest.json").read_text(encoding="utf-8"))


def change(admin, annotation_id: int, task: dict, text: str, rating: int) -> str:
    """Edit an annotation as an annotator updating it would; returns its new ``updated_at``."""
    result = [
        {"from_name": "response", "to_name": "prompt", "type": "textarea", "value": {"text": [text]}},
        {"from_name": "rating", "to_name": "prompt", "type": "rating", "value": {"rating": rating}},
    ]
    resp = admin._call("PATCH", f"/api/annotations/{annotation_id}/", "updating", json={"result": result})
    assert resp.status_code == 200, resp.text
    return resp.json()["updated_at"]


@pytest.fixture
def questions(label_studio, admin, ls_env, project_name) -> tuple[dict, dict[str, dict]]:
    """A project of its own with four answered questions (through the handler); the project and its tasks by name."""
    handler = LabelStudioCallbackHandler(project_name=project_name, mode="prompt")
    llm = FakeListLLM(responses=ANSWERS, callbacks=[handler])
    for question in QUESTIONS.values():
        llm.invoke(question)
    assert handler.flush(60), handler.pipeline.health()
    project, tasks = project_tasks(admin, project_name)
    return project, dict(zip(QUESTIONS, tasks, strict=True))


def sft_row(task: dict, annotation_id: int, answer: str) -> dict:
    data = task["data"]
    return {
        "messages": [{"role": "user", "content": data["prompt"]}, *assistant(answer)],
        "turn": 1,
        "task_id": task["id"],
        "annotation_id": annotation_id,
        "capture_id": data["capture_id"],
        "session_id": None,
        "user_id": None,
        "route": None,
    }


def test_manifest_then_since_last(label_studio, admin, questions, tmp_path):
    project, tasks = questions
    france, total, sky, owls = (tasks[k] for k in QUESTIONS)
    a_france = annotate(admin, france, "Paris is the capital of France.", 5, to_name="prompt")
    a_sum = annotate(admin, total, prefilled(total), 3, to_name="prompt")
    annotate(admin, sky, cancelled=True)
    a_sky = annotate(admin, sky, "The sky is blue.", 4, to_name="prompt")
    annotate(admin, sky, cancelled=True)  # a second annotator skipped it
    before = datetime.now(UTC)

    first = tmp_path / "sft-2026-12-01.jsonl"
    proc = cli(label_studio, "--project", project["title"], "--format", "sft", "--out", str(first))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == f"wrote 3 row(s) to {first}; manifest {first}.manifest.json\n"
    assert lines(first) == [
        sft_row(france, a_france, "Paris is the capital of France."),
        sft_row(total, a_sum, "Four."),
        sft_row(sky, a_sky, "The sky is blue."),
    ]
    m1 = manifest_of(first)
    assert m1["sha256"] == sha256(first.read_bytes()) and m1["bytes"] == first.stat().st_size
    assert datetime.fromisoformat(m1["created_at"]) - before < timedelta(minutes=2)
    assert {k: m1[k] for k in ("kind", "file", "plugin_version", "label_studio_url", "project", "format")} == {
        "kind": "langchain-label-studio export",
        "file": first.name,
        "plugin_version": langchain_label_studio.__version__,
        "label_studio_url": public_url(label_studio.url),
        "project": {"id": project["id"], "title": project["title"]},
        "format": "sft",
    }
    assert (m1["policy"], m1["label_threshold"], m1["incremental"]) == ("latest", 4, None)
    assert m1["filters"] == {"min_rating": None, "since": None, "until": None, "route": None, "user": None}
    counts = {k: v for k, v in m1["counts"].items() if k != "skipped_reasons"}
    assert counts == {
        "rows": 3,
        "tasks": {"read": 3, "exported": 3},
        "annotations": {"read": 5, "exported": 3},
        "skipped": {
            "cancelled_annotations": 2,
            "tasks_not_matching_filters": 0,
            "tasks_without_annotation": 0,
            "tasks_without_row": 0,
            "tasks_unchanged": 0,
        },
    }
    assert set(m1["counts"]["skipped_reasons"]) == set(m1["counts"]["skipped"])
    cursor = m1["cursor"]["annotations"]
    assert {int(i) for i in cursor} >= {a_france, a_sum, a_sky} and len(cursor) == 5
    assert m1["cursor"]["updated_at"] == max(cursor.values())

    # A week later: one new annotation, one changed, one untouched.
    a_owls = annotate(admin, owls, "Owls hoot at night.", 4, to_name="prompt")
    change(admin, a_sum, total, "2 + 2 = 4.", 5)
    second = tmp_path / "sft-2026-12-08.jsonl"
    proc = cli(label_studio, "--project", str(project["id"]), "--format", "sft", "--out", str(second), "--since-last")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == (
        f"wrote 2 row(s) to {second}, new or changed since {first.name}; manifest {second}.manifest.json\n"
    )
    assert lines(second) == [sft_row(total, a_sum, "2 + 2 = 4."), sft_row(owls, a_owls, "Owls hoot at night.")]
    m2 = manifest_of(second)
    assert m2["sha256"] == sha256(second.read_bytes())
    assert m2["incremental"] == {
        "previous": {
            "manifest": f"{first.name}.manifest.json",
            "file": first.name,
            "sha256": m1["sha256"],
            "created_at": m1["created_at"],
        },
        "supersedes": SUPERSEDES,
    }
    assert "same annotation_id" in m2["incremental"]["supersedes"]
    assert m2["counts"]["rows"] == 2 and m2["counts"]["tasks"] == {"read": 4, "exported": 2}
    assert m2["counts"]["skipped"]["tasks_unchanged"] == 2
    assert set(m2["cursor"]["annotations"]) == set(cursor) | {str(a_owls)}
    assert m2["cursor"]["annotations"][str(a_sum)] > cursor[str(a_sum)]
    assert m2["cursor"]["updated_at"] > m1["cursor"]["updated_at"]
    assert merge_versions([first, second]) == [  # the changed annotation's row supersedes its first one
        sft_row(france, a_france, "Paris is the capital of France."),
        sft_row(total, a_sum, "2 + 2 = 4."),
        sft_row(sky, a_sky, "The sky is blue."),
        sft_row(owls, a_owls, "Owls hoot at night."),
    ]

    # Nothing changed since: an empty version; written again, it still follows the one before.
    third = tmp_path / "sft-2026-12-15.jsonl"
    for _ in range(2):
        m3 = export_dataset(project["id"], "sft", third, since_last=True, **_server(label_studio))
        assert third.read_bytes() == b"" and m3 == manifest_of(third)
        assert m3["counts"]["rows"] == 0 and m3["counts"]["skipped"]["tasks_unchanged"] == 4
        assert m3["sha256"] == sha256(b"") and m3["incremental"]["previous"]["file"] == second.name

    # Another format is another dataset: its first --since-last export holds everything.
    pref = tmp_path / "dpo-2026-12-15.jsonl"
    m4 = export_dataset(project["title"], "preference", pref, since_last=True, **_server(label_studio))
    assert m4["incremental"]["previous"] is None
    assert [(r["task_id"], r["annotation_id"]) for r in lines(pref)] == [
        (france["id"], a_france),
        (total["id"], a_sum),
        (sky["id"], a_sky),
        (owls["id"], a_owls),
    ]
    assert m4["counts"]["skipped"]["tasks_without_row"] == 0

    # Other options are not a version of the same dataset.
    proc = cli(
        label_studio, "--project", project["title"], "--format", "sft", "--out", str(tmp_path / "x.jsonl"),
        "--since-last", "--min-rating", "4",
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: the latest export of this project and format beside it (sft-2026-12-15")
    assert "min_rating null (now 4.0)" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "x.jsonl").exists()


def test_stdout_manifest_and_cursor_file(label_studio, admin, questions, tmp_path):
    project, tasks = questions
    france, total = tasks["France"], tasks["Sum"]
    a_france = annotate(admin, france, "Paris.", 5, to_name="prompt")
    base = ["--project", project["title"], "--format", "rating", "--out", "-"]

    def run(*args: str) -> tuple[list[dict], str]:
        proc = cli(label_studio, *base, *args)
        assert proc.returncode == 0, proc.stderr
        return [json.loads(line) for line in proc.stdout.splitlines()], proc.stdout

    proc = cli(label_studio, *base)
    assert proc.returncode == 0 and proc.stderr == "wrote 1 row(s) to stdout\n"  # no manifest unless asked
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["task_id"], r["rating"], r["label"]) for r in rows] == [(france["id"], 5, True)]

    manifest = tmp_path / "stdout.manifest.json"
    _, text = run("--manifest", str(manifest))
    doc = json.loads(manifest.read_text(encoding="utf-8"))
    assert (doc["file"], doc["sha256"], doc["counts"]["rows"]) == ("-", sha256(text.encode()), 1)

    proc = cli(label_studio, *base, "--since-last")
    assert proc.returncode == 1 and "give --manifest PATH" in proc.stderr

    cursor = tmp_path / "kto.cursor.json"
    rows, _ = run("--cursor", str(cursor))
    assert [r["annotation_id"] for r in rows] == [a_france]
    kept = json.loads(cursor.read_text(encoding="utf-8"))
    assert kept["kind"] == "langchain-label-studio export cursor" and kept["format"] == "rating"
    assert kept["cursor"]["annotations"] == {str(a_france): kept["cursor"]["updated_at"]}
    assert run("--cursor", str(cursor))[0] == []

    a_sum = annotate(admin, total, "Four.", 2, to_name="prompt")
    rows, _ = run("--cursor", str(cursor))
    assert [(r["annotation_id"], r["label"]) for r in rows] == [(a_sum, False)]
    change(admin, a_france, france, "Paris, on the Seine.", 3)
    rows, _ = run("--cursor", str(cursor), "--manifest", str(manifest))
    assert [(r["annotation_id"], r["rating"], r["label"]) for r in rows] == [(a_france, 3, False)]
    doc = json.loads(manifest.read_text(encoding="utf-8"))
    assert doc["incremental"]["previous"]["cursor_file"] == str(cursor)
    assert run("--cursor", str(cursor))[0] == []

    proc = cli(label_studio, "--project", project["title"], "--format", "sft", "--out", "-", "--cursor", str(cursor))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: the cursor {cursor} belongs to an export with other options: format")
    proc = cli(label_studio, *base, "--cursor", str(cursor), "--since-last")
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr


def test_cursor_compares_each_annotation():
    """An annotation saved while an export read later pages has an ``updated_at`` below the
    high-water mark and is still new to the cursor; one saved again is changed."""
    read = [{"id": 1, "updated_at": "2026-12-01T10:00:00Z"}, {"id": 3, "updated_at": "2026-12-01T10:05:00Z"}]
    cursor = Cursor()
    for annotation in read:
        cursor.add(annotation)
    assert cursor.to_json() == {
        "updated_at": "2026-12-01T10:05:00Z",
        "annotations": {"1": "2026-12-01T10:00:00Z", "3": "2026-12-01T10:05:00Z"},
    }
    assert not any(cursor.changed(a) for a in read)
    assert cursor.changed({"id": 2, "updated_at": "2026-12-01T10:01:00Z"})
    assert cursor.changed({"id": 1, "updated_at": "2026-12-02T09:00:00Z"})
    assert Cursor.from_json(cursor.to_json(), "x").seen == cursor.seen
    with pytest.raises(ValueError, match="x holds no export cursor"):
        Cursor.from_json({"annotations": [1]}, "x")


def test_manifest_location():
    assert manifest_location("data/sft.jsonl") == Path("data/sft.jsonl.manifest.json")
    assert manifest_location("data/sft.jsonl", "m.json") == Path("m.json")
    assert manifest_location("data/sft.jsonl", False) is None
    assert manifest_location("-") is None and manifest_location("-", "m.json") == Path("m.json")


def test_merge_versions_keeps_each_tasks_latest_rows(tmp_path):
    def version(name: str, *rows: tuple[int, int, str]) -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps({"task_id": t, "turn": n, "text": x}) + "\n" for t, n, x in rows))
        return path

    v1 = version("v1.jsonl", (1, 1, "a"), (1, 2, "b"), (2, 1, "c"))
    v2 = version("v2.jsonl", (3, 1, "d"), (1, 1, "a2"))  # task 1 again: its turn 2 row is gone
    v3 = version("v3.jsonl")
    assert [(r["task_id"], r["turn"], r["text"]) for r in merge_versions([v1, v2, v3])] == [
        (1, 1, "a2"),
        (2, 1, "c"),
        (3, 1, "d"),
    ]


# -- Hugging Face datasets ---------------------------------------------------------------------
@pytest.fixture
def varied_chats(admin, example_app, annotator):  # noqa: F811 (the fixture imported above)
    """Chats whose rows differ where Arrow needs one type a column: tool calls in one dialogue
    only, end-user feedback on one task only, ratings high and low, edited and kept answers."""
    user = f"ds-{uuid.uuid4().hex[:8]}"
    texts = {"weather": "What is the weather in Oslo?", "hello": "Hello", "bye": "Bye"}
    for name, text in texts.items():
        chat(example_app, user, f"{user}-{name}", text)
        wait_delivered(example_app)
    tasks = {name: tasks_where(admin, CHATS, session_id=f"{user}-{name}")[0] for name in texts}
    weather = tasks["weather"]
    admin.update_task(weather["id"], {**weather["data"], "feedback": [{"score": 1.0, "comment": None, "at": "x"}]})
    annotate(admin, weather, "Sunny, 21°C in Oslo.", 5)
    annotate(admin, tasks["hello"], prefilled(tasks["hello"]), 2)
    annotate(admin, tasks["bye"], "Goodbye!", 4, completed_by=annotator)
    return user


def struct_messages(feature) -> bool:
    """A list of ``{role, content, ...}`` structs of strings (Arrow's one type for every message)."""
    from datasets import List, Value

    inner = feature.feature if isinstance(feature, List) else None
    return isinstance(inner, dict) and inner.get("role") == inner.get("content") == Value("string")


def json_messages(feature) -> bool:
    """A list of JSON values: ``datasets`` >= 5 keeps messages of differing keys (a tool call, a
    tool's answer) this way, each message exactly as exported."""
    from datasets import Json, List

    return isinstance(feature, List) and isinstance(feature.feature, Json)


def test_exports_load_with_datasets(label_studio, varied_chats, tmp_path, monkeypatch):
    """Each format loads with ``load_dataset("json")`` as TRL reads it: message lists whose items
    have a role and content, ``label`` a bool. Loaded again with Arrow's own type inference (as
    ``datasets`` < 5 does), no column has values of two types."""
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = str(tmp_path / "hf")
    columns = {"sft": ["messages"], "preference": ["prompt", "chosen", "rejected"], "rating": ["prompt", "completion"]}
    for fmt, message_columns in columns.items():
        out = tmp_path / f"{fmt}.jsonl"
        doc = export_dataset(CHATS, fmt, out, user=varied_chats, **_server(label_studio))
        rows = lines(out)
        assert len(rows) == doc["counts"]["rows"] >= 2, fmt

        ds = datasets.load_dataset("json", data_files=str(out), split="train", cache_dir=cache)
        assert ds.num_rows == len(rows) and set(ds.column_names) == set(rows[0]), fmt
        for column in message_columns:
            feature = ds.features[column]
            assert struct_messages(feature) or json_messages(feature), (fmt, column, feature)
            for loaded, row in zip(ds[column], rows, strict=True):
                assert [{k: v for k, v in m.items() if v is not None} for m in loaded] == row[column]
                assert all(isinstance(m["role"], str) and isinstance(m["content"], str) for m in loaded)
        if fmt == "rating":
            assert ds.features["label"] == datasets.Value("bool")
            assert ds["label"] == [r["label"] for r in rows] and set(ds["label"]) == {True, False}
            assert ds["user_feedback"] == [r["user_feedback"] for r in rows]
            assert "Json" not in repr(ds.features["user_feedback"])
        if fmt == "sft":
            assert json_messages(ds.features["messages"])  # the weather chat's tool call and tool answer
            assert any(m.get("tool_calls") for r in rows for m in r["messages"])

        arrow = datasets.load_dataset(
            "json", data_files=str(out), split="train", cache_dir=cache, on_mixed_types=None
        )  # fmt: skip
        assert "Json" not in repr(arrow.features), (fmt, arrow.features)
        for column in message_columns:
            assert struct_messages(arrow.features[column]), (fmt, column, arrow.features[column])
        assert arrow.features["task_id"] == arrow.features["annotation_id"] == datasets.Value("int64")
        if fmt == "rating":
            assert arrow.features["label"] == datasets.Value("bool")
            assert arrow.features["rating"] in (datasets.Value("int64"), datasets.Value("float64"))


def _server(label_studio) -> dict[str, str]:
    return {"url": label_studio.url, "api_key": label_studio.api_key}
