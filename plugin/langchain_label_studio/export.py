"""Export annotated captures as training datasets (JSONL, in TRL's conversational formats).

Formats (one JSON object a line):

- ``sft`` (language modeling): ``{"messages": [...dialogue, {"role": "assistant", "content": answer}]}``
  where the answer is the annotator's text (edited, or the pre-filled one kept);
- ``preference``: ``{"prompt": [...], "chosen": [{"role": "assistant", ...edited}],
  "rejected": [{"role": "assistant", ...original}]}``, only where the annotator changed the answer;
- ``rating`` (unpaired preference): ``{"prompt": [...], "completion": [...model's answer], "rating": n,
  "label": rating >= threshold, "user_feedback": data["feedback"] or None}``, only rated tasks.

Every row also carries ``task_id``, ``annotation_id``, ``capture_id``, ``session_id``, ``user_id``
and ``route`` to trace it back to Label Studio.

Each export of a file writes a manifest beside it (``<out>.manifest.json``): the options, counts,
the file's sha256 and a cursor (every annotation read, with its ``updated_at``), from which the next
export of the same project, format and options (``since_last``, or a ``cursor`` file) writes only
the annotations new or changed since: datasets in versions.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from . import version
from .client import LabelStudioClient
from .label_config import Layout, parse_layout
from .settings import Settings
from .task import split_turns
from .urls import public_url

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
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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
        when = datetime.min.replace(tzinfo=UTC)
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
    config = config or _DEFAULT_CONFIG
    reviewed = _reviewed(task, policy, config)
    if reviewed is None:
        return None
    annotation, dialogue, result = reviewed
    original = _prediction(task, config.answer_name)
    edited = _text(result, config.answer_name)
    answer = edited if edited is not None else original
    rating = _rating(result, config.rating_name)
    if answer is None or not _kept(answer, rating, min_rating):
        return None
    row = _format_row(
        fmt,
        dialogue,
        answer,
        rejected=original,
        rating=rating,
        threshold=label_threshold,
        feedback=(task.get("data") or {}).get("feedback"),
    )
    if row is None:
        return None
    return {**row, "turn": len(split_turns(dialogue, answer)), **_trace(task, annotation)}


#: The names of the plugin's default prompt config, for rows built without one.
_DEFAULT_CONFIG = _Config("prompt", "response", "rating", 5)


def _reviewed(
    task: dict[str, Any], policy: Policy, config: _Config
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]] | None:
    """The annotation a task is exported from, the task's dialogue and the annotation's result;
    None when the task has no usable annotation or no dialogue."""
    annotation = choose(task.get("annotations") or [], policy, config.rating_name)
    dialogue = _dialogue((task.get("data") or {}).get(config.value_key))
    if annotation is None or dialogue is None:
        return None
    return annotation, dialogue, annotation.get("result") or []


def _kept(answer: str, rating: float | None, min_rating: float | None) -> bool:
    """Whether an answer makes a row at all: it is not blank, and rated at least ``min_rating``
    when that is given."""
    if not answer.strip():
        return False
    return min_rating is None or (rating is not None and rating >= min_rating)


def _assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def _format_row(
    fmt: Format,
    prompt: list[dict[str, Any]],
    answer: str,
    *,
    rejected: str | None,
    rating: float | None,
    threshold: float,
    feedback: Any,
) -> dict[str, Any] | None:
    """One answer's row in ``fmt`` (without its turn and trace), or None when ``fmt`` has none for it.

    ``sft``: always; ``preference``: when the model's answer (``rejected``) is known and the answer
    differs from it; ``rating``: when the answer is rated, with the answer the rating judges (the
    model's, when known; ``label`` is ``rating >= threshold``).
    """
    if fmt == "sft":
        return {"messages": [*prompt, _assistant(answer)]}
    if fmt == "preference":
        if rejected is None or answer.strip() == rejected.strip():
            return None
        return {"prompt": prompt, "chosen": [_assistant(answer)], "rejected": [_assistant(rejected)]}
    if fmt == "rating":
        if rating is None:
            return None
        return {
            "prompt": prompt,
            "completion": [_assistant(rejected if rejected is not None else answer)],
            "rating": _number(rating),
            "label": rating >= threshold,
            "user_feedback": feedback,
        }
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


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
    config = config or _DEFAULT_CONFIG
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
    ``rating``: rated turns (the rating judges the model's answer).
    """
    reviewed = _reviewed(task, policy, config)
    if reviewed is None:
        return []
    annotation, dialogue, result = reviewed
    feedback = (task.get("data") or {}).get("feedback")
    rows: list[dict[str, Any]] = []
    for i, prompt, original in _earlier_turns(dialogue, _prediction(task, config.answer_name)):
        answer, corrected, rating = _turn_review(result, config, i, original)
        if not (corrected or rating is not None) or not _kept(answer, rating, min_rating):
            continue
        row = _format_row(
            fmt,
            prompt,
            answer,
            rejected=original if original.strip() else None,
            rating=rating,
            threshold=threshold,
            feedback=feedback,
        )
        if row is not None:
            rows.append({**row, "turn": i + 1, **_trace(task, annotation)})
    latest = build_row(task, fmt, policy=policy, min_rating=min_rating, label_threshold=threshold, config=config)
    return rows if latest is None else [*rows, latest]


def _earlier_turns(
    dialogue: list[dict[str, Any]], latest_answer: str | None
) -> Iterator[tuple[int, list[dict[str, Any]], str]]:
    """Each turn of a conversation but the latest: its index, its prompt (the history as the user
    saw it, with the model's answers, then the turn's messages) and the model's answer."""
    history: list[dict[str, Any]] = []
    for i, turn in enumerate(split_turns(dialogue, latest_answer)[:-1]):
        original = turn["answer"] or ""
        prompt = [*history, *turn["messages"]]
        history = [*prompt, _assistant(original)]
        yield i, prompt, original


def _turn_review(
    result: list[dict[str, Any]], config: _Config, turn: int, original: str
) -> tuple[str, bool, float | None]:
    """What the annotator made of one earlier turn: the answer as they left it (their correction,
    else the model's ``original``), whether they corrected it, and their rating (or None)."""
    box_name, rating_name = config.turn_names(turn)
    box = _text(result, box_name)
    corrected = box is not None and bool(box.strip()) and box.strip() != original.strip()
    return (box if corrected and box else original), corrected, _rating(result, rating_name)


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
    chosen: Any
    chosen_source: Any
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
    manifest: str | os.PathLike[str] | bool | None = None,
    since_last: bool = False,
    cursor: str | os.PathLike[str] | None = None,
) -> int:
    """Write the annotated tasks of ``project`` (a title or an id) as JSONL rows of ``fmt``; returns the row count.

    The same as :func:`export_dataset`, which returns the whole manifest.
    """
    return int(
        export_dataset(
            project,
            fmt,
            out,
            url=url,
            api_key=api_key,
            client=client,
            min_rating=min_rating,
            since=since,
            until=until,
            route=route,
            user=user,
            policy=policy,
            label_threshold=label_threshold,
            page_size=page_size,
            progress=progress,
            manifest=manifest,
            since_last=since_last,
            cursor=cursor,
        )["counts"]["rows"]
    )


