"""Turn a capture record into a Label Studio task for a given label config layout.

Besides the input the config shows, every task carries short plain-text columns for the
Data Manager (``first_message``, ``last_answer``), numbers annotators sort by (``turns``,
``priority``) and, for per-turn configs, the dialogue cut into turns (``review_turns``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .identity import as_ref
from .label_config import Layout
from .record import STATE_TAIL_KEY, CaptureRecord, Dialogue, dumps

#: Longest preview shown in the Data Manager's text columns.
PREVIEW_CHARS = 160


def dialogue_to_text(dialogue: Dialogue) -> str:
    """A dialogue as plain text: a lone message as it is, else one ``role: content`` paragraph each."""
    if len(dialogue) == 1:
        return str(dialogue[0].get("content", ""))
    return "\n\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in dialogue)


def preview(text: Any) -> str:
    """One line of at most :data:`PREVIEW_CHARS` characters."""
    line = " ".join(str(text or "").split())
    return line if len(line) <= PREVIEW_CHARS else line[: PREVIEW_CHARS - 1] + "…"


def as_dialogue(items: list[Any]) -> Dialogue:
    """A list as dialogue messages: ``{"role", "content"}`` dicts (anything else becomes a user message)."""
    dialogue: Dialogue = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("role"), str):
            content = item.get("content")
            if not isinstance(content, str):
                item = {**item, "content": "" if content is None else dumps(content)}
            dialogue.append(item)
        else:
            dialogue.append({"role": "user", "content": item if isinstance(item, str) else dumps(item)})
    return dialogue


def is_answer(message: dict[str, Any]) -> bool:
    """An assistant message that answers the user (not one that only calls tools)."""
    return message.get("role") == "assistant" and not message.get("tool_calls")


def split_turns(dialogue: Dialogue, answer: str | None) -> list[dict[str, Any]]:
    """The conversation as turns: ``{"messages": [...up to the answer], "answer": text or None}``.

    ``answer`` is the last answer (kept out of ``dialogue``, as a chat capture holds it). A
    conversation ending with an unanswered question ends with a turn whose answer is None.
    """
    turns: list[dict[str, Any]] = []
    current: Dialogue = []
    for message in dialogue:
        if is_answer(message):
            turns.append({"messages": current, "answer": str(message.get("content") or "")})
            current = []
        else:
            current.append(message)
    if answer is not None or current or not turns:
        turns.append({"messages": current, "answer": answer})
    return turns


def review_turns(turns: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str, Dialogue]:
    """What the per-turn view shows: the earlier turns (a heading and their messages, the
    answer last), the latest turn's heading, and the latest turn's messages (its answer is
    pre-filled into the box beside them, for editing)."""
    total = len(turns)
    earlier = []
    for i, turn in enumerate(turns[:-1]):
        messages = [*turn["messages"], {"role": "assistant", "content": turn["answer"] or ""}]
        earlier.append(
            {"heading": f"Turn {i + 1} of {total}: rate the answer, correct it if wrong", "messages": messages}
        )
    latest = turns[-1] if turns else {"messages": [], "answer": None}
    note = "unanswered" if latest["answer"] is None else "the latest answer is pre-filled on the right"
    messages = latest["messages"] or [{"role": "system", "content": "(no new message in this turn)"}]
    return earlier, f"Turn {total} of {total}: {note}", messages


def priority(data: dict[str, Any]) -> int:
    """How soon annotators should see a task (higher first): 4 a failed run, +2 negative
    end-user feedback (latest score below 0.5), +1 end-user feedback with a comment."""
    score = data.get("feedback_score")
    negative = isinstance(score, (int, float)) and not isinstance(score, bool) and score < 0.5
    if isinstance(score, bool):
        negative = not score
    commented = any(isinstance(e, dict) and e.get("comment") for e in data.get("feedback") or [])
    return 4 * bool(data.get("error")) + 2 * negative + 1 * commented


def build_task(record: CaptureRecord, layout: Layout) -> dict[str, Any]:
    """The task (``data`` and, when there is an answer, a ``predictions`` entry)."""
    prompt: Any = record.prompt
    if isinstance(prompt, list):
        prompt = as_dialogue(prompt)
    elif prompt is not None and not isinstance(prompt, str):  # None: Label Studio refuses it (a dead letter)
        prompt = dumps(prompt)
    if layout.mode == "chat" and isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    elif layout.mode == "prompt" and isinstance(prompt, list):
        prompt = dialogue_to_text(prompt)
    data: dict[str, Any] = dict(record.data)
    tail, state = data.pop(STATE_TAIL_KEY, None), data.get("state")
    if isinstance(tail, list) and isinstance(state, dict) and state.get("messages") is None and isinstance(
        record.prompt, list
    ):
        data["state"] = {**state, "messages": [*record.prompt, *tail]}
    data[layout.value_key] = prompt
    if isinstance(prompt, list):
        turns = split_turns(prompt, record.response)
        first = next((m.get("content") for m in prompt if m.get("role") == "user"), "")
        data["turns"] = sum(1 for t in turns if t["answer"] is not None)
        if layout.turns_key is not None and layout.latest_key is not None:
            earlier, data["latest_heading"], data[layout.latest_key] = review_turns(turns)
            data[layout.turns_key] = earlier
    else:
        first = prompt
        data["turns"] = 1 if record.response is not None else 0
    data["first_message"] = preview(first)
    data["last_answer"] = preview(record.response)
    data["priority"] = priority(data)
    data["capture_id"] = record.capture_id
    if record.session is not None:
        data["session_ref"] = as_ref(record.session)
    data["captured_at"] = datetime.fromtimestamp(record.captured_at, UTC).isoformat()
    # The Data Manager lists columns in the order it first meets them: what annotators read first.
    first = {k: data.pop(k) for k in ("first_message", "last_answer", "priority", "turns", "user_id") if k in data}
    task: dict[str, Any] = {"data": {**first, **data}}
    if record.response is not None:
        task["predictions"] = [prediction(record, layout)]
    return task


def prediction(record: CaptureRecord, layout: Layout) -> dict[str, Any]:
    """The pre-filled answer as a Label Studio prediction (per-turn configs: the latest turn's box)."""
    return {
        "model_version": record.model_version or "langchain",
        "result": [
            {
                "from_name": layout.from_name,
                "to_name": layout.to_name,
                "type": "textarea",
                "value": {"text": [record.response or ""]},
            }
        ],
    }
