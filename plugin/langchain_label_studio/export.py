"""Export annotated captures as training datasets (JSONL, in TRL's conversational formats).

Formats (one JSON object a line):

- ``sft`` (language modeling): ``{"messages": [...dialogue, {"role": "assistant", "content": answer}]}``
  where the answer is the annotator's text (edited, or the pre-filled one kept);
- ``preference``: ``{"prompt": [...], "chosen": [{"role": "assistant", ...edited}],
  "rejected": [{"role": "assistant", ...original}]}``, only where the annotator changed the answer;
- ``rating`` (unpaired preference): ``{"prompt": [...], "completion": [...answer], "rating": n,
  "label": rating >= threshold, "user_feedback": data["feedback"] or None}``, only rated tasks.

Every row also carries ``task_id``, ``annotation_id``, ``capture_id``, ``session_id``, ``user_id``
and ``route`` to trace it back to Label Studio.
"""

from __future__ import annotations

import json
import math
import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Literal

from .client import LabelStudioClient
from .label_config import Layout, parse_layout
from .settings import Settings
from .task import split_turns

Format = Literal["sft", "preference", "rating"]
Policy = Literal["latest", "first", "best"]
FORMATS: tuple[str, ...] = ("sft", "preference", "rating")
POLICIES: tuple[str, ...] = ("latest", "first", "best")

#: Message keys kept in exported dialogues.
MESSAGE_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")


@dataclass(frozen=True)
class _Config:
    """Where a project's label config keeps the input, the answer and the rating.

    Per-turn configs (``layout.per_turn``) name a box and a rating per turn
    (``correction_{{idx}}``, ``rating_{{idx}}``); comparison configs have a ``Pairwise``.
    """

    value_key: str
    answer_name: str
    rating_name: str | None
    max_rating: int
    layout: Layout | None = None
    pairwise_name: str | None = None
    turn_rating: str | None = None

    def turn_names(self, turn: int) -> tuple[str, str | None]:
        """The box's and the rating's names of one earlier turn of a per-turn config."""
        assert self.layout is not None
        box, _ = self.layout.names(turn)
        rating = self.turn_rating.replace(self.layout.index_flag, str(turn)) if self.turn_rating else None
        return box, rating


def _config(label_config: str) -> _Config:
    layout = parse_layout(label_config)
    root = ET.fromstring(label_config.strip())
    repeated = {id(el) for r in root.iter("Repeater") for el in r.iter("Rating")}
    rating = next((r for r in root.iter("Rating") if id(r) not in repeated), None)
    turn_rating = next((r for r in root.iter("Rating") if id(r) in repeated), None)
    max_rating = int((rating.get("maxRating") if rating is not None else None) or 5)
    pairwise = next(iter(root.iter("Pairwise")), None)
    return _Config(
        layout.value_key,
        layout.from_name,
        rating.get("name") if rating is not None else None,
        max_rating,
        layout,
        pairwise.get("name") if pairwise is not None else None,
        turn_rating.get("name") if turn_rating is not None else None,
    )