def export_dataset(
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
    manifest: str | os.PathLike[str] | bool | None = None,
    since_last: bool = False,
    cursor: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Write the annotated tasks of ``project`` (a title or an id) as JSONL rows of ``fmt``; returns the manifest.

    ``out`` is a path (written whole or not at all), ``"-"`` for stdout, or an open text file.
    The server is ``url``/``api_key`` (default ``LABEL_STUDIO_URL``/``LABEL_STUDIO_API_KEY``)
    unless a ``client`` is given. Tasks are read page by page (``page_size``) and rows written
    as they come, so memory does not grow with the project.

    Each task is exported from one annotation; skipped (cancelled) annotations are ignored and
    tasks without another are left out. ``policy`` picks among several: ``latest`` (the most
    recently updated, default), ``first`` (the first created) or ``best`` (the highest rated).
    A rating judges the model's answer (the ``rating`` rows hold it; ``sft`` and ``preference``
    rows hold the annotator's correction); an annotation without the TextArea keeps the
    pre-filled answer.

    Filters: ``since`` (inclusive) and ``until`` (exclusive) on ``data.captured_at``, ``route``
    and ``user`` (``data.user_id``) exactly, and ``min_rating``: tasks rated lower, or not rated,
    are left out. In the ``rating`` format ``label`` is ``rating >= label_threshold``, by default
    80% of the Rating's maximum (4 of 5). ``progress`` (default: when stderr is a terminal) shows
    a progress line on stderr.

    The manifest (options, counts, the file's sha256, the cursor) is written to ``manifest``, by
    default ``<out>.manifest.json`` beside a path and nowhere for stdout or an open file
    (``False``: nowhere). ``since_last`` exports only tasks whose annotation is new or changed
    since the latest other export of the same project, format and options whose manifest lies in
    the manifest's directory; ``cursor`` names a file that holds the cursor instead (read when it
    exists, written after the export). Without an earlier export, everything is exported.
    """
    _check_options(fmt, policy, since_last, cursor)
    _check_writable(out, manifest if isinstance(manifest, (str, os.PathLike)) else None, cursor)
    start = parse_time(since) if since is not None else None
    end = parse_time(until) if until is not None else None
    manifest_path = manifest_location(out, manifest)
    if since_last and manifest_path is None:
        raise ValueError("--since-last looks for earlier exports beside the manifest: give --manifest PATH")
    client, owned = _client(client, url, api_key)
    try:
        info = _resolve_project(client, project)
        config = _config(info.get("label_config") or client.get_project(info["id"])["label_config"])
        threshold = label_threshold if label_threshold is not None else round(0.8 * config.max_rating)
        filters = _filters(min_rating, start, end, route, user)
        series = _series(client.url, info, fmt, filters, policy, threshold)
        previous, earlier = _earlier_export(series, manifest_path, since_last, cursor)
        run = _Run(config, fmt, policy, min_rating, threshold, previous)
        where = _where(route, user)
        tasks = _tasks(client, info["id"], where, page_size)
        bar = _Progress(sys.stderr.isatty() if progress is None else progress)
        written = _write(run.rows(tasks, where, start, end, bar, page_size), out)
        doc = _manifest(series, run, written, out, incremental=since_last or cursor is not None, previous=earlier)
        if manifest_path is not None:
            _write_json(manifest_path, doc)
        if cursor is not None:
            _write_json(Path(cursor), _cursor_file(doc))
        return doc
    finally:
        if owned:
            client.close()


def _check_options(fmt: str, policy: str, since_last: bool, cursor: str | os.PathLike[str] | None) -> None:
    """Refuse (ValueError) an unknown format or policy, or both ways of finding the previous export."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: use one of {', '.join(POLICIES)}")
    if since_last and cursor is not None:
        raise ValueError("give either since_last or a cursor file, not both")


