"""Export rows from task dicts as Label Studio returns them: no server, no network.

The export's integration tests (tests/test_export*.py) read the same rows from a real Label
Studio; here each rule of a row is checked on its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from langchain_label_studio.export import (
    _check_options,
    _config,
    _earlier_export,
    _earlier_turns,
    _filters,
    _format_row,
    _kept,
    _series,
    _turn_review,
    _where,
    build_row,
    build_rows,
    parse_time,
)
from langchain_label_studio.label_config import CHAT_CONFIG, PROMPT_CONFIG

PROMPT = _config(PROMPT_CONFIG)
CHAT = _config(CHAT_CONFIG)


def textarea(name: str, text: str) -> dict[str, Any]:
    return {"from_name": name, "type": "textarea", "value": {"text": [text]}}


def rating(name: str, value: float) -> dict[str, Any]:
    return {"from_name": name, "type": "rating", "value": {"rating": value}}


def annotation(*result: dict[str, Any], id: int = 7, updated: str = "2026-01-02T00:00:00Z", **extra: Any) -> dict:
    return {"id": id, "result": list(result), "created_at": updated, "updated_at": updated, **extra}


def task(prompt: Any, answer: str | None, *annotations: dict[str, Any], **data: Any) -> dict[str, Any]:
    predictions = [{"id": 1, "result": [textarea("response", answer)]}] if answer is not None else []
    return {
        "id": 42,
        "data": {"prompt": prompt, "capture_id": "c1", "session_id": "s1", "user_id": "u1", "route": "/r", **data},
        "predictions": predictions,
        "annotations": list(annotations),
    }


TRACE = {"task_id": 42, "annotation_id": 7, "capture_id": "c1", "session_id": "s1", "user_id": "u1", "route": "/r"}


# -- one row per task --------------------------------------------------------------------------
def test_sft_takes_the_edited_answer_else_the_prefilled_one() -> None:
    edited = task("q", "model", annotation(textarea("response", "better")))
    kept = task("q", "model", annotation(rating("rating", 5)))
    assert build_row(edited, "sft", config=PROMPT) == {
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "better"}],
        "turn": 1,
        **TRACE,
    }
    assert build_row(kept, "sft", config=PROMPT)["messages"][-1] == {"role": "assistant", "content": "model"}


def test_preference_only_where_the_answer_changed() -> None:
    edited = task("q", "model", annotation(textarea("response", "better")))
    assert build_row(edited, "preference", config=PROMPT) == {
        "prompt": [{"role": "user", "content": "q"}],
        "chosen": [{"role": "assistant", "content": "better"}],
        "rejected": [{"role": "assistant", "content": "model"}],
        "turn": 1,
        **TRACE,
    }
    same = task("q", "model", annotation(textarea("response", " model ")))
    assert build_row(same, "preference", config=PROMPT) is None
    no_prediction = task("q", None, annotation(textarea("response", "better")))
    assert build_row(no_prediction, "preference", config=PROMPT) is None


def test_rating_rows_need_a_rating_and_label_it_against_the_threshold() -> None:
    rated = task("q", "model", annotation(rating("rating", 4)), feedback=[{"score": 1}])
    assert build_row(rated, "rating", config=PROMPT) == {
        "prompt": [{"role": "user", "content": "q"}],
        "completion": [{"role": "assistant", "content": "model"}],
        "rating": 4,
        "label": True,
        "user_feedback": [{"score": 1}],
        "turn": 1,
        **TRACE,
    }
    assert build_row(rated, "rating", config=PROMPT, label_threshold=4.5)["label"] is False
    half = task("q", "model", annotation(rating("rating", 3.5)))
    assert build_row(half, "rating", config=PROMPT)["rating"] == 3.5
    unrated = task("q", "model", annotation(textarea("response", "better")))
    assert build_row(unrated, "rating", config=PROMPT) is None


def test_tasks_without_a_usable_answer_or_annotation_give_no_row() -> None:
    cancelled = task("q", "model", annotation(textarea("response", "x"), was_cancelled=True))
    blank = task("q", "model", annotation(textarea("response", "  ")))
    no_answer = task("q", None, annotation(rating("rating", 5)))
    no_input = task(None, "model", annotation(rating("rating", 5)))
    for t in (cancelled, blank, no_answer, no_input):
        assert build_row(t, "sft", config=PROMPT) is None


def test_min_rating_leaves_out_low_and_unrated_tasks() -> None:
    low = task("q", "model", annotation(rating("rating", 2)))
    unrated = task("q", "model", annotation(textarea("response", "better")))
    high = task("q", "model", annotation(rating("rating", 4)))
    assert build_row(low, "sft", config=PROMPT, min_rating=3) is None
    assert build_row(unrated, "sft", config=PROMPT, min_rating=3) is None
    assert build_row(high, "sft", config=PROMPT, min_rating=3) is not None


def test_policy_picks_the_annotation() -> None:
    older = annotation(textarea("response", "older"), rating("rating", 5), id=1, updated="2026-01-01T00:00:00Z")
    newer = annotation(textarea("response", "newer"), rating("rating", 2), id=2, updated="2026-01-03T00:00:00Z")
    t = task("q", "model", older, newer)
    answers = {p: build_row(t, "sft", policy=p, config=PROMPT)["messages"][-1]["content"] for p in ("latest", "first")}
    assert answers == {"latest": "newer", "first": "older"}
    assert build_row(t, "sft", policy="best", config=PROMPT)["messages"][-1]["content"] == "older"


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        build_row(task("q", "model", annotation(rating("rating", 5))), "csv", config=PROMPT)  # type: ignore[arg-type]


# -- per-turn review: a row per reviewed turn ---------------------------------------------------
DIALOGUE = [
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello"},
    {"role": "user", "content": "weather?"},
    {"role": "assistant", "content": "rain"},
    {"role": "user", "content": "thanks"},
]


def chat_task(*result: dict[str, Any]) -> dict[str, Any]:
    return task(DIALOGUE, "welcome", annotation(*result))


def test_per_turn_sft_rows_cut_the_conversation_at_each_reviewed_turn() -> None:
    t = chat_task(textarea("correction_0", "hello there"), rating("rating_1", 2), rating("rating", 5))
    rows = build_rows(t, "sft", config=CHAT)
    assert [r["turn"] for r in rows] == [1, 2, 3]
    assert rows[0]["messages"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]
    # The history is what the user saw (the model's answers), whatever the annotator corrected.
    assert rows[1]["messages"] == [*DIALOGUE[:4]]
    assert rows[2]["messages"] == [*DIALOGUE, {"role": "assistant", "content": "welcome"}]
    assert all(r["annotation_id"] == 7 and r["task_id"] == 42 for r in rows)


def test_per_turn_preference_rows_are_the_corrected_turns() -> None:
    t = chat_task(textarea("correction_0", "hello there"), textarea("correction_1", " rain "), rating("rating_1", 2))
    rows = build_rows(t, "preference", config=CHAT)
    assert [(r["turn"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows] == [
        (1, "hello there", "hello")
    ]
    assert rows[0]["prompt"] == [{"role": "user", "content": "hi"}]


def test_per_turn_rating_rows_are_the_rated_turns() -> None:
    t = chat_task(textarea("correction_0", "hello there"), rating("rating_1", 2), rating("rating", 5))
    rows = build_rows(t, "rating", config=CHAT)
    assert [(r["turn"], r["rating"], r["label"], r["completion"][0]["content"]) for r in rows] == [
        (2, 2, False, "rain"),
        (3, 5, True, "welcome"),
    ]


def test_per_turn_min_rating_and_unreviewed_turns() -> None:
    t = chat_task(textarea("correction_0", "hello there"), rating("rating_1", 4))
    assert [r["turn"] for r in build_rows(t, "sft", config=CHAT, min_rating=3)] == [2]
    nothing = chat_task(textarea("correction_0", "hello"))  # the same as the model's: not a correction
    assert [r["turn"] for r in build_rows(nothing, "sft", config=CHAT)] == [3]


# -- the pieces a row is made of ----------------------------------------------------------------
Q = [{"role": "user", "content": "q"}]


def test_format_row_per_format() -> None:
    def row(fmt: str, answer: str = "a", rejected: str | None = "m", rating: float | None = 4) -> dict | None:
        return _format_row(fmt, Q, answer, rejected=rejected, rating=rating, threshold=4, feedback=None)  # type: ignore[arg-type]

    assert row("sft") == {"messages": [*Q, {"role": "assistant", "content": "a"}]}
    assert row("preference")["rejected"] == [{"role": "assistant", "content": "m"}]
    assert row("preference", rejected=None) is None and row("preference", answer=" m") is None
    assert row("rating", rating=3.0) == {
        "prompt": Q,
        "completion": [{"role": "assistant", "content": "m"}],  # the model's answer: what the rating judges
        "rating": 3,
        "label": False,
        "user_feedback": None,
    }
    assert row("rating", rejected=None)["completion"] == [{"role": "assistant", "content": "a"}]
    assert row("rating", rating=None) is None
    with pytest.raises(ValueError, match="unknown format"):
        row("csv")


def test_kept_needs_an_answer_and_the_minimum_rating() -> None:
    assert _kept("a", None, None) and _kept("a", 3, 3)
    assert not _kept(" \n", 5, None)
    assert not _kept("a", None, 3) and not _kept("a", 2.5, 3)


def test_earlier_turns_carry_the_history_the_user_saw() -> None:
    turns = list(_earlier_turns(DIALOGUE, "welcome"))
    assert [(i, original) for i, _, original in turns] == [(0, "hello"), (1, "rain")]
    assert turns[0][1] == DIALOGUE[:1]
    assert turns[1][1] == DIALOGUE[:3]
    assert list(_earlier_turns(DIALOGUE[:1], "hello")) == []


def test_turn_review_reads_the_turns_box_and_rating() -> None:
    result = [textarea("correction_0", "better"), rating("rating_0", 2), textarea("correction_1", " rain ")]
    assert _turn_review(result, CHAT, 0, "hello") == ("better", True, 2)
    assert _turn_review(result, CHAT, 1, "rain") == ("rain", False, None)  # the same answer: no correction
    assert _turn_review([textarea("correction_2", "  ")], CHAT, 2, "x") == ("x", False, None)


# -- the options of an export -------------------------------------------------------------------
def test_check_options_refuses_what_does_not_go_together() -> None:
    _check_options("sft", "latest", True, None)
    with pytest.raises(ValueError, match="unknown format"):
        _check_options("csv", "latest", False, None)
    with pytest.raises(ValueError, match="unknown policy"):
        _check_options("sft", "oldest", False, None)
    with pytest.raises(ValueError, match="not both"):
        _check_options("sft", "latest", True, "cursor.json")


def test_series_names_what_an_export_is_a_version_of() -> None:
    start = parse_time("2026-01-01")
    filters = _filters(3, start, None, "/joke", None)
    assert filters == {
        "min_rating": 3,
        "since": "2026-01-01T00:00:00+00:00",
        "until": None,
        "route": "/joke",
        "user": None,
    }
    series = _series("http://u:p@ls.test/", {"id": 5, "title": "Jokes", "x": 1}, "sft", filters, "best", 4.0)
    assert series == {
        "label_studio_url": "http://ls.test/",
        "project": {"id": 5, "title": "Jokes"},
        "format": "sft",
        "filters": filters,
        "policy": "best",
        "label_threshold": 4,
    }
    assert _where("/joke", None) == {"route": "/joke"} and _where(None, "u1") == {"user_id": "u1"}


def test_earlier_export_whole_from_a_cursor_file_or_beside_the_manifest(tmp_path: Path) -> None:
    series = _series(
        "http://ls.test", {"id": 5, "title": "Jokes"}, "sft", _filters(None, None, None, None, None), "latest", 4
    )
    assert _earlier_export(series, None, False, None) == (None, None)
    assert _earlier_export(series, tmp_path / "out.manifest.json", True, None) == (None, None)  # none yet
    assert _earlier_export(series, None, False, tmp_path / "cursor.json") == (None, None)  # no file yet
    doc = {
        "kind": "langchain-label-studio export cursor",
        **series,
        "file": "v1.jsonl",
        "sha256": "abc",
        "created_at": "2026-01-01T00:00:00+00:00",
        "cursor": {"updated_at": "2026-01-01", "annotations": {"7": "2026-01-01"}},
    }
    (tmp_path / "cursor.json").write_text(json.dumps(doc))
    cursor, reference = _earlier_export(series, None, False, tmp_path / "cursor.json")
    assert cursor is not None and cursor.seen == {"7": "2026-01-01"}
    assert reference == {
        "cursor_file": str(tmp_path / "cursor.json"),
        "file": "v1.jsonl",
        "sha256": "abc",
        "created_at": "2026-01-01T00:00:00+00:00",
    }
    other = _series("http://ls.test", {"id": 5, "title": "Jokes"}, "rating", series["filters"], "latest", 4)
    with pytest.raises(ValueError, match="other options"):
        _earlier_export(other, None, False, tmp_path / "cursor.json")


def test_an_output_path_that_cannot_be_written_is_refused_before_label_studio_is_asked(tmp_path: Path) -> None:
    from langchain_label_studio.export import export_dataset

    class Unused:
        def __getattr__(self, name: str) -> object:
            raise AssertionError("Label Studio was asked")

    (tmp_path / "afile").touch()
    for out in (tmp_path, tmp_path / "afile" / "x.jsonl"):
        with pytest.raises(ValueError, match="is a directory|is a file"):
            export_dataset("P", "sft", out, client=Unused())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is a directory"):
        export_dataset("P", "sft", tmp_path / "x.jsonl", manifest=tmp_path, client=Unused())  # type: ignore[arg-type]