def parse_time(value: str | datetime) -> datetime:
    """An ISO 8601 time (``Z`` allowed) or datetime, as an aware datetime (naive means UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {value!r} (e.g. 2025-01-31 or 2025-01-31T12:00:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _text(result: list[dict[str, Any]], name: str) -> str | None:
    for item in result or []:
        if item.get("from_name") == name and item.get("type") == "textarea":
            return "\n".join(str(t) for t in (item.get("value") or {}).get("text") or [])
    return None


def _rating(result: list[dict[str, Any]], name: str | None) -> float | None:
    for item in result or []:
        if item.get("type") == "rating" and (name is None or item.get("from_name") == name):
            value = (item.get("value") or {}).get("rating")
            if isinstance(value, (int, float)):
                return value
    return None


def _prediction(task: dict[str, Any], name: str) -> str | None:
    """The pre-filled answer: the textarea of the newest prediction that has one."""
    for pred in sorted(task.get("predictions") or [], key=lambda p: p.get("id") or 0, reverse=True):
        text = _text(pred.get("result") or [], name)
        if text is not None:
            return text
    return None


def _dialogue(value: Any) -> list[dict[str, Any]] | None:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return [{k: m[k] for k in MESSAGE_KEYS if k in m} for m in value]
    return None


def _stamp(annotation: dict[str, Any], key: str) -> tuple[datetime, int]:
    raw = annotation.get(key) or annotation.get("created_at") or ""
    try:
        when = parse_time(raw)
    except (TypeError, ValueError):
        when = datetime.min.replace(tzinfo=timezone.utc)
    return when, int(annotation.get("id") or 0)


def choose(annotations: list[dict[str, Any]], policy: Policy, rating_name: str | None = None) -> dict[str, Any] | None:
    """The annotation a task is exported from: skipped (cancelled) ones never count.

    ``latest``: the most recently updated; ``first``: the first created; ``best``: the highest
    rated (unrated ones last), the most recently updated among equals.
    """
    usable = [a for a in annotations if not a.get("was_cancelled") and a.get("result")]
    if not usable:
        return None
    if policy == "latest":
        return max(usable, key=lambda a: _stamp(a, "updated_at"))
    if policy == "first":
        return min(usable, key=lambda a: _stamp(a, "created_at"))
    if policy == "best":

        def rank(a: dict[str, Any]) -> tuple[float, tuple[datetime, int]]:
            rating = _rating(a.get("result") or [], rating_name)
            return (-math.inf if rating is None else rating), _stamp(a, "updated_at")

        return max(usable, key=rank)
    raise ValueError(f"unknown policy {policy!r}: use one of {', '.join(POLICIES)}")


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def build_row(
    task: dict[str, Any],
    fmt: Format,
    *,
    policy: Policy = "latest",
    min_rating: float | None = None,
    label_threshold: float = 4,
    config: _Config | None = None,
) -> dict[str, Any] | None:
    """The dataset row of one task in ``fmt``, or None when the task yields none."""
    config = config or _Config("prompt", "response", "rating", 5)
    data = task.get("data") or {}
    annotation = choose(task.get("annotations") or [], policy, config.rating_name)
    dialogue = _dialogue(data.get(config.value_key))
    if annotation is None or dialogue is None:
        return None
    result = annotation.get("result") or []
    original = _prediction(task, config.answer_name)
    edited = _text(result, config.answer_name)
    answer = edited if edited is not None else original
    rating = _rating(result, config.rating_name)
    if answer is None or not answer.strip():
        return None
    if min_rating is not None and (rating is None or rating < min_rating):
        return None
    if fmt == "sft":
        row: dict[str, Any] = {"messages": [*dialogue, {"role": "assistant", "content": answer}]}
    elif fmt == "preference":
        if original is None or answer.strip() == original.strip():
            return None
        row = {
            "prompt": dialogue,
            "chosen": [{"role": "assistant", "content": answer}],
            "rejected": [{"role": "assistant", "content": original}],
        }
    elif fmt == "rating":
        if rating is None:
            return None
        row = {
            "prompt": dialogue,
            "completion": [{"role": "assistant", "content": answer}],
            "rating": _number(rating),
            "label": rating >= label_threshold,
            "user_feedback": data.get("feedback"),
        }
    else:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    row["turn"] = len(split_turns(dialogue, answer))
    row.update(_trace(task, annotation))
    return row


def _trace(task: dict[str, Any], annotation: dict[str, Any]) -> dict[str, Any]:
    data = task.get("data") or {}
    return {
        "task_id": task.get("id"),
        "annotation_id": annotation.get("id"),
        "capture_id": data.get("capture_id"),
        "session_id": data.get("session_id"),
        "user_id": data.get("user_id"),
        "route": data.get("route"),
    }


def build_rows(
    task: dict[str, Any],
    fmt: Format,
    *,
    policy: Policy = "latest",
    min_rating: float | None = None,
    label_threshold: float = 4,
    config: _Config | None = None,
) -> list[dict[str, Any]]:
    """The dataset rows of one task in ``fmt``: one per reviewed turn (per-turn configs), the
    annotator's choice (comparisons), else at most one (:func:`build_row`)."""
    config = config or _Config("prompt", "response", "rating", 5)
    if config.pairwise_name is not None:
        return _comparison_rows(task, fmt, policy, config)
    if config.layout is not None and config.layout.per_turn:
        return _turn_rows(task, fmt, policy, min_rating, label_threshold, config)
    row = build_row(task, fmt, policy=policy, min_rating=min_rating, label_threshold=label_threshold, config=config)
    return [] if row is None else [row]