def _check_writable(*targets: str | os.PathLike[str] | IO[str] | None) -> None:
    """Refuse (ValueError), before Label Studio is asked anything, an output path that can never
    be written: a directory, or a path under a file."""
    for target in targets:
        if not isinstance(target, (str, os.PathLike)) or str(target) == "-":
            continue
        path = Path(target)
        if path.is_dir():
            raise ValueError(f"{path} is a directory: name a file to write")
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise ValueError(f"cannot write {path}: {parent} is a file")


def _client(client: LabelStudioClient | None, url: str | None, api_key: str | None) -> tuple[LabelStudioClient, bool]:
    """The client to read with, and whether it was made here (and is to be closed here)."""
    if client is not None:
        return client, False
    settings = Settings(url=url, api_key=api_key)
    return LabelStudioClient(settings.url or "", settings.api_key, timeout=settings.timeout_s), True


def _filters(
    min_rating: float | None, start: datetime | None, end: datetime | None, route: str | None, user: str | None
) -> dict[str, Any]:
    """The filters of an export, as its manifest records them."""
    return {
        "min_rating": min_rating,
        "since": start.isoformat() if start else None,
        "until": end.isoformat() if end else None,
        "route": route,
        "user": user,
    }


def _series(
    url: str, project: dict[str, Any], fmt: Format, filters: dict[str, Any], policy: Policy, threshold: float
) -> dict[str, Any]:
    """What an export is a version of: exports with the same series are versions of one dataset."""
    return {
        "label_studio_url": public_url(url),
        "project": {"id": project["id"], "title": project.get("title")},
        "format": fmt,
        "filters": filters,
        "policy": policy,
        "label_threshold": _number(threshold),
    }