def _turn_rows(
    task: dict[str, Any], fmt: Format, policy: Policy, min_rating: float | None, threshold: float, config: _Config
) -> list[dict[str, Any]]:
    """Rows of a per-turn review: each earlier turn the annotator rated or corrected, then the
    latest turn as :func:`build_row` makes it.

    Each row cuts the conversation at its turn: the history as the user saw it (the model's
    answers), then the turn's answer as the annotator left it. ``sft``: the turn's answer;
    ``preference``: corrected turns (the correction chosen, the model's answer rejected);
    ``rating``: rated turns (the rating judges the answer as the annotator left it).
    """
    data = task.get("data") or {}
    annotation = choose(task.get("annotations") or [], policy, config.rating_name)
    dialogue = _dialogue(data.get(config.value_key))
    if annotation is None or dialogue is None:
        return []
    result = annotation.get("result") or []
    turns = split_turns(dialogue, _prediction(task, config.answer_name))
    rows: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    for i, turn in enumerate(turns[:-1]):
        original = turn["answer"] or ""
        prompt = [*history, *turn["messages"]]
        history = [*prompt, {"role": "assistant", "content": original}]
        box_name, rating_name = config.turn_names(i)
        box = _text(result, box_name)
        rating = _rating(result, rating_name)
        corrected = bool(box and box.strip()) and box.strip() != original.strip()
        answer = box if corrected and box else original
        if not (corrected or rating is not None) or not answer.strip():
            continue
        if min_rating is not None and (rating is None or rating < min_rating):
            continue
        if fmt == "sft":
            row: dict[str, Any] = {"messages": [*prompt, {"role": "assistant", "content": answer}]}
        elif fmt == "preference" and corrected and original.strip():
            row = {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": answer}],
                "rejected": [{"role": "assistant", "content": original}],
            }
        elif fmt == "rating" and rating is not None:
            row = {
                "prompt": prompt,
                "completion": [{"role": "assistant", "content": answer}],
                "rating": _number(rating),
                "label": rating >= threshold,
                "user_feedback": data.get("feedback"),
            }
        else:
            continue
        rows.append({**row, "turn": i + 1, **_trace(task, annotation)})
    latest = build_row(task, fmt, policy=policy, min_rating=min_rating, label_threshold=threshold, config=config)
    return rows if latest is None else [*rows, latest]


def _comparison_rows(task: dict[str, Any], fmt: Format, policy: Policy, config: _Config) -> list[dict[str, Any]]:
    """Rows of a side-by-side comparison: the side the annotator picked is chosen.

    A written answer (both were wrong) is chosen over both, with the picked side rejected,
    or the left one when none was picked. ``chosen_source``/``rejected_source`` say whose
    answer each is (``model``, ``challenger`` or ``annotator``).
    """
    data = task.get("data") or {}
    annotation = choose(task.get("annotations") or [], policy, None)
    dialogue = _dialogue(data.get(config.value_key))
    if annotation is None or dialogue is None or fmt == "rating":
        return []
    result = annotation.get("result") or []
    picked = next(
        (
            (item.get("value") or {}).get("selected")
            for item in result
            if item.get("type") == "pairwise" and item.get("from_name") == config.pairwise_name
        ),
        None,
    )
    sides = {"left": data.get("answer_left"), "right": data.get("answer_right")}
    sources = {"left": data.get("left_source"), "right": data.get("right_source")}
    written = _text(result, config.answer_name)
    if written and written.strip():
        rejected_side = picked if picked in sides else "left"
        chosen, chosen_source = written, "annotator"
    elif picked in sides:
        rejected_side = "right" if picked == "left" else "left"
        chosen, chosen_source = sides[picked], sources[picked]
    else:
        return []
    if not isinstance(chosen, str) or not isinstance(sides[rejected_side], str):
        return []
    if fmt == "sft":
        row: dict[str, Any] = {"messages": [*dialogue, {"role": "assistant", "content": chosen}]}
    elif fmt == "preference":
        row = {
            "prompt": dialogue,
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": sides[rejected_side]}],
        }
    else:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    row.update(chosen_source=chosen_source, rejected_source=sources[rejected_side])
    return [{**row, **_trace(task, annotation)}]


def _resolve_project(client: LabelStudioClient, project: str | int) -> dict[str, Any]:
    if isinstance(project, int):
        return client.get_project(project)
    found = client.find_project(project)
    if found is not None:
        return found
    if project.strip().isdigit():
        return client.get_project(int(project))
    raise ValueError(f"no Label Studio project named {project!r}")


def _tasks(
    client: LabelStudioClient, project_id: int, where: dict[str, Any], page_size: int
) -> Iterator[dict[str, Any]]:
    after = 0
    while batch := client.tasks_after(project_id, after, page_size, where=where, annotated=True):
        yield from batch
        after = batch[-1]["id"]


class _Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.shown = False

    def show(self, tasks: int, rows: int) -> None:
        if self.enabled:
            sys.stderr.write(f"\rexport: {tasks} annotated task(s) read, {rows} row(s) written")
            sys.stderr.flush()
            self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def export(
    project: str | int,
    fmt: Format,
    out: str | os.PathLike[str] | IO[str],
    *,
    url: str | None = None,
    api_key: str | None = None,
    client: LabelStudioClient | None = None,
    min_rating: float | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    route: str | None = None,
    user: str | None = None,
    policy: Policy = "latest",
    label_threshold: float | None = None,
    page_size: int = 100,
    progress: bool | None = None,
) -> int:
    """Write the annotated tasks of ``project`` (a title or an id) as JSONL rows of ``fmt``; returns the row count.

    ``out`` is a path (written whole or not at all), ``"-"`` for stdout, or an open text file.
    The server is ``url``/``api_key`` (default ``LABEL_STUDIO_URL``/``LABEL_STUDIO_API_KEY``)
    unless a ``client`` is given. Tasks are read page by page (``page_size``) and rows written
    as they come, so memory does not grow with the project.

    Each task is exported from one annotation; skipped (cancelled) annotations are ignored and
    tasks without another are left out. ``policy`` picks among several: ``latest`` (the most
    recently updated, default), ``first`` (the first created) or ``best`` (the highest rated).
    A rating rates the answer as the annotator left it; an annotation without the TextArea keeps
    the pre-filled answer.

    Filters: ``since`` (inclusive) and ``until`` (exclusive) on ``data.captured_at``, ``route``
    and ``user`` (``data.user_id``) exactly, and ``min_rating``: tasks rated lower, or not rated,
    are left out. In the ``rating`` format ``label`` is ``rating >= label_threshold``, by default
    80% of the Rating's maximum (4 of 5). ``progress`` (default: when stderr is a terminal) shows
    a progress line on stderr.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: use one of {', '.join(POLICIES)}")
    start = parse_time(since) if since is not None else None
    end = parse_time(until) if until is not None else None
    owned = client is None
    if client is None:
        settings = Settings(url=url, api_key=api_key)
        client = LabelStudioClient(settings.url or "", settings.api_key, timeout=settings.timeout_s)
    try:
        info = _resolve_project(client, project)
        config = _config(info.get("label_config") or client.get_project(info["id"])["label_config"])
        threshold = label_threshold if label_threshold is not None else round(0.8 * config.max_rating)
        where = {k: v for k, v in (("route", route), ("user_id", user)) if v is not None}

        def rows() -> Iterator[dict[str, Any]]:
            bar = _Progress(sys.stderr.isatty() if progress is None else progress)
            seen = written = 0
            try:
                for task in _tasks(client, info["id"], where, page_size):
                    seen += 1
                    if seen % page_size == 0:
                        bar.show(seen, written)
                    data = task.get("data") or {}
                    if any(data.get(k) != v for k, v in where.items()):
                        continue
                    if start is not None or end is not None:
                        try:
                            when = parse_time(data.get("captured_at") or "")
                        except (TypeError, ValueError):
                            continue
                        if (start is not None and when < start) or (end is not None and when >= end):
                            continue
                    for row in build_rows(
                        task, fmt, policy=policy, min_rating=min_rating, label_threshold=threshold, config=config
                    ):
                        written += 1
                        yield row
                bar.show(seen, written)
            finally:
                bar.done()

        return _write(rows(), out)
    finally:
        if owned:
            client.close()


def _write(rows: Iterator[dict[str, Any]], out: str | os.PathLike[str] | IO[str]) -> int:
    def dump(fh: IO[str]) -> int:
        count = 0
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
        fh.flush()
        return count

    if not isinstance(out, (str, os.PathLike)):
        return dump(out)
    if str(out) == "-":
        return dump(sys.stdout)
    path = Path(out)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            count = dump(fh)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return count