def _earlier_export(
    series: dict[str, Any], manifest_path: Path | None, since_last: bool, cursor: str | os.PathLike[str] | None
) -> tuple[Cursor | None, dict[str, Any] | None]:
    """The cursor an incremental export starts from, with a reference to the export it comes
    from: the ``cursor`` file's, or (``since_last``) the latest export's beside the manifest;
    (None, None) for a whole export."""
    if cursor is not None:
        return _read_cursor_file(Path(cursor), series)
    if since_last:
        assert manifest_path is not None
        return _previous_export(manifest_path, series)
    return None, None


def _where(route: str | None, user: str | None) -> dict[str, Any]:
    """The task ``data`` values the route and user filters ask for."""
    return {k: v for k, v in (("route", route), ("user_id", user)) if v is not None}


# -- versions: the manifest and the cursor -----------------------------------------------------
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_KIND = "langchain-label-studio export"
CURSOR_KIND = "langchain-label-studio export cursor"
#: What an incremental export's rows mean for the rows of earlier exports of its series.
SUPERSEDES = (
    "Only tasks whose annotation is new or changed since the previous export are here. A row may "
    "supersede a row of an earlier export: same annotation_id (the annotation changed since), or "
    "same task_id (the task is now exported from another annotation). For the current state, keep "
    "each task's rows from the latest export that has the task (langchain_label_studio.export.merge_versions)."
)
#: Why tasks and annotations read were not exported (the keys of ``counts.skipped``).
SKIPPED = {
    "cancelled_annotations": "annotations the annotator skipped: never exported",
    "tasks_not_matching_filters": "captured_at outside --since/--until, or another route or user",
    "tasks_without_annotation": "tasks whose annotations were all skipped or empty",
    "tasks_without_row": "no row in this format: answer not edited (preference), not rated (rating), "
    "or rated below --min-rating",
    "tasks_unchanged": "annotation unchanged since the previous export (--since-last, --cursor)",
}


def manifest_location(
    out: str | os.PathLike[str] | IO[str], manifest: str | os.PathLike[str] | bool | None = None
) -> Path | None:
    """Where an export's manifest goes: ``manifest``, else beside a file ``out``; None for none."""
    if manifest is False:
        return None
    if manifest is not None and manifest is not True:
        return Path(manifest)
    if isinstance(out, (str, os.PathLike)) and str(out) != "-":
        return Path(f"{os.fspath(out)}{MANIFEST_SUFFIX}")
    return None


def _updated(annotation: dict[str, Any]) -> str:
    return str(annotation.get("updated_at") or annotation.get("created_at") or "")


def _when(value: str) -> datetime:
    try:
        return parse_time(value)
    except (TypeError, ValueError):
        return datetime.min.replace(tzinfo=UTC)


@dataclass
class Cursor:
    """The annotations an export series has read: each one's ``updated_at`` by id.

    An annotation is new or changed when its id was not read before or its ``updated_at`` differs.
    Keeping every id (not only the latest ``updated_at``) also catches an annotation saved while
    an export read later pages.
    """

    seen: dict[str, str] = field(default_factory=dict)

    def changed(self, annotation: dict[str, Any]) -> bool:
        return self.seen.get(str(annotation.get("id"))) != _updated(annotation)

    def add(self, annotation: dict[str, Any]) -> None:
        if annotation.get("id") is not None:
            self.seen[str(annotation["id"])] = _updated(annotation)

    def high_water(self) -> str | None:
        """The latest ``updated_at`` read."""
        return max(self.seen.values(), key=_when) if self.seen else None

    def to_json(self) -> dict[str, Any]:
        ordered = sorted(self.seen.items(), key=lambda kv: (len(kv[0]), kv[0]))
        return {"updated_at": self.high_water(), "annotations": dict(ordered)}

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Cursor:
        seen = doc.get("annotations") if isinstance(doc, dict) else None
        if not isinstance(seen, dict) or not all(isinstance(v, str) for v in seen.values()):
            raise ValueError(f"{where} holds no export cursor")
        return cls(dict(seen))


def _differences(series: dict[str, Any], doc: dict[str, Any]) -> dict[str, str]:
    """The options (project, format, filters...) in which an earlier export ``doc`` differs from ``series``."""
    diff = {}
    for key, value in series.items():
        theirs = doc.get(key)
        if key == "project":  # the same project, even renamed
            value = value.get("id")
            theirs = theirs.get("id") if isinstance(theirs, dict) else None
        if theirs == value:
            continue
        if key == "filters" and isinstance(theirs, dict):
            changed = [f for f in value if theirs.get(f) != value[f]] + [f for f in theirs if f not in value]
            diff[key] = ", ".join(f"{f} {json.dumps(theirs.get(f))} (now {json.dumps(value.get(f))})" for f in changed)
        else:
            diff[key] = f"{key} {json.dumps(theirs)} (now {json.dumps(value)})"
    return diff


#: What makes two exports versions of one dataset at all; the other options must match as well.
_LINEAGE = ("label_studio_url", "project", "format")


def _load(path: Path, kind: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("kind") == kind else None


def _previous_export(manifest_path: Path, series: dict[str, Any]) -> tuple[Cursor | None, dict[str, Any] | None]:
    """The cursor of the latest export of ``series`` whose manifest lies beside ``manifest_path``
    (that one excluded: rewriting a version is no new version), with a reference to it."""
    folder = manifest_path.parent
    target = manifest_path.resolve()
    same_dataset: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(folder.glob(f"*{MANIFEST_SUFFIX}")):
        doc = _load(path, MANIFEST_KIND)
        if doc is None or path.resolve() == target:
            continue
        if not _differences(series, doc).keys() & set(_LINEAGE):
            same_dataset.append((path, doc))
    matching = [(p, d) for p, d in same_dataset if not _differences(series, d)]
    if not matching:
        if same_dataset:
            path, doc = max(same_dataset, key=lambda pd: _when(str(pd[1].get("created_at"))))
            raise ValueError(
                f"the latest export of this project and format beside it ({path.name}) used other options: "
                f"{'; '.join(_differences(series, doc).values())}; export with the same options, "
                "or start another series (without --since-last, or with --cursor FILE)"
            )
        return None, None
    path, doc = max(matching, key=lambda pd: (_when(str(pd[1].get("created_at"))), pd[0].name))
    return Cursor.from_json(doc.get("cursor"), str(path)), {"manifest": path.name, **_reference(doc)}


def _read_cursor_file(path: Path, series: dict[str, Any]) -> tuple[Cursor | None, dict[str, Any] | None]:
    """The cursor kept in ``path`` (None when there is no file yet), with a reference to its export."""
    if not path.exists():
        return None, None
    doc = _load(path, CURSOR_KIND)
    if doc is None:
        raise ValueError(f"{path} is no export cursor file")
    diff = _differences(series, doc)
    if diff:
        raise ValueError(f"the cursor {path} belongs to an export with other options: {'; '.join(diff.values())}")
    return Cursor.from_json(doc.get("cursor"), str(path)), {"cursor_file": str(path), **_reference(doc)}


def _reference(doc: dict[str, Any]) -> dict[str, Any]:
    return {"file": doc.get("file"), "sha256": doc.get("sha256"), "created_at": doc.get("created_at")}


def _cursor_file(manifest: dict[str, Any]) -> dict[str, Any]:
    keep = _LINEAGE + ("filters", "policy", "label_threshold", "file", "sha256", "created_at", "cursor")
    return {"kind": CURSOR_KIND, **{k: manifest[k] for k in keep}}


@dataclass
class _Written:
    rows: int
    sha256: str
    bytes: int


def _manifest(
    series: dict[str, Any],
    run: _Run,
    written: _Written,
    out: str | os.PathLike[str] | IO[str],
    *,
    incremental: bool,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    name: str | None = getattr(out, "name", None)
    if isinstance(out, (str, os.PathLike)):
        name = "-" if str(out) == "-" else Path(out).name
    doc: dict[str, Any] = {
        "kind": MANIFEST_KIND,
        "manifest_version": 1,
        "file": name,
        "sha256": written.sha256,
        "bytes": written.bytes,
        "created_at": datetime.now(UTC).isoformat(),
        "plugin_version": version.__version__,
        **series,
        "counts": run.counts(written.rows),
        "incremental": None,
        "cursor": run.cursor.to_json(),
    }
    if incremental:
        doc["incremental"] = {"previous": previous, "supersedes": SUPERSEDES}
    return doc


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` to ``path`` whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def merge_versions(paths: Iterable[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """The rows of a dataset's versions (JSONL files, oldest first) as one dataset: each task's rows
    from the latest file that has the task (a task exported again supersedes its earlier rows),
    ordered by task id."""
    latest: dict[Any, list[dict[str, Any]]] = {}
    for path in paths:
        found: dict[Any, list[dict[str, Any]]] = {}
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    found.setdefault(row.get("task_id"), []).append(row)
        latest.update(found)
    ordered = sorted(latest.items(), key=lambda item: (not isinstance(item[0], int), item[0] or 0))
    return [row for _, rows in ordered for row in rows]


# -- the export run ---------------------------------------------------------------------------
class _Run:
    """One pass over a project's tasks: their rows, what was left out and why, the new cursor."""

    def __init__(
        self,
        config: _Config,
        fmt: Format,
        policy: Policy,
        min_rating: float | None,
        threshold: float,
        previous: Cursor | None,
    ) -> None:
        self.config, self.fmt, self.policy = config, fmt, policy
        self.min_rating, self.threshold = min_rating, threshold
        self.previous = previous
        self.cursor = Cursor(dict(previous.seen) if previous else {})
        self.tasks_read = self.tasks_exported = self.annotations_read = 0
        self.annotations_exported: set[Any] = set()
        self.skipped = dict.fromkeys(SKIPPED, 0)

    def rows(
        self,
        tasks: Iterator[dict[str, Any]],
        where: dict[str, Any],
        start: datetime | None,
        end: datetime | None,
        bar: _Progress,
        page_size: int,
    ) -> Iterator[dict[str, Any]]:
        written = 0
        try:
            for task in tasks:
                if self.tasks_read and self.tasks_read % page_size == 0:
                    bar.show(self.tasks_read, written)
                for row in self.task_rows(task, where, start, end):
                    written += 1
                    yield row
            bar.show(self.tasks_read, written)
        finally:
            bar.done()

    def task_rows(
        self, task: dict[str, Any], where: dict[str, Any], start: datetime | None, end: datetime | None
    ) -> list[dict[str, Any]]:
        """The rows of one task, counting it in (and its annotations into the cursor)."""
        self.tasks_read += 1
        annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict)]
        self.annotations_read += len(annotations)
        self.skipped["cancelled_annotations"] += sum(1 for a in annotations if a.get("was_cancelled"))
        for annotation in annotations:
            self.cursor.add(annotation)
        if not _matches(task.get("data") or {}, where, start, end):
            self.skipped["tasks_not_matching_filters"] += 1
            return []
        rating_name = None if self.config.pairwise_name is not None else self.config.rating_name
        chosen = choose(annotations, self.policy, rating_name)
        if chosen is None:
            self.skipped["tasks_without_annotation"] += 1
            return []
        if self.previous is not None and not self.previous.changed(chosen):
            self.skipped["tasks_unchanged"] += 1
            return []
        rows = build_rows(
            task,
            self.fmt,
            policy=self.policy,
            min_rating=self.min_rating,
            label_threshold=self.threshold,
            config=self.config,
        )
        if not rows:
            self.skipped["tasks_without_row"] += 1
            return []
        self.tasks_exported += 1
        self.annotations_exported.update(r["annotation_id"] for r in rows)
        return rows

    def counts(self, rows: int) -> dict[str, Any]:
        return {
            "rows": rows,
            "tasks": {"read": self.tasks_read, "exported": self.tasks_exported},
            "annotations": {"read": self.annotations_read, "exported": len(self.annotations_exported)},
            "skipped": dict(self.skipped),
            "skipped_reasons": dict(SKIPPED),
        }


def _matches(data: dict[str, Any], where: dict[str, Any], start: datetime | None, end: datetime | None) -> bool:
    """Whether a task's data passes the route/user filters and the ``captured_at`` range."""
    if any(data.get(k) != v for k, v in where.items()):
        return False
    if start is None and end is None:
        return True
    try:
        when = parse_time(data.get("captured_at") or "")
    except (TypeError, ValueError):
        return False
    return (start is None or when >= start) and (end is None or when < end)


def _write(rows: Iterator[dict[str, Any]], out: str | os.PathLike[str] | IO[str]) -> _Written:
    def dump(fh: IO[str]) -> _Written:
        digest, count, size = hashlib.sha256(), 0, 0
        for row in rows:
            line = json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"
            data = line.encode("utf-8")
            digest.update(data)
            size += len(data)
            fh.write(line)
            count += 1
        fh.flush()
        return _Written(count, digest.hexdigest(), size)

    if not isinstance(out, (str, os.PathLike)):
        return dump(out)
    if str(out) == "-":
        return dump(sys.stdout)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            written = dump(fh)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return written
